"""``DataDriftOperator``: a new batch against a reference dataset, per column as Evidently 0.7's
``DataDriftPreset`` does, with the verdict in the pack's gate shape and a retraining trigger on dataset drift.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.verdict import (
    SnapshotError,
    drift_verdict,
    verdict_from_columns,
)
from mlops_airflow.monitoring.verdict import drift_verdict_from_snapshot as _verdict_from_snapshot
from mlops_airflow.operators._monitoring import (
    _UNSAFE_METRIC_KEY,
    _is_numeric_arrow,
    _MonitoringMixin,
    _open_parquet,
    _placeholder_report,
    _retrain_outlet,
    _source,
    _with_banner,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


def drift_verdict_from_snapshot(snapshot_dict: dict[str, Any], drift_share_threshold: float) -> dict[str, Any]:
    """``monitoring.verdict.drift_verdict_from_snapshot`` that raises ``MonitoringError`` (a task failure with the
    cause and the next step) on a snapshot without drift results."""
    try:
        return _verdict_from_snapshot(snapshot_dict, drift_share_threshold)
    except SnapshotError as err:
        raise MonitoringError(str(err)) from err

REPORT_FILE = "data_drift.html"
VERDICT_FILE = "drift_verdict.json"
ARTIFACT_DIR = "drift"
RUN_KIND = "data_drift"
ENGINES = ("fast", "evidently")


class DataDriftOperator(_MonitoringMixin, BaseOperator):
    """Compare a new batch with a reference dataset, per column as Evidently 0.7's ``DataDriftPreset`` does, and
    return a verdict.

    Returns (XCom) ``{"passed", "reasons", "drifted_columns", "drift_share", "engine", "metrics": {"n_columns",
    "n_drifted", "per_column": {col: {score, threshold, method, drifted}}, "reference_rows", "current_rows",
    "excluded_columns", ...}, "evidence_uri", "verdict_uri", "report_path", "mlflow_run_id", "retrain_event"}``.
    ``passed`` is False on dataset drift (share of drifted columns >= ``drift_share_threshold``) and when a feature
    is entirely null on either side (that feature is left out of the drift run and named in ``reasons``).

    **Engines.** ``fast`` (default): ``mlops_airflow.monitoring.drift_engine`` reads one column at a time and
    computes Evidently's stattests itself (same automatic choice per column, same thresholds and comparisons);
    Wasserstein/KS are exact up to ``max_exact_rows`` rows per side and, above, bounded with a guarantee that
    decides the verdict (see the engine's docs; ``metrics.approximate_columns`` lists bounded scores). The HTML
    report is Evidently's ``DataDriftPreset`` on a uniform random sample of ``report_sample_rows`` rows per side
    (seed 0, stated at the top of the report and in ``metrics.report_sample_rows``), so it stays cheap: its charts
    and scores describe the sample, the verdict all rows. ``evidently``: ``DataDriftPreset`` on all rows (minutes
    and GBs at millions of rows); the verdict is read from its snapshot.

    **Retraining trigger.** On dataset drift, with ``emit_retrain_event`` (default) and a ``model_name`` (or
    ``retrain_asset``), the task emits an asset event on ``mlops://monitoring/<model>`` with extra
    ``{reason, kind: "data_drift", drifted_columns, drift_share, quality_drop: None, verdict_uri}``. The operator
    declares an ``AssetAlias`` outlet for it, so runs without drift emit nothing. A feature that is null only is a
    data problem, not a reason to retrain: it fails the verdict but emits no event. With ``fail_on_drift`` the task
    fails, and a failed task emits no event.

    The HTML report goes to ``report_dir/<dag_id>/<run_id>/<task_id>/data_drift.html`` (a mapped task's id gets
    ``__<map_index>``). With ``log_to_mlflow`` the report and ``drift_verdict.json`` are logged under ``drift/`` of
    an MLflow run tagged ``mlops.kind=data_drift`` with the dag/run/task ids; a retry of the task reuses that run.
    Raises ``MonitoringError`` on bad input (missing reference, empty current window, missing columns) and, with
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
    :param stattest: stattest for every column (Evidently's ``DataDriftPreset(method=...)``); None = Evidently's
        choice per column. The fast engine implements ``wasserstein``, ``ks``, ``jensenshannon``, ``psi``,
        ``chisquare`` and ``z``; any other needs ``engine="evidently"``.
    :param stattest_threshold: threshold for that stattest; None = the stattest's default.
    :param engine: ``fast`` (default) or ``evidently`` (see above).
    :param report_sample_rows: fast engine: rows per side in the HTML report's random sample; None = all rows.
    :param max_exact_rows: fast engine: largest side held in memory for exact Wasserstein/KS (8 bytes a value).
    :param mlflow_conn_id: MLflow connection (type ``mlflow``).
    :param tracking_uri: explicit MLflow tracking URI; wins over the connection.
    :param experiment_name: MLflow experiment of the monitoring runs, created if missing (templated).
    :param model_name: the monitored model, set as tag ``mlops.model_name`` and naming the retraining asset
        (templated; a templated value needs ``retrain_asset``).
    :param log_to_mlflow: log report, verdict and metrics to MLflow.
    :param fail_on_drift: raise ``MonitoringError`` when the verdict does not pass (default: return it, so a
        downstream task decides and the retraining trigger can fire).
    :param emit_retrain_event: emit the retraining asset event on dataset drift.
    :param retrain_asset: asset URI of the trigger; default ``mlops://monitoring/<model_name>``.
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
        engine: str = "fast",
        report_sample_rows: int | None = 50_000,
        max_exact_rows: int = 2_000_000,
        mlflow_conn_id: str = "mlflow_default",
        tracking_uri: str | None = None,
        experiment_name: str = "mlops-monitoring",
        model_name: str | None = None,
        log_to_mlflow: bool = True,
        fail_on_drift: bool = False,
        emit_retrain_event: bool = True,
        retrain_asset: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0 < drift_share_threshold <= 1:
            raise ValueError(f"drift_share_threshold must be in (0, 1], got {drift_share_threshold}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "fast" and stattest is not None:
            from mlops_airflow.monitoring.drift_engine import STATTESTS

            if stattest not in STATTESTS:
                raise ValueError(
                    f"stattest {stattest!r} is not implemented by the fast drift engine (it has {sorted(STATTESTS)}); "
                    "pass engine='evidently' to use it"
                )
        if report_sample_rows is not None and report_sample_rows < 1:
            raise ValueError(f"report_sample_rows must be >= 1 or None, got {report_sample_rows}")
        emit = _retrain_outlet(kwargs, model_name, emit_retrain_event, retrain_asset)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.emit_retrain_event = emit
        self.retrain_asset = retrain_asset
        self.reference_path = reference_path
        self.current_path = current_path
        self.report_dir = report_dir
        self.columns = list(columns) if columns is not None else None
        self.exclude_columns = list(exclude_columns)
        self.label_column = label_column
        self.drift_share_threshold = drift_share_threshold
        self.stattest = stattest
        self.stattest_threshold = stattest_threshold
        self.engine = engine
        self.report_sample_rows = report_sample_rows
        self.max_exact_rows = max_exact_rows
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.log_to_mlflow = log_to_mlflow
        self.fail_on_drift = fail_on_drift

    # -- execute -------------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        ident = self._identity(context)
        report_path = self._report_path(str(self.report_dir), ident, REPORT_FILE)
        run = self._execute_fast if self.engine == "fast" else self._execute_evidently
        verdict = run(report_path)
        verdict["engine"] = self.engine
        verdict["evidence_uri"] = report_path.as_uri()
        verdict["report_path"] = str(report_path)
        verdict["mlflow_run_id"] = None
        verdict_path = report_path.with_name(VERDICT_FILE)
        verdict["verdict_uri"] = verdict_path.as_uri()

        dataset_drift = any(r.startswith("dataset drift:") for r in verdict["reasons"])
        verdict["retrain_event"] = None
        if dataset_drift and self.emit_retrain_event:
            from mlops_airflow.monitoring.retrain import retrain_event_extra

            reason = next(r for r in verdict["reasons"] if r.startswith("dataset drift:"))
            verdict["retrain_event"] = retrain_event_extra(
                kind=RUN_KIND,
                reason=reason,
                verdict_uri=verdict["verdict_uri"],
                drifted_columns=verdict["drifted_columns"],
                drift_share=verdict["drift_share"],
                model_name=self.model_name,
                source=f"{ident['dag_id']}/{ident['run_id']}/{ident['task_id']}",
            )

        if self.log_to_mlflow:
            metrics = {
                "drift_share": float(verdict["drift_share"]),
                "drifted_columns": float(len(verdict["drifted_columns"])),
            }
            for col, info in verdict["metrics"]["per_column"].items():
                if info["score"] is not None:
                    metrics["drift_score." + _UNSAFE_METRIC_KEY.sub("_", col)] = float(info["score"])
            self._log_run(
                kind=RUN_KIND,
                run_name=f"data-drift {ident['dag_id']} {ident['run_id']}",
                ident=ident,
                verdict=verdict,
                report_path=report_path,
                verdict_path=verdict_path,
                artifact_dir=ARTIFACT_DIR,
                metrics=metrics,
                tags={
                    "mlops.drift_share_threshold": str(self.drift_share_threshold),
                    "mlops.stattest": str(self.stattest or "auto"),
                    "mlops.drift_engine": self.engine,
                },
            )
        else:
            verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True, default=str))

        if verdict["retrain_event"] is not None:
            self._emit_retrain(context, verdict["retrain_event"])
        elif dataset_drift and not self.emit_retrain_event:
            self.log.info("dataset drift, but emit_retrain_event is off (or no model_name): no retraining trigger")

        summary = (
            f"data-drift passed={verdict['passed']} drift_share={verdict['drift_share']:.2f} "
            f"drifted={verdict['drifted_columns']} engine={self.engine} "
            f"rows={verdict['metrics']['reference_rows']}/{verdict['metrics']['current_rows']} "
            f"retrain_event={'yes' if verdict['retrain_event'] else 'no'} report={verdict['evidence_uri']}"
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

    # -- engine: fast --------------------------------------------------------------------------------------------

    def _execute_fast(self, report_path: Path) -> dict[str, Any]:
        from mlops_airflow.monitoring.drift_engine import DriftEngineError, detect_drift

        reference_path, current_path = str(self.reference_path), str(self.current_path)
        reference = _source(reference_path, "reference", "re-run the training-set step or point reference_path at it")
        current = _source(
            current_path, "current", "check that the upstream step landed this interval's batch at current_path"
        )
        columns = self._select_columns(reference.schema, current.schema, reference_path, current_path)
        self._check_rows(reference.rows, current.rows, reference_path, current_path)
        self.log.info(
            "drift inputs (fast engine): reference %s (%d rows), current %s (%d rows), columns %s",
            reference_path,
            reference.rows,
            current_path,
            current.rows,
            columns,
        )
        try:
            result = detect_drift(
                reference,
                current,
                columns,
                stattest=self.stattest,
                threshold=self.stattest_threshold,
                max_exact_rows=self.max_exact_rows,
            )
        except DriftEngineError as err:
            raise MonitoringError(
                f"drift check on columns {columns} failed: {err}. Reference {reference_path!r}, current "
                f"{current_path!r}; fix the producing step's schema or the operator's columns/stattest"
            ) from err

        reasons: list[str] = []
        excluded: list[str] = []
        for col, res in result.columns.items():
            if res.empty_side is None:
                continue
            for role, rows in (("reference", reference.rows), ("current window", current.rows)):
                if role.split()[0] in res.empty_side:
                    reasons.append(
                        f"feature {col!r} is entirely null in the {role} ({rows} rows): excluded from the "
                        "drift run; fix the upstream feature pipeline or drop it from columns"
                    )
            excluded.append(col)
        per_column = {col: res.as_verdict_entry() for col, res in result.columns.items() if col not in excluded}
        uncertain = result.uncertain_columns
        for col in uncertain:
            res = result.columns[col]
            self.log.warning(
                "%s: %s score bounded in [%.6g, %.6g], threshold %.6g inside it after %d passes; decided on the "
                "midpoint. Raise max_exact_rows to compute it exactly",
                col,
                res.method,
                res.score_low,
                res.score_high,
                res.threshold,
                res.passes,
            )

        if per_column:
            verdict = verdict_from_columns(per_column, self.drift_share_threshold)
        else:
            verdict = drift_verdict({}, [], 0, 0, 0.0, self.drift_share_threshold)
            reasons.append("no feature left to compare: the drift check could not run")
        verdict["reasons"] = reasons + verdict["reasons"]
        verdict["passed"] = bool(verdict["passed"] and not reasons)
        compared = list(per_column)
        sample_rows = self._sampled_report(report_path, reference, current, compared, verdict, reasons)
        verdict["metrics"].update(
            {
                "reference_rows": reference.rows,
                "current_rows": current.rows,
                "excluded_columns": excluded,
                "drift_share_threshold": self.drift_share_threshold,
                "engine_seconds": round(result.seconds, 3),
                "approximate_columns": result.approximate_columns,
                "uncertain_columns": uncertain,
                "report_sample_rows": sample_rows,
            }
        )
        return verdict

    def _sampled_report(
        self,
        report_path: Path,
        reference: Any,
        current: Any,
        columns: list[str],
        verdict: dict[str, Any],
        reasons: list[str],
    ) -> dict[str, int]:
        """Evidently's HTML report on a random sample (seed 0 reference, seed 1 current); never fails the check."""
        from mlops_airflow.monitoring.drift_engine import sample_rows

        if not columns:
            _placeholder_report(report_path, "Data drift: not run", reasons)
            return {"reference": 0, "current": 0}
        limit = self.report_sample_rows or max(reference.rows, current.rows)
        try:
            ref_df = sample_rows(reference, columns, limit, seed=0).to_pandas()
            cur_df = sample_rows(current, columns, limit, seed=1).to_pandas()
            snapshot = self._run_evidently(ref_df, cur_df)
            snapshot.save_html(str(report_path))
        except Exception as err:  # noqa: BLE001 - the verdict stands without the picture
            self.log.warning("the sampled Evidently report failed (%s); writing a placeholder report", err)
            _placeholder_report(
                report_path,
                "Data drift: report not rendered",
                [f"Evidently could not render the sampled report: {err}", *verdict["reasons"]],
            )
            return {"reference": 0, "current": 0}
        sampled = {"reference": len(ref_df), "current": len(cur_df)}
        whole = sampled["reference"] == reference.rows and sampled["current"] == current.rows
        _with_banner(
            report_path,
            [
                f"Verdict (fast drift engine, all rows: reference {reference.rows:,}, current {current.rows:,}): "
                f"passed={verdict['passed']}, drift share {verdict['drift_share']:.2f}, drifted "
                f"{verdict['drifted_columns'] or 'none'}.",
                "The report below is Evidently's DataDriftPreset on "
                + (
                    "the same rows."
                    if whole
                    else f"a uniform random sample of {sampled['reference']:,} reference and {sampled['current']:,} "
                    "current rows (seed 0/1): its scores describe the sample and may differ slightly from the "
                    "verdict's, which are in drift_verdict.json."
                ),
            ],
        )
        return sampled

    # -- engine: evidently ---------------------------------------------------------------------------------------

    def _execute_evidently(self, report_path: Path) -> dict[str, Any]:
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
        if compared:
            snapshot = self._run_evidently(reference[compared], current[compared])
            snapshot.save_html(str(report_path))
            verdict = drift_verdict_from_snapshot(snapshot.dict(), self.drift_share_threshold)
        else:
            _placeholder_report(report_path, "Data drift: not run", reasons)
            verdict = drift_verdict({}, [], 0, 0, 0.0, self.drift_share_threshold)
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
        return verdict

    # -- inputs --------------------------------------------------------------------------------------------------

    def _select_columns(self, ref_schema: Any, cur_schema: Any, reference_path: str, current_path: str) -> list[str]:
        """The compared columns (explicit, or every numeric column on both sides), or a ``MonitoringError``."""
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
            return columns
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
        return columns

    @staticmethod
    def _check_rows(reference_rows: int, current_rows: int, reference_path: str, current_path: str) -> None:
        if current_rows == 0:
            raise MonitoringError(
                f"current window {current_path!r} has no rows: nothing to compare; check that the upstream "
                "step landed data for this interval (an empty window is never a pass)"
            )
        if reference_rows == 0:
            raise MonitoringError(
                f"reference dataset {reference_path!r} has no rows; re-run the training-set step or point "
                "reference_path at a non-empty training set"
            )

    def _load(self, reference_path: str, current_path: str) -> tuple[Any, Any, list[str]]:
        """Both frames (only the compared columns) and the list of compared columns, or a ``MonitoringError``."""
        reference_ds = _open_parquet(
            reference_path, "reference", "re-run the training-set step or point reference_path at it"
        )
        current_ds = _open_parquet(
            current_path, "current", "check that the upstream step landed this interval's batch at current_path"
        )
        columns = self._select_columns(reference_ds.schema, current_ds.schema, reference_path, current_path)
        try:
            current = current_ds.to_table(columns=columns).to_pandas()
            reference = reference_ds.to_table(columns=columns).to_pandas()
        except Exception as err:
            raise MonitoringError(
                f"cannot read columns {columns} from the Parquet inputs (reference {reference_path!r}, current "
                f"{current_path!r}): {err}; check that both files are readable Parquet with these columns, or fix "
                "the operator's columns"
            ) from err
        self._check_rows(len(reference), len(current), reference_path, current_path)
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
