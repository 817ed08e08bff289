"""Monitoring: data drift between a reference dataset (e.g. the training set) and a new batch, with Evidently 0.7.

The operator returns a small verdict (XCom) in the pack's gate shape ``{passed, reasons, metrics, evidence_uri}``,
writes Evidently's HTML report to a local folder and, by default, logs the report, the verdict and the drift
metrics to an MLflow run that a retry of the same task reuses.

Evidently, pandas, pyarrow and mlflow are imported inside functions only: DAG files that use this operator
parse without them.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import MonitoringError

if TYPE_CHECKING:
    from airflow.sdk import Context
    from mlflow import MlflowClient

    from mlops_airflow.hooks.mlflow_registry import MlflowHook

REPORT_FILE = "data_drift.html"
VERDICT_FILE = "drift_verdict.json"
ARTIFACT_DIR = "drift"
RUN_KIND = "data_drift"

# Evidently 0.7 writes the *display* name of a stattest it picked itself into the snapshot (``ValueDrift`` config
# ``method``), and the registry name of one the caller chose. Map display names back to the registry names the
# ``stattest`` parameter takes (evidently/legacy/calculations/stattests/*.py, 0.7.23).
_STATTEST_NAMES = {
    "Anderson-Darling": "anderson",
    "chi-square p_value": "chisquare",
    "Cramer-von Mises": "cramer_von_mises",
    "Energy-distance": "ed",
    "Epps-Singleton": "es",
    "Fisher's Exact test": "fisher_exact",
    "g_test": "g_test",
    "Hellinger distance": "hellinger",
    "Jensen-Shannon distance": "jensenshannon",
    "Kullback-Leibler divergence": "kl_div",
    "K-S p_value": "ks",
    "Mann-Whitney U-rank test": "mannw",
    "empirical_mmd": "empirical_mmd",
    "PSI": "psi",
    "t_test": "t_test",
    "Percentile text content drift": "perc_text_content_drift",
    "Absolute text content drift": "abs_text_content_drift",
    "Total-Variation-Distance": "TVD",
    "Wasserstein distance (normed)": "wasserstein",
    "Z-test p_value": "z",
}
# Stattests whose score is a distance (drift when score >= threshold); every other one returns a p-value (drift
# when p-value < threshold). Only needed when a snapshot carries no per-column test results.
_DISTANCE_STATTESTS = frozenset(
    {
        "wasserstein",
        "psi",
        "jensenshannon",
        "kl_div",
        "hellinger",
        "ed",
        "perc_text_content_drift",
        "abs_text_content_drift",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_UNSAFE_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]+")


def _stattest_name(method: Any) -> str:
    name = str(method) if method is not None else "unknown"
    return _STATTEST_NAMES.get(name, name)


def _is_distance(method: str) -> bool:
    return method in _DISTANCE_STATTESTS


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _column_reason(col: str, info: dict[str, Any]) -> str:
    score, threshold, method = info["score"], info["threshold"], info["method"]
    if score is None or threshold is None:
        return f"{col} ({method})"
    if _is_distance(method):
        return f"{col} ({method} {score:.2f} >= {threshold:.2f})"
    return f"{col} ({method} p={score:.3g} < {threshold:.2f})"


def _parse_snapshot(snapshot_dict: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, float] | None]:
    """Per-column drift results and Evidently's drifted-columns count/share from ``Snapshot.dict()``.

    The structure this expects (Evidently 0.7, a ``Report([DataDriftPreset(...)], include_tests=True)``)::

        {"metrics": [
            {"id": "<metric id>",
             "config": {"type": "evidently:metric_v2:DriftedColumnsCount", "columns": [...], "drift_share": 0.5},
             "value": {"count": 3.0, "share": 0.6}},
            {"id": "<metric id>",
             "config": {"type": "evidently:metric_v2:ValueDrift", "column": "monthly_charges",
                        "method": "Wasserstein distance (normed)" | "ks" | ..., "threshold": 0.1},
             "value": 0.41},                          # the drift score (a distance or a p-value)
            ...],
         "tests": [
            {"metric_config": {"metric_id": "<ValueDrift metric id>", "params": {"column": ...}},
             "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest", ...},
             "status": "FAIL" | "SUCCESS"},           # FAIL = the column drifted
            {"metric_config": {"metric_id": "<DriftedColumnsCount metric id>", ...},
             "test_config": {"type": "evidently:test_v2:LessThanMetricTest", "threshold": 0.5},
             "status": "FAIL" | "SUCCESS"},           # FAIL = dataset drift (share >= drift_share)
            ...]}

    A column's ``drifted`` flag comes from its ValueDrift test status. Without tests (a report run with
    ``include_tests=False``) it is inferred from score and threshold: a distance drifts when ``score >= threshold``,
    a p-value when ``score < threshold``. ``method`` is normalised to the stattest's registry name
    (``wasserstein``, ``ks``, ``psi``, ...). Metric types are matched on their suffix, so a renamed prefix
    (``metric_v2``) does not break the parser.

    :return: ``({column: {score, threshold, method, drifted}}, {"count": n, "share": s} or None)``.
    """
    metrics = snapshot_dict.get("metrics") or []
    tests = snapshot_dict.get("tests") or []
    status_by_metric: dict[str, str] = {}
    for test in tests:
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        bound_type = str((test.get("bound_test") or {}).get("type", ""))
        if metric_id and bound_type.endswith("ValueDriftBoundTest"):
            status_by_metric[metric_id] = str(test.get("status", "")).upper()

    per_column: dict[str, dict[str, Any]] = {}
    counts: dict[str, float] | None = None
    for metric in metrics:
        config = metric.get("config") or {}
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            column = str(config.get("column"))
            method = _stattest_name(config.get("method"))
            score = _finite(metric.get("value"))
            threshold = _finite(config.get("threshold"))
            status = status_by_metric.get(str(metric.get("id")))
            if status in ("FAIL", "SUCCESS"):
                drifted = status == "FAIL"
            elif score is None or threshold is None:
                drifted = False
            else:
                drifted = score >= threshold if _is_distance(method) else score < threshold
            per_column[column] = {"score": score, "threshold": threshold, "method": method, "drifted": drifted}
        elif kind == "DriftedColumnsCount":
            value = metric.get("value") or {}
            counts = {"count": float(value.get("count", 0) or 0), "share": float(value.get("share", 0) or 0)}
    return per_column, counts


def drift_verdict_from_snapshot(snapshot_dict: dict[str, Any], drift_share_threshold: float) -> dict[str, Any]:
    """The drift part of the verdict from an Evidently 0.7 ``Snapshot.dict()`` (see ``_parse_snapshot``).

    Dataset drift means ``share of drifted columns >= drift_share_threshold``. The share comes from the per-column
    results (the same stattests Evidently's ``DriftedColumnsCount`` uses); when a snapshot holds only the count
    metric, its count/share are used.

    :return: ``{"passed", "reasons", "drifted_columns", "drift_share",
        "metrics": {"n_columns", "n_drifted", "per_column": {col: {score, threshold, method, drifted}}}}``;
        ``passed`` is False on dataset drift, and ``reasons`` then names each drifted column with its test.
    """
    per_column, counts = _parse_snapshot(snapshot_dict)
    if per_column:
        n_columns = len(per_column)
        drifted = [col for col, info in per_column.items() if info["drifted"]]
        n_drifted = len(drifted)
        share = n_drifted / n_columns
    elif counts is not None:
        n_drifted = int(counts["count"])
        share = counts["share"]
        n_columns = round(n_drifted / share) if share else 0
        drifted = []
    else:
        raise MonitoringError(
            "the Evidently snapshot holds no ValueDrift or DriftedColumnsCount metric: was it produced by "
            "Report([DataDriftPreset(...)]) with Evidently 0.7? Re-run the drift task."
        )
    reasons = []
    dataset_drift = n_columns > 0 and share >= drift_share_threshold
    if dataset_drift:
        detail = ", ".join(_column_reason(col, per_column[col]) for col in drifted)
        reasons.append(
            f"dataset drift: {n_drifted} of {n_columns} columns drifted "
            f"(share {share:.2f} >= {drift_share_threshold:.2f})" + (f": {detail}" if detail else "")
        )
    return {
        "passed": not dataset_drift,
        "reasons": reasons,
        "drifted_columns": drifted,
        "drift_share": round(share, 6),
        "metrics": {"n_columns": n_columns, "n_drifted": n_drifted, "per_column": per_column},
    }


def _safe_part(value: object) -> str:
    """A path component from a dag/run/task id (``manual__2026-01-01T00:00:00+00:00`` stays readable)."""
    return _UNSAFE.sub("_", str(value)).strip("._") or "manual"


def _open_parquet(path: str, role: str, hint: str) -> Any:
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


class DataDriftOperator(BaseOperator):
    """Compare a new batch with a reference dataset using Evidently's ``DataDriftPreset`` and return a verdict.

    Returns (XCom) ``{"passed", "reasons", "drifted_columns", "drift_share", "metrics": {"n_columns",
    "n_drifted", "per_column": {col: {score, threshold, method, drifted}}, "reference_rows", "current_rows",
    "excluded_columns"}, "evidence_uri", "report_path", "mlflow_run_id"}``. ``passed`` is False on dataset drift
    (share of drifted columns >= ``drift_share_threshold``) and when a feature is entirely null on either side
    (that feature is left out of the drift run and named in ``reasons``).

    The HTML report goes to ``report_dir/<dag_id>/<run_id>/<task_id>/data_drift.html`` (a mapped task's id gets
    ``__<map_index>``). With ``log_to_mlflow``
    the report and ``drift_verdict.json`` are logged under ``drift/`` of an MLflow run tagged
    ``mlops.kind=data_drift`` with the dag/run/task ids; a retry of the task reuses that run. Raises
    ``MonitoringError`` on bad input (missing reference, empty current window, missing columns) and, with
    ``fail_on_drift``, when the verdict does not pass.

    :param reference_path: Parquet file or directory of Parquet files to compare against, e.g. the training set
        (templated).
    :param current_path: Parquet file or directory of the new batch (templated).
    :param report_dir: local folder for the HTML report and the verdict JSON (templated).
    :param columns: features to compare. None = every numeric (integer/float) column present on both sides,
        except ``exclude_columns`` and ``label_column``.
    :param exclude_columns: columns never compared automatically (ids, timestamps).
    :param label_column: the label, left out of automatic selection (label drift is a quality signal, not a data
        drift one); None to include it.
    :param drift_share_threshold: dataset drift when the share of drifted columns is >= this.
    :param stattest: Evidently stattest for every column (``ks``, ``wasserstein``, ``psi``, ...; Evidently's
        ``DataDriftPreset(method=...)``); None = Evidently picks per column.
    :param stattest_threshold: threshold for that stattest (``DataDriftPreset(threshold=...)``); None = the
        stattest's default.
    :param mlflow_conn_id: MLflow connection (type ``mlflow``).
    :param tracking_uri: explicit MLflow tracking URI; wins over the connection.
    :param experiment_name: MLflow experiment of the monitoring runs, created if missing (templated).
    :param model_name: the monitored model, set as tag ``mlops.model_name`` (templated).
    :param log_to_mlflow: log report, verdict and metrics to MLflow.
    :param fail_on_drift: raise ``MonitoringError`` when the verdict does not pass (default: return it, so a
        downstream task decides).
    """

    template_fields: Sequence[str] = ("reference_path", "current_path", "report_dir", "experiment_name", "model_name")
    ui_color = "#ed6a5a"

    def __init__(
        self,
        *,
        reference_path: str,
        current_path: str,
        report_dir: str,
        columns: list[str] | None = None,
        exclude_columns: Sequence[str] = ("customer_id", "event_timestamp"),
        label_column: str | None = "churned",
        drift_share_threshold: float = 0.5,
        stattest: str | None = None,
        stattest_threshold: float | None = None,
        mlflow_conn_id: str = "mlflow_default",
        tracking_uri: str | None = None,
        experiment_name: str = "mlops-monitoring",
        model_name: str | None = None,
        log_to_mlflow: bool = True,
        fail_on_drift: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < drift_share_threshold <= 1:
            raise ValueError(f"drift_share_threshold must be in (0, 1], got {drift_share_threshold}")
        self.reference_path = reference_path
        self.current_path = current_path
        self.report_dir = report_dir
        self.columns = list(columns) if columns is not None else None
        self.exclude_columns = list(exclude_columns)
        self.label_column = label_column
        self.drift_share_threshold = drift_share_threshold
        self.stattest = stattest
        self.stattest_threshold = stattest_threshold
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.model_name = model_name
        self.log_to_mlflow = log_to_mlflow
        self.fail_on_drift = fail_on_drift

    @cached_property
    def hook(self) -> MlflowHook:
        from mlops_airflow.hooks.mlflow_registry import MlflowHook

        return MlflowHook(self.mlflow_conn_id, tracking_uri=self.tracking_uri)

    # -- execute -------------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        ident = self._identity(context)
        ident["task_id"] = self._identity_task_id(ident)
        reference, current, columns = self._load(str(self.reference_path), str(self.current_path))

        reasons: list[str] = []
        excluded: list[str] = []
        for col in columns:
            for role, frame in (("reference", reference), ("current window", current)):
                if frame[col].isna().all():
                    reasons.append(
                        f"feature {col!r} is entirely null in the {role} ({len(frame)} rows): excluded from the "
                        "drift run; fix the upstream feature pipeline or drop it from columns"
                    )
                    if col not in excluded:
                        excluded.append(col)
        compared = [c for c in columns if c not in excluded]

        report_path = (
            Path(str(self.report_dir)).expanduser().resolve()
            / _safe_part(ident["dag_id"])
            / _safe_part(ident["run_id"])
            / _safe_part(ident["task_id"])
            / REPORT_FILE
        )
        report_path.parent.mkdir(parents=True, exist_ok=True)
        if compared:
            snapshot = self._run_evidently(reference[compared], current[compared])
            snapshot.save_html(str(report_path))
            verdict = drift_verdict_from_snapshot(snapshot.dict(), self.drift_share_threshold)
        else:
            self._write_placeholder_report(report_path, reasons)
            verdict = {
                "passed": False,
                "reasons": [],
                "drifted_columns": [],
                "drift_share": 0.0,
                "metrics": {"n_columns": 0, "n_drifted": 0, "per_column": {}},
            }
            reasons.append("no feature left to compare: the drift check could not run")

        verdict["reasons"] = reasons + verdict["reasons"]
        verdict["passed"] = bool(verdict["passed"] and not reasons)
        verdict["metrics"].update(
            {
                "reference_rows": len(reference),
                "current_rows": len(current),
                "excluded_columns": excluded,
                "drift_share_threshold": self.drift_share_threshold,
            }
        )
        verdict["evidence_uri"] = report_path.as_uri()
        verdict["report_path"] = str(report_path)
        verdict["mlflow_run_id"] = None

        verdict_path = report_path.with_name(VERDICT_FILE)
        if self.log_to_mlflow:
            self._log_to_mlflow(verdict, report_path, verdict_path, ident)
        else:
            verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True))

        summary = (
            f"data-drift passed={verdict['passed']} drift_share={verdict['drift_share']:.2f} "
            f"drifted={verdict['drifted_columns']} report={verdict['evidence_uri']}"
        )
        for reason in verdict["reasons"]:
            self.log.info("reason: %s", reason)
        self.log.info("SUMMARY %s", summary)
        if self.fail_on_drift and not verdict["passed"]:
            raise MonitoringError(
                f"{summary}; reasons: {'; '.join(verdict['reasons'])}. Next: inspect the report; the retraining "
                "trigger fires on this verdict"
            )
        return verdict

    # -- steps ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _identity(context: Any) -> dict[str, str]:
        get = context.get if hasattr(context, "get") else (lambda _key, _default=None: _default)
        dag = get("dag")
        ti = get("ti") or get("task_instance")
        map_index = getattr(ti, "map_index", -1)
        task_id = str(getattr(ti, "task_id", None) or get("task_id") or "")
        return {
            "dag_id": str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or get("dag_id") or "manual"),
            "run_id": str(get("run_id") or getattr(ti, "run_id", None) or "manual"),
            "task_id": task_id,
            "map_index": str(map_index if isinstance(map_index, int) else -1),
            "try_number": str(getattr(ti, "try_number", None) or 1),
        }

    def _identity_task_id(self, ident: dict[str, str]) -> str:
        task_id = ident["task_id"] or self.task_id
        return task_id if ident["map_index"] in ("-1", "") else f"{task_id}__{ident['map_index']}"

    def _load(self, reference_path: str, current_path: str) -> tuple[Any, Any, list[str]]:
        """Both frames (only the compared columns) and the list of compared columns, or a ``MonitoringError``."""
        reference_ds = _open_parquet(
            reference_path, "reference", "re-run the training-set step or point reference_path at it"
        )
        current_ds = _open_parquet(
            current_path, "current", "check that the upstream step landed this interval's batch at current_path"
        )
        ref_schema, cur_schema = reference_ds.schema, current_ds.schema
        if self.columns is not None:
            columns = list(dict.fromkeys(self.columns))
            missing_ref = [c for c in columns if c not in ref_schema.names]
            missing_cur = [c for c in columns if c not in cur_schema.names]
            if missing_ref or missing_cur:
                parts = []
                if missing_ref:
                    parts.append(f"missing from the reference {reference_path!r}: {missing_ref}")
                if missing_cur:
                    parts.append(f"missing from the current window {current_path!r}: {missing_cur}")
                raise MonitoringError(
                    f"drift columns {'; '.join(parts)}. Reference has {ref_schema.names}, current has "
                    f"{cur_schema.names}; fix the producing step's schema or the operator's columns"
                )
        else:
            skip = set(self.exclude_columns) | ({self.label_column} if self.label_column else set())
            columns = [
                field.name
                for field in ref_schema
                if field.name not in skip
                and _is_numeric_arrow(field.type)
                and field.name in cur_schema.names
                and _is_numeric_arrow(cur_schema.field(field.name).type)
            ]
            only_ref = [
                f.name for f in ref_schema if f.name not in skip and _is_numeric_arrow(f.type) and f.name not in columns
            ]
            if only_ref:
                self.log.warning("numeric reference columns not comparable with the current window: %s", only_ref)
            if not columns:
                raise MonitoringError(
                    f"no numeric column is common to the reference {reference_path!r} ({ref_schema.names}) and "
                    f"the current window {current_path!r} ({cur_schema.names}) after excluding {sorted(skip)}; "
                    "pass columns explicitly"
                )

        try:
            current = current_ds.to_table(columns=columns).to_pandas()
            reference = reference_ds.to_table(columns=columns).to_pandas()
        except Exception as err:
            raise MonitoringError(f"cannot read columns {columns} from the Parquet inputs: {err}") from err
        if len(current) == 0:
            raise MonitoringError(
                f"current window {current_path!r} has no rows: nothing to compare; check that the upstream "
                "step landed data for this interval (an empty window is never a pass)"
            )
        if len(reference) == 0:
            raise MonitoringError(
                f"reference dataset {reference_path!r} has no rows; re-run the training-set step or point "
                "reference_path at a non-empty training set"
            )
        self.log.info(
            "drift inputs: reference %s (%d rows), current %s (%d rows), columns %s",
            reference_path,
            len(reference),
            current_path,
            len(current),
            columns,
        )
        return reference, current, columns

    def _run_evidently(self, reference: Any, current: Any) -> Any:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        numerical, categorical = [], []
        for col in reference.columns:
            ref_num = is_numeric_dtype(reference[col]) and not is_bool_dtype(reference[col])
            cur_num = is_numeric_dtype(current[col]) and not is_bool_dtype(current[col])
            if ref_num != cur_num:
                raise MonitoringError(
                    f"column {col!r} is {reference[col].dtype} in the reference but {current[col].dtype} in the "
                    "current window; fix the producing step's schema"
                )
            (numerical if ref_num else categorical).append(col)
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        preset = DataDriftPreset(
            columns=list(reference.columns),
            drift_share=self.drift_share_threshold,
            method=self.stattest,
            threshold=self.stattest_threshold,
        )
        try:
            return Report([preset], include_tests=True).run(
                current_data=Dataset.from_pandas(current, data_definition=definition),
                reference_data=Dataset.from_pandas(reference, data_definition=definition),
            )
        except Exception as err:
            raise MonitoringError(
                f"Evidently's drift report failed on columns {list(reference.columns)} (stattest={self.stattest!r}, "
                f"stattest_threshold={self.stattest_threshold!r}): {err}; check that the stattest suits the column "
                "types (numerical: ks, wasserstein, psi, ...; categorical: chisquare, jensenshannon, ...)"
            ) from err

    @staticmethod
    def _write_placeholder_report(path: Path, reasons: list[str]) -> None:
        import html

        items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
        path.write_text(
            f"<!doctype html><html><body><h1>Data drift: not run</h1><ul>{items}</ul></body></html>",
            encoding="utf-8",
        )

    # -- MLflow --------------------------------------------------------------------------------------------------

    def _log_to_mlflow(
        self, verdict: dict[str, Any], report_path: Path, verdict_path: Path, ident: dict[str, str]
    ) -> None:
        """Log report, verdict and metrics to one run per (dag_id, run_id, task_id); fills the verdict's MLflow keys."""
        from mlflow.entities import Metric, RunStatus

        client: MlflowClient | None = None
        run_id: str | None = None
        task_id = ident["task_id"]
        try:
            client = self.hook.get_client()
            experiment_id = self._experiment_id(client, str(self.experiment_name))
            tags = {
                "mlops.kind": RUN_KIND,
                "mlops.dag_id": ident["dag_id"],
                "mlops.run_id": ident["run_id"],
                "mlops.task_id": task_id,
            }
            run = self._find_run(client, experiment_id, tags)
            if run is None:
                run = client.create_run(
                    experiment_id, tags={**tags, "mlflow.runName": f"data-drift {ident['dag_id']} {ident['run_id']}"}
                )
                self.log.info("created MLflow run %s in experiment %s", run.info.run_id, experiment_id)
            else:
                self.log.info("retry: reusing MLflow run %s (status %s)", run.info.run_id, run.info.status)
            run_id = run.info.run_id
            extra_tags = {
                "mlops.try_number": ident["try_number"],
                "mlops.passed": str(verdict["passed"]).lower(),
                "mlops.drift_share_threshold": str(self.drift_share_threshold),
                "mlops.stattest": str(self.stattest or "auto"),
            }
            if self.model_name:
                extra_tags["mlops.model_name"] = str(self.model_name)
            for key, value in extra_tags.items():
                client.set_tag(run_id, key, value)

            verdict["mlflow_run_id"] = run_id
            verdict["evidence_uri"] = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}/{REPORT_FILE}"
            verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True))

            now = _now_ms()
            metrics = [
                Metric("drift_share", float(verdict["drift_share"]), now, 0),
                Metric("drifted_columns", float(len(verdict["drifted_columns"])), now, 0),
            ]
            for col, info in verdict["metrics"]["per_column"].items():
                if info["score"] is not None:
                    key = "drift_score." + _UNSAFE_METRIC_KEY.sub("_", col)
                    metrics.append(Metric(key, float(info["score"]), now, 0))
            client.log_batch(run_id, metrics=metrics)
            client.log_artifact(run_id, str(report_path), ARTIFACT_DIR)
            client.log_artifact(run_id, str(verdict_path), ARTIFACT_DIR)
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        except Exception as err:
            if client is not None and run_id is not None:
                with contextlib.suppress(Exception):  # the original error is the one to report
                    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            uri = self.tracking_uri or f"connection {self.mlflow_conn_id!r}"
            raise MonitoringError(
                f"could not log the drift evidence to MLflow ({uri}, experiment {self.experiment_name!r}): {err}. "
                f"The HTML report is at {report_path}; check the MLflow connection, or set log_to_mlflow=False"
            ) from err

    @staticmethod
    def _experiment_id(client: MlflowClient, name: str) -> str:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise MonitoringError(
                    f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or choose "
                    "another experiment_name"
                )
            return experiment.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:
            # Another task created it in the meantime (RESOURCE_ALREADY_EXISTS).
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    @staticmethod
    def _find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> Any:
        """The run an earlier try of this task made: a FINISHED one first, else the latest (a crashed try's)."""
        clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items() if "'" not in value and "\\" not in value]
        runs = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(clauses),
            max_results=100,
            order_by=["attributes.start_time DESC"],
        )
        matching = [r for r in runs if all(r.data.tags.get(key) == value for key, value in tags.items())]
        finished = [r for r in matching if r.info.status == "FINISHED"]
        return (finished or matching or [None])[0]


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
