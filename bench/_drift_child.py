"""The measured side of ``python -m bench drift``: one measurement per fresh interpreter.

    python -m bench._drift_child KIND '<json arguments>'

``KIND`` is ``evidently`` (plain Evidently ``Report([DataDriftPreset()])``), ``task`` (the whole Airflow drift
task: import, ``DataDriftOperator(...)``, ``execute`` with its verdict, report and MLflow logging), ``engine``
(the drift engine alone) or ``warm-evidently`` / ``warm-task`` (the imports only, untimed: fills the page cache so
that the first measured size does not pay for a cold disk). The child prints one ``BENCH-RESULT {json}`` line
with its own split (import, compute, ...) and its peak RSS (``VmHWM``); the parent times the whole process.

Only the standard library is imported at module level: everything a measurement needs is imported inside it,
after its clock started.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): ``VmHWM`` on Linux. ``ru_maxrss`` is the fallback only: after
    fork/exec it starts from the parent's RSS, which would bill the data generator to the child."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def run_evidently(args: dict[str, Any]) -> dict[str, Any]:
    """Plain Evidently as a user would call it: both Parquet files to pandas (pyarrow), the auto-inferred data
    definition, ``Report([DataDriftPreset()], include_tests=True).run(...)`` and ``snapshot.dict()`` for the
    verdict. No HTML is saved (that would only add to Evidently's time)."""
    t0 = time.perf_counter()
    import evidently  # noqa: F401 - the import is part of what a user pays
    import pyarrow.parquet as pq
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    t1 = time.perf_counter()
    reference = pq.read_table(args["reference"]).to_pandas()
    current = pq.read_table(args["current"]).to_pandas()
    t2 = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current),
        reference_data=Dataset.from_pandas(reference),
    )
    t3 = time.perf_counter()
    snap = snapshot.dict()
    t4 = time.perf_counter()
    Path(args["out"]).write_text(
        json.dumps({"metrics": snap.get("metrics", []), "tests": snap.get("tests", [])}, default=str)
    )
    return {
        "worker_s": round(t4 - t0, 3),  # what a task doing this costs in an Airflow worker (it needs no Airflow)
        "import_s": round(t1 - t0, 3),
        "read_s": round(t2 - t1, 3),
        "compute_s": round(t3 - t2, 3),
        "snapshot_dict_s": round(t4 - t3, 3),
        "seconds": round(t4 - t1, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_task(args: dict[str, Any]) -> dict[str, Any]:
    """The whole drift task in this plain process: import the operator module, construct the operator, execute.

    ``worker_s`` is what the task costs in an Airflow worker, where the task process already has the Task SDK
    loaded (Airflow 3's supervisor forks it): the SDK is imported first, off the clock; the parent's wall time of
    the process (the fresh-interpreter cost) still includes it.
    """
    if args.get("preload_airflow", True):
        import airflow.sdk  # noqa: F401 - loaded in every Airflow task process before the task runs
        from airflow.sdk.execution_time.context import OutletEventAccessors
    t0 = time.perf_counter()
    from mlops_airflow.operators.drift import DataDriftOperator  # noqa: I001
    from airflow.sdk.execution_time.context import OutletEventAccessors

    t1 = time.perf_counter()
    import inspect
    from types import SimpleNamespace

    kwargs: dict[str, Any] = {
        "task_id": "data_drift",
        "reference_path": args["reference"],
        "current_path": args["current"],
        "report_dir": args["report_dir"],
        "model_name": "bench",
        "experiment_name": "bench-drift",
        "log_to_mlflow": bool(args["tracking_uri"]),
    }
    if args["tracking_uri"]:
        kwargs["tracking_uri"] = args["tracking_uri"]
    accepted = inspect.signature(DataDriftOperator.__init__).parameters
    report_param = None
    if args.get("report") and "report" in accepted:
        kwargs["report"] = report_param = args["report"]
    op = DataDriftOperator(**kwargs)
    context = {
        "dag": SimpleNamespace(dag_id="bench_drift"),
        "run_id": args["run_id"],
        "outlet_events": OutletEventAccessors(),
    }
    t2 = time.perf_counter()
    verdict = op.execute(context)
    t3 = time.perf_counter()
    Path(args["out"]).write_text(json.dumps(verdict, default=str))
    heavy = sorted(
        m
        for m in ("evidently", "pandas", "scipy", "sklearn", "plotly", "mlflow", "numpy", "pyarrow")
        if m in sys.modules
    )
    return {
        "worker_s": round(t3 - t0, 3),
        "import_s": round(t1 - t0, 3),
        "construct_s": round(t2 - t1, 3),
        "execute_s": round(t3 - t2, 3),
        "seconds": round(t3 - t1, 3),
        "peak_rss_mb": peak_rss_mb(),
        "report_param": report_param,
        "modules_loaded": heavy,
        "mlflow_run_id": verdict.get("mlflow_run_id"),
    }


def run_engine(args: dict[str, Any]) -> dict[str, Any]:
    """The drift engine alone (no Airflow, no report, no MLflow): the floor under the task."""
    t0 = time.perf_counter()
    from mlops_airflow.monitoring.drift_engine import detect_drift

    t1 = time.perf_counter()
    result = detect_drift(args["reference"], args["current"])
    t2 = time.perf_counter()
    Path(args["out"]).write_text(json.dumps({c: r.as_verdict_entry() for c, r in result.columns.items()}))
    return {
        "import_s": round(t1 - t0, 3),
        "seconds": round(t2 - t1, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def warm(kind: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    if kind == "warm-evidently":
        import pyarrow.parquet  # noqa: F401
        from evidently import Dataset, Report  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401
    else:
        import mlflow  # noqa: F401
        from airflow.sdk.execution_time.context import OutletEventAccessors  # noqa: F401
        from mlops_airflow.monitoring import drift_engine  # noqa: F401
        from mlops_airflow.operators.drift import DataDriftOperator  # noqa: F401
    return {"import_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": peak_rss_mb()}


KINDS = {"evidently": run_evidently, "task": run_task, "engine": run_engine}


def main(argv: list[str]) -> int:
    kind, raw = argv[0], (argv[1] if len(argv) > 1 else "{}")
    if kind.startswith("warm-"):
        stats = warm(kind)
    elif kind in KINDS:
        stats = KINDS[kind](json.loads(raw))
    else:
        raise SystemExit(f"unknown child {kind!r}; one of {sorted(KINDS)} or warm-evidently/warm-task")
    print("BENCH-RESULT " + json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
