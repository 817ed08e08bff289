"""Benchmarks: ``python -m bench [name ...] [-- args]``; each module here with a ``main(argv)`` is one benchmark."""
