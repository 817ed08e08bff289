"""The Evidently side of ``DataDriftOperator``: ``engine="evidently"`` (``DataDriftPreset`` on every row) and
``report="evidently"`` (its HTML report on a random sample beside the fast engine's verdict).

Evidently and pandas are imported inside these methods only: the default path (fast engine, engine-drawn
report) never imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.verdict import SnapshotError, drift_verdict
from mlops_airflow.monitoring.verdict import drift_verdict_from_snapshot as _verdict_from_snapshot
from mlops_airflow.operators._monitoring import _open_parquet, _placeholder_report, _source, _with_banner


def drift_verdict_from_snapshot(snapshot_dict: dict[str, Any], drift_share_threshold: float) -> dict[str, Any]:
    """``monitoring.verdict.drift_verdict_from_snapshot`` that raises ``MonitoringError`` (a task failure with the
    cause and the next step) on a snapshot without drift results."""
    try:
        return _verdict_from_snapshot(snapshot_dict, drift_share_threshold)
    except SnapshotError as err:
        raise MonitoringError(str(err)) from err


class _EvidentlyDriftMixin:
    """Evidently's drift report and engine for ``DataDriftOperator`` (see its docs)."""

    reference_path: str
    current_path: str
    column_types: dict[str, str]
    drift_share_threshold: float
    stattest: str | None
    stattest_threshold: float | None
    cat_stattest: str | None
    num_stattest: str | None
    cat_threshold: float | None
    num_threshold: float | None
    per_column_stattest: dict[str, str]
    per_column_threshold: dict[str, float]
    report_sample_rows: int | None
    _types: dict[str, str]
    log: Any

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
            snapshot = self._run_evidently(ref_df, cur_df, self._types)
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
        reference, current, columns, types, unchecked = self._load(str(self.reference_path), str(self.current_path))
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
            snapshot = self._run_evidently(reference[compared], current[compared], types)
            snapshot.save_html(str(report_path))
            verdict = drift_verdict_from_snapshot(snapshot.dict(), self.drift_share_threshold)
        else:
            _placeholder_report(report_path, "Data drift: not run", reasons)
            verdict = drift_verdict({}, [], 0, 0, 0.0, self.drift_share_threshold)
            reasons.append("no feature left to compare: the drift check could not run")
        verdict["reasons"] = reasons + verdict["reasons"]
        verdict["passed"] = bool(verdict["passed"] and not reasons)
        verdict["unchecked_columns"] = unchecked
        verdict["metrics"].update(
            {
                "unchecked_columns": unchecked,
                "column_types": types,
                "reference_rows": len(reference),
                "current_rows": len(current),
                "excluded_columns": excluded,
                "drift_share_threshold": self.drift_share_threshold,
            }
        )
        return verdict

    def _load(
        self, reference_path: str, current_path: str
    ) -> tuple[Any, Any, list[str], dict[str, str], dict[str, str]]:
        """Both frames (the compared columns only), the compared columns, their Evidently types and the columns
        Evidently does not check (with the reason), or a ``MonitoringError``."""
        from mlops_airflow.monitoring.drift_engine import DriftEngineError, type_columns

        reference_ds = _open_parquet(
            reference_path, "reference", "re-run the training-set step or point reference_path at it"
        )
        current_ds = _open_parquet(
            current_path, "current", "check that the upstream step landed this interval's batch at current_path"
        )
        columns, unchecked = self._select_columns(reference_ds.schema, current_ds.schema, reference_path, current_path)
        try:
            typed = type_columns(
                _source(reference_path, "reference", "re-run the training-set step"),
                _source(current_path, "current", "check the upstream step"),
                columns,
                self.column_types or None,
            )
        except DriftEngineError as err:
            raise MonitoringError(f"drift columns {columns}: {err}; fix the producing step's schema") from err
        types = {col: t.kind for col, t in typed.items()}
        for col, t in typed.items():  # Evidently checks free text itself; datetimes and unknown types it skips
            if t.kind in ("datetime", "unknown"):
                unchecked[col] = str(t.reason)
        columns = [c for c in columns if c not in unchecked]
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
        return reference, current, columns, types, unchecked

    def _run_evidently(self, reference: Any, current: Any, types: dict[str, str]) -> Any:
        """Evidently's ``DataDriftPreset`` with the column types stated (the ones Evidently itself infers, or the
        declared ones) and the same per-column / per-type options as the fast engine."""
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        def of(kind: str) -> list[str]:
            return [c for c in reference.columns if types.get(c) == kind]

        definition = DataDefinition(
            numerical_columns=of("numerical"), categorical_columns=of("categorical"), text_columns=of("text")
        )
        preset = DataDriftPreset(
            columns=list(reference.columns),
            drift_share=self.drift_share_threshold,
            method=self.stattest,
            threshold=self.stattest_threshold,
            cat_method=self.cat_stattest,
            num_method=self.num_stattest,
            per_column_method=self.per_column_stattest or None,
            cat_threshold=self.cat_threshold,
            num_threshold=self.num_threshold,
            per_column_threshold=self.per_column_threshold or None,
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
