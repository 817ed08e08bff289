"""What the monitoring operators share: Parquet inputs with actionable errors, report helpers, the retraining
outlet, and MLflow logging to one run per (kind, dag, run, task) that a retry reuses.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias

from mlops_airflow.assets import monitoring_asset_uri
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.verdict import finite as _finite
from mlops_airflow.operators._common import run_identity, safe_part, task_key

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

_UNSAFE_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]+")


def _open_parquet(path: str, role: str, hint: str, missing: str | None = None) -> Any:
    """A ``pyarrow.dataset.Dataset`` over a Parquet file or a directory of Parquet files (local or a URI)."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    try:
        if "://" in path and not path.startswith("file://"):
            filesystem, fs_path = pafs.FileSystem.from_uri(path)
        else:
            filesystem = pafs.LocalFileSystem()
            fs_path = str(Path(path.removeprefix("file://")).expanduser().resolve())
        info = filesystem.get_file_info(fs_path)
    except Exception as err:
        raise MonitoringError(f"cannot open the {role} dataset {path!r}: {err}; {hint}") from err
    if info.type == pafs.FileType.NotFound:
        if missing:
            raise MonitoringError(missing)
        if role == "reference":
            raise MonitoringError(
                f"reference dataset {path!r} no longer exists; re-run the training-set step or point "
                "reference_path at the training set the current model was trained on"
            )
        raise MonitoringError(f"{role} dataset {path!r} does not exist; {hint}")
    try:
        return pads.dataset(fs_path, filesystem=filesystem, format="parquet", partitioning="hive")
    except Exception as err:
        raise MonitoringError(f"cannot read the {role} dataset {path!r} as Parquet: {err}; {hint}") from err


def _is_numeric_arrow(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def _source(path: str, role: str, hint: str) -> Any:
    """A ``drift_engine.ParquetSource`` (footers only), or a ``MonitoringError`` naming the dataset and the fix."""
    from mlops_airflow.monitoring.drift_engine import DriftEngineError, ParquetSource

    try:
        return ParquetSource(path)
    except FileNotFoundError:
        if role == "reference":
            raise MonitoringError(
                f"reference dataset {path!r} no longer exists; re-run the training-set step or point "
                "reference_path at the training set the current model was trained on"
            ) from None
        raise MonitoringError(f"{role} dataset {path!r} does not exist; {hint}") from None
    except DriftEngineError as err:
        raise MonitoringError(f"cannot read the {role} dataset {path!r} as Parquet: {err}; {hint}") from err


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

    @staticmethod
    def _report_path(report_dir: str, ident: dict[str, str], file_name: str) -> Path:
        path = (
            Path(str(report_dir)).expanduser().resolve()
            / safe_part(ident["dag_id"])
            / safe_part(ident["run_id"])
            / safe_part(ident["task_id"])
            / file_name
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

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

    def _log_run(
        self,
        *,
        kind: str,
        run_name: str,
        ident: dict[str, str],
        verdict: dict[str, Any],
        report_path: Path,
        verdict_path: Path,
        artifact_dir: str,
        metrics: dict[str, float],
        tags: dict[str, str],
    ) -> None:
        """Log report, verdict and metrics to one run per (kind, dag_id, run_id, task_id); fills ``mlflow_run_id``
        and points ``evidence_uri`` at the logged report.

        Through MLflow's REST API (``hook.rest``: no ``mlflow`` import, ~10 s less per task) when the tracking URI
        is http(s) and the server proxies artifacts; otherwise through ``MlflowClient``.
        """
        uri = self.tracking_uri or f"connection {self.mlflow_conn_id!r}"
        if not self.hook.settings.tracking_uri.startswith(("http://", "https://")):
            self._log_run_client(kind, run_name, ident, verdict, report_path, verdict_path, artifact_dir, metrics, tags)
            return
        from mlops_airflow.hooks.mlflow_rest import MlflowRestError

        rest = self.hook.rest
        run_id: str | None = None
        try:
            experiment_id = rest.experiment_id(str(self.experiment_name))
            keys = self._run_keys(kind, ident)
            run = self._find_rest_run(rest, experiment_id, keys)
            if run is None:
                run = rest.create_run(experiment_id, {**keys, "mlflow.runName": run_name}, run_name=run_name)
                self.log.info("created MLflow run %s in experiment %s", run["info"]["run_id"], experiment_id)
            else:
                self.log.info("retry: reusing MLflow run %s (status %s)", run["info"]["run_id"], run["info"]["status"])
            run_id = str(run["info"]["run_id"])
            artifact_uri = str(run["info"]["artifact_uri"])
            if not rest.proxies(artifact_uri):  # the client writes to the store itself (s3://, a path): mlflow
                self.log.info("artifact store %s is not proxied by the server: logging with MlflowClient", artifact_uri)
                self._log_run_client(
                    kind, run_name, ident, verdict, report_path, verdict_path, artifact_dir, metrics, tags
                )
                return
            all_tags = self._run_tags(ident, verdict, tags)
            self._fill_uris(verdict, f"{artifact_uri.rstrip('/')}/{artifact_dir}", run_id, report_path, verdict_path)
            rest.log_batch(
                run_id,
                metrics={k: float(v) for k, v in metrics.items() if _finite(v) is not None},
                tags=all_tags,
            )
            rest.upload_artifact(artifact_uri, report_path, artifact_dir)
            rest.upload_artifact(artifact_uri, verdict_path, artifact_dir)
            rest.set_terminated(run_id, "FINISHED")
        except (MlflowRestError, KeyError, ValueError) as err:
            if run_id is not None:
                with contextlib.suppress(Exception):  # the original error is the one to report
                    rest.set_terminated(run_id, "FAILED")
            raise MonitoringError(
                f"could not log the {kind} evidence to MLflow ({uri}, experiment {self.experiment_name!r}): {err}. "
                f"The HTML report is at {report_path}; check the MLflow connection, or set log_to_mlflow=False"
            ) from err

    @staticmethod
    def _run_keys(kind: str, ident: dict[str, str]) -> dict[str, str]:
        """The tags that identify the run of one (kind, dag, run, task): a retry finds it by them."""
        return {
            "mlops.kind": kind,
            "mlops.dag_id": ident["dag_id"],
            "mlops.run_id": ident["run_id"],
            "mlops.task_id": ident["task_id"],
        }

    def _run_tags(self, ident: dict[str, str], verdict: dict[str, Any], tags: dict[str, str]) -> dict[str, str]:
        out = {"mlops.try_number": ident["try_number"], "mlops.passed": str(verdict["passed"]).lower(), **tags}
        if self.model_name:
            out["mlops.model_name"] = str(self.model_name)
        return out

    @staticmethod
    def _fill_uris(verdict: dict[str, Any], base: str, run_id: str, report_path: Path, verdict_path: Path) -> None:
        """Point the verdict at its logged copies, then write the verdict file that is logged."""
        verdict["mlflow_run_id"] = run_id
        verdict["evidence_uri"] = f"{base}/{report_path.name}"
        verdict["verdict_uri"] = f"{base}/{verdict_path.name}"
        if verdict.get("retrain_event"):
            verdict["retrain_event"]["verdict_uri"] = verdict["verdict_uri"]
        verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True, default=str))

    @staticmethod
    def _find_rest_run(rest: Any, experiment_id: str, tags: dict[str, str]) -> dict[str, Any] | None:
        """The run an earlier try of this task made: a FINISHED one first, else the latest (a crashed try's)."""
        clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items() if "'" not in value and "\\" not in value]
        runs = rest.search_runs(
            experiment_id, " and ".join(clauses), max_results=100, order_by=["attributes.start_time DESC"]
        )

        def run_tags(run: dict[str, Any]) -> dict[str, str]:
            return {t["key"]: t.get("value", "") for t in (run.get("data") or {}).get("tags") or []}

        matching = [r for r in runs if all(run_tags(r).get(key) == value for key, value in tags.items())]
        finished = [r for r in matching if r["info"].get("status") == "FINISHED"]
        return (finished or matching or [None])[0]

    def _log_run_client(
        self,
        kind: str,
        run_name: str,
        ident: dict[str, str],
        verdict: dict[str, Any],
        report_path: Path,
        verdict_path: Path,
        artifact_dir: str,
        metrics: dict[str, float],
        tags: dict[str, str],
    ) -> None:
        """``_log_run`` through the hook's ``MlflowClient`` (artifact stores the client writes to itself)."""
        hook = self.hook
        run_id: str | None = None
        try:
            name = str(self.experiment_name)
            experiment_id = hook.experiment_id(name, create=True)
            keys = self._run_keys(kind, ident)
            run = hook.find_run(name, keys, prefer_finished=True)
            if run is None:
                run = hook.create_run(experiment_id, keys, run_name=run_name)
                self.log.info("created MLflow run %s in experiment %s", run.info.run_id, experiment_id)
            else:
                self.log.info("retry: reusing MLflow run %s (status %s)", run.info.run_id, run.info.status)
            run_id = run.info.run_id
            hook.set_run_tags(run_id, self._run_tags(ident, verdict, tags))
            self._fill_uris(
                verdict, f"{run.info.artifact_uri.rstrip('/')}/{artifact_dir}", run_id, report_path, verdict_path
            )
            hook.log_run_metrics(run_id, {k: float(v) for k, v in metrics.items() if _finite(v) is not None})
            hook.log_run_artifact(run_id, str(report_path), artifact_dir)
            hook.log_run_artifact(run_id, str(verdict_path), artifact_dir)
            hook.end_run(run_id, "FINISHED")
        except Exception as err:
            if run_id is not None:
                with contextlib.suppress(Exception):  # the original error is the one to report
                    hook.end_run(run_id, "FAILED")
            uri = self.tracking_uri or f"connection {self.mlflow_conn_id!r}"
            raise MonitoringError(
                f"could not log the {kind} evidence to MLflow ({uri}, experiment {self.experiment_name!r}): {err}. "
                f"The HTML report is at {report_path}; check the MLflow connection, or set log_to_mlflow=False"
            ) from err


# ---------------------------------------------------------------------------------------------------------------------
# data drift
# ---------------------------------------------------------------------------------------------------------------------
