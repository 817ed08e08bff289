"""The fast engine of ``DataDriftOperator`` (``monitoring.drift_engine``) and the verdict, report and metrics built
from an engine result (the single pass here, the partitioned check's reduce in ``drift_partitioned``).

No Evidently, mlflow or pandas import on this path (the task stays light); pyarrow and numpy inside the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.verdict import drift_verdict, verdict_from_columns
from mlops_airflow.operators._monitoring import _source, _staged

REFERENCE_HINT = "re-run the training-set step or point reference_path at it"
CURRENT_HINT = "check that the upstream step landed this interval's batch at current_path"


class _FastDriftMixin:
    """The fast engine and the verdict from its result, for ``DataDriftOperator`` (see its docs)."""

    reference_path: str
    current_path: str
    stattest: str | None
    stattest_threshold: float | None
    max_exact_rows: int
    drift_share_threshold: float
    report: str
    _types: dict[str, str]
    log: Any

    def _execute_fast(self, report_path: Path) -> dict[str, Any]:
        """The fast engine on local copies of the inputs: a local path is read in place, an object-store URI is
        downloaded once into this task's temporary folder (the engine reads each column, sometimes twice)."""
        reference_path, current_path = str(self.reference_path), str(self.current_path)
        with _staged(reference_path, "reference", REFERENCE_HINT) as ref_local, \
                _staged(current_path, "current", CURRENT_HINT) as cur_local:
            reference = _source(ref_local, "reference", REFERENCE_HINT, label=reference_path)
            current = _source(cur_local, "current", CURRENT_HINT, label=current_path)
            return self._run_fast(report_path, reference, current)

    def _run_fast(self, report_path: Path, reference: Any, current: Any) -> dict[str, Any]:
        from mlops_airflow.monitoring.drift_engine import DriftEngineError, detect_drift

        reference_path, current_path = str(self.reference_path), str(self.current_path)
        columns, not_common = self._select_columns(reference.schema, current.schema, reference_path, current_path)
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
                **self._overrides(),
                max_exact_rows=self.max_exact_rows,
            )
        except DriftEngineError as err:
            raise MonitoringError(
                f"drift check on columns {columns} failed: {err}. Reference {reference_path!r}, current "
                f"{current_path!r}; fix the producing step's schema or the operator's columns/stattest"
            ) from err
        return self._verdict_from_result(
            result, not_common, report_path, reference_path, current_path, (reference, current)
        )

    def _verdict_from_result(
        self,
        result: Any,
        not_common: dict[str, str],
        report_path: Path,
        reference_label: str,
        current_label: str,
        sources: tuple[Any, Any] | None = None,
    ) -> dict[str, Any]:
        """The verdict, report and metrics from an engine result (single pass or map-reduce)."""
        import dataclasses

        reasons: list[str] = []
        excluded: list[str] = []
        for col, res in result.columns.items():
            if res.empty_side is None:
                continue
            for role, rows in (("reference", result.reference_rows), ("current window", result.current_rows)):
                if role.split()[0] in res.empty_side:
                    reasons.append(
                        f"feature {col!r} is entirely null in the {role} ({rows} rows): excluded from the "
                        "drift run; fix the upstream feature pipeline or drop it from columns"
                    )
            excluded.append(col)
        per_column = {col: res.as_verdict_entry() for col, res in result.columns.items() if col not in excluded}
        unchecked = {**not_common, **result.unchecked}
        for col, why in unchecked.items():
            self.log.warning("column %r not checked: %s", col, why)
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
        verdict["unchecked_columns"] = unchecked
        verdict["metrics"].update(
            {
                "unchecked_columns": unchecked,
                "column_types": result.types,
                "drift_share_threshold": self.drift_share_threshold,
            }
        )
        sample_rows = {"reference": 0, "current": 0}
        self._types = dict(result.types)
        if self.report == "evidently" and sources is not None:
            sample_rows = self._sampled_report(report_path, sources[0], sources[1], compared, verdict, reasons)
        else:
            from mlops_airflow.monitoring.drift_report import render

            shown = dataclasses.replace(result, columns={}) if self.report == "none" else result
            report_path.write_text(
                render(shown, verdict, reference=reference_label, current=current_label, title="Data drift"),
                encoding="utf-8",
            )
        verdict["metrics"].update(
            {
                "reference_rows": result.reference_rows,
                "current_rows": result.current_rows,
                "excluded_columns": excluded,
                "drift_share_threshold": self.drift_share_threshold,
                "engine_seconds": round(result.seconds, 3),
                "approximate_columns": result.approximate_columns,
                "uncertain_columns": uncertain,
                "report_sample_rows": sample_rows,
            }
        )
        return verdict
