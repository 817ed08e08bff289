"""Run a ``package.module:function`` training entry point: ``function(ctx)`` inside the job's MLflow run.

    python -m mlops_airflow.training.run package.module:function

The function gets the :class:`~mlops_airflow.training.context.TrainingContext`; the run is already started (a
``with ctx.start_run():`` inside the function is a no-op), and a dict it returns is logged as metrics.

Exit codes: 0 success (last stdout line ``TRAINING DONE run_id=... model_uri=...``); 2 invalid input or
configuration (``TrainingInputError``: retrying will not help); 1 unexpected error; 143 SIGTERM. Failures print
``TRAINING FAILED: <cause>; <next step>`` on stderr.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from mlops_airflow.training.context import (
    RUNNING,
    TrainingContext,
    TrainingInputError,
    exit_code,
    failure_line,
    report_failure,
)
from mlops_airflow.training.entrypoints import parse_entrypoint


def load_function(spec: str) -> Callable[[TrainingContext], Any]:
    """Import ``module`` and return ``function`` of ``module:function``.

    :raises TrainingInputError: not of that form, module not importable, or no such callable (named).
    """
    entry = parse_entrypoint(spec)
    if entry.kind != "module":
        raise TrainingInputError(f"entrypoint {spec!r} is not package.module:function",
                                 f"run a file as `python {spec}`, or pass module:function")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as err:
        raise TrainingInputError(f"cannot import module {entry.module!r} of entrypoint {spec!r} ({err})",
                                 "put its folder on PYTHONPATH (the project root is) or install its package "
                                 "in the training requirements") from None
    fn = getattr(module, entry.function, None)
    if not callable(fn):
        raise TrainingInputError(f"module {entry.module!r} has no function {entry.function!r}",
                                 f"define def {entry.function}(ctx) in {getattr(module, '__file__', entry.module)}")
    RUNNING.update({"spec": spec, "file": getattr(module, "__file__", "") or ""})
    return fn


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlops_airflow.training.run package.module:function", file=sys.stderr)
        return 2
    ctx = None
    try:
        fn = load_function(args[0])
        ctx = TrainingContext.from_env()
        with ctx.start_run() as run:
            returned = fn(ctx)
            if returned is not None and not isinstance(returned, dict):
                raise TrainingInputError(f"{args[0]} returned {type(returned).__name__}",
                                         "return None or a dict of metrics {name: number}")
            metrics = ctx.log_metrics(returned) if returned else {}
            run_id = run.info.run_id
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an exit code and one line
        report_failure(exc)
        if ctx is not None:
            ctx.write_result({"status": "FAILED", "error": failure_line(exc)})
        return exit_code(exc)
    result = {"status": "FINISHED", "run_id": run_id, "model_uri": ctx._model_uri, "metrics": metrics,
              "entrypoint": ctx.entrypoint, "entrypoint_sha256": ctx.entrypoint_sha256}
    ctx.write_result(result)
    shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    print(f"TRAINING DONE run_id={run_id} {shown} model_uri={ctx._model_uri}".replace("  ", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
