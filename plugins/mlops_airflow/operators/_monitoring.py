"""What the monitoring operators share: Parquet inputs (a path or a URI) with actionable errors, the report and
verdict files of a check (written in the task's temporary folder, published under ``report_dir``, a URI), the
retraining outlet, and MLflow logging to one run per (kind, dag, run, task) that a retry reuses
(``_monitoring_runs``).
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias

from mlops_airflow import storage
from mlops_airflow.assets import monitoring_asset_uri
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators._common import run_identity, safe_part, task_key

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

_UNSAFE_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]+")


def _gone(path: str, role: str, hint: str) -> MonitoringError:
    """The error of an input that is not there (a reference: name the training set it should be)."""
    if role == "reference":
        return MonitoringError(
            f"reference dataset {path!r} no longer exists; re-run the training-set step or point "
            "reference_path at the training set the current model was trained on",
            cause="reference missing", evidence_uri=path,
            next_step="re-run the training-set step or point reference_path at the training set",
        )
    return MonitoringError(f"{role} dataset {path!r} does not exist; {hint}", cause=f"{role} missing",
                           evidence_uri=path, next_step=hint)


def _open_parquet(path: str, role: str, hint: str, missing: str | None = None) -> Any:
    """A ``pyarrow.dataset.Dataset`` over a Parquet file or a directory of Parquet files: a local path, a
    ``file://`` URI or an object-store URI (read through ``storage``'s filesystem, with its credentials)."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from mlops_airflow.monitoring.drift_sources import arrow_filesystem

    try:
        filesystem, fs_path = arrow_filesystem(path)
        info = filesystem.get_file_info(fs_path)
    except Exception as err:
        raise MonitoringError(f"cannot open the {role} dataset {path!r}: {err}; {hint}") from err
    if info.type == pafs.FileType.NotFound:
        if missing:
            raise MonitoringError(missing)
        raise _gone(path, role, hint)
    try:
        return pads.dataset(fs_path, filesystem=filesystem, format="parquet", partitioning="hive")
    except Exception as err:
        raise MonitoringError(f"cannot read the {role} dataset {path!r} as Parquet: {err}; {hint}") from err


@contextlib.contextmanager
def _staged(path: str, role: str, hint: str) -> Iterator[str]:
    """A local path with the content of ``path`` for the ``with`` block, for the drift engine's many column passes:
    a local path or ``file://`` URI is used in place; an object-store file or folder is downloaded once into this
    task's temporary folder (``storage.local_copy``), removed afterwards."""
    if storage.is_local(path):
        yield str(storage.local_path(path))
        return
    stack = contextlib.ExitStack()
    try:
        local = stack.enter_context(storage.local_copy(path))
    except FileNotFoundError:
        raise _gone(path, role, hint) from None
    with stack:
        yield str(local)


def _source(path: str, role: str, hint: str, label: str | None = None) -> Any:
    """A ``drift_engine.ParquetSource`` (footers only), or a ``MonitoringError`` naming the dataset (``label``: the
    path or URI the user gave, when ``path`` is its staged copy) and the fix."""
    from mlops_airflow.monitoring.drift_engine import DriftEngineError, ParquetSource

    label = label or path
    try:
        return ParquetSource(path)
    except FileNotFoundError:
        raise _gone(label, role, hint) from None
    except DriftEngineError as err:
        raise MonitoringError(f"cannot read the {role} dataset {label!r} as Parquet: {err}; {hint}") from err


def _read_frame(path: str, role: str, hint: str, columns: Sequence[str] | None = None) -> Any:
    """A pandas DataFrame of a Parquet file/directory (only ``columns`` when given), or a ``MonitoringError``."""
    dataset = _open_parquet(path, role, hint, missing=f"{role} {path!r} does not exist; {hint}")
    try:
        return dataset.to_table(columns=list(columns) if columns is not None else None).to_pandas()
    except Exception as err:
        raise MonitoringError(f"cannot read columns {columns} of the {role} {path!r}: {err}; {hint}") from err


def _with_banner(report_path: Path, lines: Sequence[str]) -> None:
    """Put a short note at the top of an Evidently HTML report (what the verdict is based on)."""
    text = report_path.read_text(encoding="utf-8")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    banner = (
        '<div style="font-family:sans-serif;border:2px solid #ed6a5a;padding:8px 14px;margin:8px;'
        f'background:#fff8f6"><b>mlops_airflow</b><ul style="margin:4px 0">{items}</ul></div>'
    )
    match = re.search(r"<body[^>]*>", text, flags=re.IGNORECASE)
    text = text[: match.end()] + banner + text[match.end() :] if match else banner + text
    report_path.write_text(text, encoding="utf-8")


def _placeholder_report(path: Path, title: str, reasons: Sequence[str]) -> None:
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    path.write_text(
        f"<!doctype html><html><body><h1>{html.escape(title)}</h1><ul>{items}</ul></body></html>", encoding="utf-8"
    )


@dataclass(frozen=True)
class _Evidence:
    """A check's report and verdict: local files in the task's temporary folder (what the engines, Evidently and
    MLflow write and read) and their URIs under ``report_dir`` (what XCom and the verdict carry)."""

    report_path: Path
    verdict_path: Path
    report_uri: str
    verdict_uri: str
    artifact_dir: str

    def put_report(self) -> None:
        """The report, whole, at ``report_uri`` (before MLflow logging: an MLflow failure names it)."""
        storage.put_file(self.report_path, self.report_uri)

    def put_verdict(self, verdict: dict[str, Any]) -> None:
        """The verdict JSON written locally and, whole, at ``verdict_uri``."""
        self.verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True, default=str))
        storage.put_file(self.verdict_path, self.verdict_uri)


def _retrain_outlet(kwargs: dict[str, Any], model_name: str | None, emit: bool, retrain_asset: str | None) -> bool:
    """Declare (in ``kwargs["outlets"]``) the ``AssetAlias`` through which a failing verdict emits
    ``mlops://monitoring/<model>``; return whether the trigger can fire.

    Runs at parse time (``__init__``): the asset URI must be known then, so a templated ``model_name`` needs an
    explicit ``retrain_asset``. No model and no asset: nothing to trigger (said at execute).
    """
    if not emit:
        return False
    if retrain_asset is None and model_name and "{{" in str(model_name):
        raise ValueError(
            f"model_name {model_name!r} is templated, so the retraining asset is unknown at parse time; "
            "pass retrain_asset='mlops://monitoring/<model>' or emit_retrain_event=False"
        )
    uri = retrain_asset or (monitoring_asset_uri(str(model_name)) if model_name else None)
    if uri is None:
        return False
    from mlops_airflow.monitoring.retrain import retrain_alias_name

    kwargs["outlets"] = [*list(kwargs.get("outlets") or []), AssetAlias(retrain_alias_name(uri))]
    return True


class _MonitoringMixin:
    """MLflow logging (one run per dag/run/task, reused by retries) and the retraining trigger, for both checks."""

    mlflow_conn_id: str
    tracking_uri: str | None
    experiment_name: str
    model_name: str | None
    emit_retrain_event: bool
    retrain_asset: str | None
    report_dir: str
    task_id: str
    log: Any

    @cached_property
    def hook(self) -> MlflowHook:
        from mlops_airflow.hooks.mlflow_registry import MlflowHook

        return MlflowHook(self.mlflow_conn_id, tracking_uri=self.tracking_uri)

    # -- identity / paths ----------------------------------------------------------------------------------------

    def _identity(self, context: Any) -> dict[str, str]:
        """``run_identity`` whose ``task_id`` is the task key (``<task>__<map_index>`` for a mapped instance)."""
        return {**run_identity(context), "task_id": task_key(context, self.task_id)}

    @contextlib.contextmanager
    def _evidence(self, ident: dict[str, str], report_file: str, verdict_file: str,
                  artifact_dir: str) -> Iterator[_Evidence]:
        """The check's ``_Evidence``: ``report_dir/<dag_id>/<run_id>/<task_id>/<file>`` (a URI, or a path made
        one), written from a temporary folder of this task that is removed afterwards."""
        base = storage.join(str(self.report_dir), *(safe_part(ident[k]) for k in ("dag_id", "run_id", "task_id")))
        with tempfile.TemporaryDirectory(prefix="mlops-check-") as tmp:
            yield _Evidence(Path(tmp) / report_file, Path(tmp) / verdict_file, storage.join(base, report_file),
                            storage.join(base, verdict_file), artifact_dir)

    # -- retraining trigger --------------------------------------------------------------------------------------

    def _retrain_uri(self) -> str | None:
        if self.retrain_asset:
            return str(self.retrain_asset)
        return monitoring_asset_uri(str(self.model_name)) if self.model_name else None

    def _emit_retrain(self, context: Any, extra: dict[str, Any]) -> bool:
        """Add the asset event (with ``extra``) to this task's outlet events; Airflow registers it on success."""
        from airflow.sdk import Asset

        from mlops_airflow.monitoring.retrain import retrain_alias_name

        uri = self._retrain_uri()
        events = context.get("outlet_events") if hasattr(context, "get") else None
        if uri is None or events is None:
            self.log.warning("retraining trigger not emitted: no outlet events in this context (uri %s)", uri)
            return False
        accessor = events[AssetAlias(retrain_alias_name(uri))]
        if hasattr(accessor, "add"):
            accessor.add(Asset(uri), extra=extra)
        else:  # a test double without alias support
            accessor.extra = extra
        self.log.info("retraining trigger: asset event on %s, extra %s", uri, json.dumps(extra, sort_keys=True))
        return True

    # -- MLflow --------------------------------------------------------------------------------------------------

    def _log_run(self, kind: str, ident: dict[str, str], verdict: dict[str, Any], files: _Evidence, *,
                 metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Log report, verdict and metrics to one run per (kind, dag_id, run_id, task_id) (REST where the server
        proxies artifacts, else ``MlflowClient``: ``_monitoring_runs``); fills ``mlflow_run_id`` and points
        ``evidence_uri`` at the logged report."""
        from mlops_airflow.operators._monitoring_runs import log_check_run

        keys = {"mlops.kind": kind, **{f"mlops.{k}": ident[k] for k in ("dag_id", "run_id", "task_id")}}
        log_check_run(
            self.hook, self.log, experiment=str(self.experiment_name), keys=keys, verdict=verdict, files=files,
            run_name=f"{kind.replace('_', '-')} {ident['dag_id']} {ident['run_id']}", metrics=metrics,
            tags=self._run_tags(ident, verdict, tags), where=self.tracking_uri or f"connection {self.mlflow_conn_id!r}",
        )

    def _run_tags(self, ident: dict[str, str], verdict: dict[str, Any], tags: dict[str, str]) -> dict[str, str]:
        out = {"mlops.try_number": ident["try_number"], "mlops.passed": str(verdict["passed"]).lower(), **tags}
        if self.model_name:
            out["mlops.model_name"] = str(self.model_name)
        return out
