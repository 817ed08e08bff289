"""Run the benchmarks: ``python -m bench`` (all), ``python -m bench drift --rows 100000`` (one, with its options;
``--only drift`` is the same).

Every module of this package that defines ``main(argv: list[str] | None)`` is a benchmark.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def discover() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = module
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--only"] and len(argv) > 1:  # `--only NAME [args]` == `NAME [args]`
        argv = argv[1:]
    benches = discover()
    if argv and argv[0] in benches:
        return int(benches[argv[0]].main(argv[1:]) or 0)
    if argv and not argv[0].startswith("-"):
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(sorted(benches))}", file=sys.stderr)
        return 2
    status = 0
    for name, module in sorted(benches.items()):
        if getattr(module, "PART_OF", None) in benches:  # a part that its parent benchmark runs
            continue
        print(f"== bench {name}", flush=True)
        status |= int(module.main(argv) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
