"""Where a day's batch comes from: a user function, or a file at a URI per day, landed as one artefact.

- a function (or ``"path/to/file.py:function"`` / ``"package.module:function"``) is called as
  ``function(day, **params)`` and must return a pandas DataFrame; it is written as Parquet;
- a URI template (``"s3://bucket/events/{ds}.parquet"``, ``"file:///data/{yyyy}/{mm}/{dd}.csv"``, or a local path
  with ``{ds}``) is formatted for the day and copied byte for byte through ``airflow.sdk.ObjectStoragePath``.

The landed batch is written through :mod:`mlops_airflow.storage` under the caller's folder URI
(``<data_root>/landing/<day>.<ext>``): ``file://`` on one machine, ``s3://`` when workers share no disk.

Imported by tasks at run time only (pandas and the object store are imported inside the functions). Relative
paths are resolved against ``base_dir`` (the factories pass ``[mlops] project_root``).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from mlops_airflow import storage
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.pipeline.spec import Source, source_kind


def resolve_callable(ref: Source, *, base_dir: str | Path | None = None, field_name: str = "source") -> Callable:
    """The function a source reference names (a callable is returned as it is).

    :param ref: a callable, ``"path/to/file.py:function"`` or ``"package.module:function"``.
    :param base_dir: folder relative file paths are resolved against.
    :param field_name: the spec field, for the error message.
    """
    if callable(ref):
        return ref
    target, _, func = str(ref).rpartition(":")
    if target.endswith(".py"):
        from mlops_airflow.operators._common import load_module

        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise FileNotFoundError(
                f"ModelSpec.{field_name}={ref!r}: {path} does not exist; fix the path (relative paths are resolved "
                f"against {base_dir})"
            )
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
        module = load_module(path, f"mlops_source_{path.stem}_{digest}")
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ImportError(
                f"ModelSpec.{field_name}={ref!r}: module {target!r} cannot be imported ({err}); put it on the "
                "worker's PYTHONPATH (e.g. the project's include/ or a package), or pass a .py path"
            ) from None
    function = getattr(module, func, None)
    if not callable(function):
        public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise AttributeError(
            f"ModelSpec.{field_name}={ref!r}: {target} has no function {func!r}; it has {public[:20]}"
        )
    return function


def format_uri(template: str, day: date, params: Mapping[str, Any] | None = None) -> str:
    """The URI of ``day``: ``{ds}`` (2026-11-01), ``{ds_nodash}``, ``{yyyy}``, ``{mm}``, ``{dd}`` and ``params``."""
    values = {"ds": day.isoformat(), "ds_nodash": day.strftime("%Y%m%d"), "yyyy": f"{day.year:04d}",
              "mm": f"{day.month:02d}", "dd": f"{day.day:02d}", **dict(params or {})}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"source URI template {template!r} has a placeholder that is not one of {sorted(values)} ({err}); "
            "use {ds}, {ds_nodash}, {yyyy}, {mm}, {dd} or a source_params key"
        ) from None


def _source(uri: str, base_dir: str | Path | None) -> Any:
    """The day's source file: a local ``Path`` (a relative path against ``base_dir``), else an
    ``ObjectStoragePath`` (through ``[mlops] storage_conn_id``, or the connection the URI names:
    ``s3://conn_id@bucket/key``)."""
    if "://" not in uri:
        path = Path(uri)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return path.absolute()
    if storage.is_local(uri):
        return storage.local_path(uri)
    if "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri)
    return storage.object_path(uri)


def _remote_failed(uri: str, err: Exception, field_name: str) -> storage.StorageError:
    next_step = (f"check that the store of ModelSpec.{field_name} is reachable from this worker and its connection "
                 "holds valid credentials, then clear the task (nothing was landed; a retry is safe)")
    return storage.StorageError(f"could not read the source batch {uri}: {type(err).__name__}: {err}; {next_step}",
                                cause="source read failed", evidence_uri=uri, next_step=next_step)


def _schema(local: Path, csv: bool) -> tuple[list[str], int]:
    """Columns and rows of a staged batch, from its header (CSV) or its Parquet footer (no data read)."""
    if csv:
        import pandas as pd

        columns = [str(c) for c in pd.read_csv(local, nrows=0).columns]
        with open(local, "rb") as f:
            return columns, max(sum(1 for _ in f) - 1, 0)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(local)
    return list(meta.schema_arrow.names), int(meta.metadata.num_rows)


def land(source: Source, day: date, out_dir: str | Path, *, params: Mapping[str, Any] | None = None,
         base_dir: str | Path | None = None, field_name: str = "source",
         required: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """Land the batch of ``day`` as ``<out_dir>/<day>.<parquet|csv>`` through the artefact store.

    :param out_dir: URI (``s3://bucket/root/landing``, ``file:///...``) or local folder of the landed batches.
    :return: ``{path, uri, rows, columns}``: ``path`` is the landed artefact's URI, ``uri`` the source's (a function
        source: the landed URI too).

    The write is whole (a retry rewrites the same bytes for a deterministic source). A function must return a
    DataFrame; a URI that does not exist fails naming the URI and the spec field. With ``required`` (spec field ->
    columns), a batch that lacks one of them fails naming the field: its schema is read from the staged copy of
    exactly the bytes that would be stored, so nothing reaches the landing area.
    """
    import pandas as pd

    kind = source_kind(source, field_name)
    if kind == "uri":
        uri = format_uri(str(source), day, params)
        src = _source(uri, base_dir)
        csv = uri.lower().endswith(".csv")
        try:
            found = src.exists()
        except Exception as err:  # noqa: BLE001 - fsspec/botocore raise many types; one error names the URI
            raise _remote_failed(uri, err, field_name) from err
        if not found:
            raise DataValidationError(
                f"ModelSpec.{field_name}: no batch at {uri} for {day.isoformat()}; check that the day's file was "
                "delivered, or fix the URI template", cause="source batch missing", evidence_uri=uri,
                next_step="deliver the day's file or fix the URI template, then clear the task",
            )
        out = storage.join(out_dir, f"{day.isoformat()}{'.csv' if csv else '.parquet'}")
        with storage.staged_output(out) as tmp:
            try:
                with src.open("rb") as fin, open(tmp, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        fout.write(chunk)
            except Exception as err:  # noqa: BLE001 - as above
                raise _remote_failed(uri, err, field_name) from err
            columns, rows = _schema(tmp, csv)
            check_columns(columns, required or {}, f"{uri} ({field_name})")  # raises: nothing is stored
        return {"path": out, "uri": uri, "rows": rows, "columns": columns}
    function = resolve_callable(source, base_dir=base_dir, field_name=field_name)
    df = function(day, **dict(params or {}))
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"ModelSpec.{field_name} returned {type(df).__name__}, not a pandas DataFrame; return the day's rows "
            "as a DataFrame"
        )
    check_columns([str(c) for c in df.columns], required or {}, f"of {day.isoformat()} from {field_name}")
    out = storage.write_table(storage.join(out_dir, f"{day.isoformat()}.parquet"), df)
    return {"path": out, "uri": out, "rows": len(df), "columns": [str(c) for c in df.columns]}


def check_columns(columns: list[str], required: Mapping[str, list[str]], where: str) -> None:
    """Fail naming the spec field whose column the batch lacks (nothing downstream runs)."""
    have = set(columns)
    problems = [f"ModelSpec.{name}: {[c for c in cols if c not in have]}" for name, cols in required.items()
                if any(c not in have for c in cols)]
    if problems:
        raise DataValidationError(
            f"the batch {where} lacks columns named by the spec ({'; '.join(problems)}); it has {sorted(have)}. "
            "Nothing was versioned or trained. Fix the spec's column names (or the source), then re-run"
        )
