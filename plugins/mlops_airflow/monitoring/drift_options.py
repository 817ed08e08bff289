"""The stattest options of a drift check, as Evidently 0.7's ``DataDriftPreset`` takes them: one stattest and
threshold for all columns, per type (``cat_``/``num_``) and per column; their checks and their resolution per
column. One implementation for ``drift_engine.detect_drift`` and the partitioned ``partition_plan.plan``.

No Airflow import.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mlops_airflow.monitoring.drift_sources import CATEGORICAL, DriftEngineError

#: The option names (``detect_drift``'s keyword arguments, ``plan``'s ``**options``).
STATTEST_OPTIONS = (
    "stattest",
    "threshold",
    "cat_stattest",
    "num_stattest",
    "per_column_stattest",
    "cat_threshold",
    "num_threshold",
    "per_column_threshold",
)


def check_stattest_options(options: Mapping[str, Any], columns: Collection[str] | None = None) -> None:
    """Refuse unknown option names (``TypeError``), stattests the fast engine does not implement and, with
    ``columns``, per-column options naming a column that is not compared (``DriftEngineError``)."""
    from mlops_airflow.monitoring.drift_stats import STATTESTS

    unknown_names = sorted(set(options) - set(STATTEST_OPTIONS))
    if unknown_names:
        raise TypeError(f"unknown stattest options {unknown_names}; known: {list(STATTEST_OPTIONS)}")
    per_column = options.get("per_column_stattest") or {}
    named = {options.get("stattest"), options.get("cat_stattest"), options.get("num_stattest"), *per_column.values()}
    unsupported = sorted(str(m) for m in named - {None} if m not in STATTESTS)
    if unsupported:
        raise DriftEngineError(
            f"stattest {', '.join(map(repr, unsupported))} is not implemented by the fast drift engine (it has "
            f"{sorted(STATTESTS)}); use engine='evidently' for it"
        )
    if columns is not None:
        thresholds = options.get("per_column_threshold") or {}
        unknown = sorted(set(per_column) - set(columns)) + sorted(set(thresholds) - set(columns))
        if unknown:
            raise DriftEngineError(f"per-column stattest/threshold names columns that are not compared: {unknown}")


def resolve_stattest(
    column: str,
    kind: str,
    *,
    stattest: str | None = None,
    cat_stattest: str | None = None,
    num_stattest: str | None = None,
    per_column_stattest: Mapping[str, str] | None = None,
    threshold: float | None = None,
    cat_threshold: float | None = None,
    num_threshold: float | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
) -> tuple[str | None, float | None]:
    """``(stattest, threshold)`` of one column as Evidently 0.7's ``DataDriftPreset`` resolves its options
    (``evidently.legacy.utils.data_drift_utils``): the stattest per column, else per type, else for all; the
    threshold per column, else per type, else for all. None = the automatic choice / the stattest's default."""
    method = stattest
    type_method = cat_stattest if kind == CATEGORICAL else num_stattest
    method = method if type_method is None else type_method
    if per_column_stattest:
        method = per_column_stattest.get(column, method)
    if per_column_threshold and column in per_column_threshold:
        return method, per_column_threshold[column]
    type_threshold = cat_threshold if kind == CATEGORICAL else num_threshold
    if type_threshold is not None:
        return method, type_threshold
    return method, threshold
