"""Small helpers shared by the operators (no heavy imports)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_part(value: object) -> str:
    """A path component from a dag/run/task id (``manual__2026-01-01T00:00:00+00:00`` stays readable)."""
    return _UNSAFE.sub("_", str(value)).strip("._") or "manual"


def run_identity(context: Any) -> dict[str, str]:
    """dag_id, run_id, task_id and try number from an Airflow context (or a plain dict in tests)."""
    get = context.get if hasattr(context, "get") else (lambda _k, _d=None: _d)
    dag = get("dag")
    ti = get("ti") or get("task_instance")
    return {
        "dag_id": str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or get("dag_id") or "manual"),
        "run_id": str(get("run_id") or getattr(ti, "run_id", None) or "manual"),
        "task_id": str(getattr(ti, "task_id", None) or get("task_id") or "manual"),
        "try_number": str(getattr(ti, "try_number", None) or 1),
    }


def task_key(context: Any, task_id: str | None = None) -> str:
    """The task id (``task_id`` when the context has none), with ``__<map_index>`` for a mapped task instance:
    what tells the instances of one mapped task apart in paths and MLflow runs."""
    ident = run_identity(context)
    ti = context.get("ti") or context.get("task_instance") if hasattr(context, "get") else None
    map_index = getattr(ti, "map_index", -1)
    base = task_id if task_id and ident["task_id"] == "manual" else ident["task_id"]
    return base if not isinstance(map_index, int) or map_index < 0 else f"{base}__{map_index}"


def _run_parts(context: Any) -> tuple[str, str, str]:
    ident = run_identity(context)
    return safe_part(ident["dag_id"]), safe_part(ident["run_id"]), safe_part(task_key(context))


def run_dir(base: str | Path, context: Any) -> Path:
    """``base/<dag_id>/<run_id>/<task key>`` as a local path (a worker-local scratch folder)."""
    return Path(base).joinpath(*_run_parts(context))


def run_uri(base: str | Path, context: Any) -> str:
    """``base/<dag_id>/<run_id>/<task key>`` as a URI (``base`` a URI or a path): where a task's artefacts go."""
    from mlops_airflow import storage

    return storage.join(base, *_run_parts(context))


def as_dict(value: Any, what: str) -> dict[str, Any]:
    """Accept an upstream XCom value as a dict, or its JSON text (templated fields render to str)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            import ast

            parsed = ast.literal_eval(value)  # Jinja renders a dict with Python repr
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"{what} must be a dict (an upstream task's XCom), got {type(value).__name__}: {value!r:.200}")


def parquet_rows(path: str | Path) -> int:
    """Row count from Parquet footers only (a file or a directory of files: a local path or a URI; an
    object-store file is read through ``storage``'s filesystem, footers only); no data is read."""
    import pyarrow.parquet as pq

    if isinstance(path, Path) or "://" not in str(path) or str(path).startswith("file://"):
        from mlops_airflow import storage

        local = storage.local_path(path)
        files = sorted(local.rglob("*.parquet")) if local.is_dir() else [local]
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    from mlops_airflow.monitoring.drift_sources import ParquetSource

    return ParquetSource(str(path)).rows


def load_module(path: str | Path, name: str) -> Any:
    """Import a Python file that is not on sys.path (e.g. ``include/data/generator.py``) as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file, or missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
