"""Which columns ``DataDriftOperator`` compares, its per-column options for the engine, and the row checks
(every column on both sides by default; the one-sided ones named)."""

from __future__ import annotations

from typing import Any

from mlops_airflow.exceptions import MonitoringError


class _DriftInputsMixin:
    """Column selection and engine options of ``DataDriftOperator`` (see its docs)."""

    columns: list[str] | None
    exclude_columns: list[str]
    prediction_columns: list[str]
    label_column: str | None
    cat_stattest: str | None
    num_stattest: str | None
    per_column_stattest: dict[str, str]
    cat_threshold: float | None
    num_threshold: float | None
    per_column_threshold: dict[str, float]
    column_types: dict[str, str]

    def _select_columns(
        self, ref_schema: Any, cur_schema: Any, reference_path: str, current_path: str
    ) -> tuple[list[str], dict[str, str]]:
        """The compared columns (explicit, or every column on both sides but the excluded ones) and the columns
        left out because only one side has them (with the reason), or a ``MonitoringError``."""
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
            return columns, {}
        skip = set(self.exclude_columns) | set(self.prediction_columns)
        skip |= {self.label_column} if self.label_column else set()
        columns = [name for name in cur_schema.names if name not in skip and name in ref_schema.names]
        one_side = {
            name: f"only in the {role} data: nothing to compare it with"
            for role, schema, other in (("reference", ref_schema, cur_schema), ("current", cur_schema, ref_schema))
            for name in schema.names
            if name not in skip and name not in other.names
        }
        if not columns:
            raise MonitoringError(
                f"no column is common to the reference {reference_path!r} ({ref_schema.names}) and the current "
                f"window {current_path!r} ({cur_schema.names}) after excluding {sorted(skip)}; pass columns "
                "explicitly"
            )
        return columns, one_side

    def _overrides(self) -> dict[str, Any]:
        """The per-column / per-type stattest and threshold options and the declared types, for the engine."""
        return {
            "cat_stattest": self.cat_stattest,
            "num_stattest": self.num_stattest,
            "per_column_stattest": self.per_column_stattest or None,
            "cat_threshold": self.cat_threshold,
            "num_threshold": self.num_threshold,
            "per_column_threshold": self.per_column_threshold or None,
            "column_types": self.column_types or None,
        }

    @staticmethod
    def _check_rows(reference_rows: int, current_rows: int, reference_path: str, current_path: str) -> None:
        """An empty side is never a pass: a ``MonitoringError`` naming it (the current window first)."""
        counts = {"current_rows": current_rows, "reference_rows": reference_rows}
        empty = (
            (current_rows, "current_path", current_path, "empty current window",
             f"current window {current_path!r} has no rows: nothing to compare; ", " (an empty window is never a pass)",
             "check that the upstream step landed data for this interval"),
            (reference_rows, "reference_path", reference_path, "empty reference",
             f"reference dataset {reference_path!r} has no rows; ", "",
             "re-run the training-set step or point reference_path at a non-empty training set"),
        )
        for rows, key, path, cause, head, tail, next_step in empty:
            if rows == 0:
                raise MonitoringError(f"{head}{next_step}{tail}", cause=cause, counts=counts, next_step=next_step,
                                      **{key: path})
