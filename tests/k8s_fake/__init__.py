"""A loopback fake of the Kubernetes API, for tests only (see ``server.py``)."""
