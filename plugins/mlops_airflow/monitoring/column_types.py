"""Column typing for drift, exactly as Evidently 0.7 infers it, from Arrow types and a few counts.

Evidently's ``Dataset.from_pandas`` without a data definition types each column of the **current** data with
``evidently.core.datasets.infer_column_type`` (0.7.23) on the pandas column that ``pyarrow.Table.to_pandas()``
gives; ``DataDriftPreset`` then checks the numerical, categorical and text columns and skips the rest. In Arrow
terms (what a Parquet column becomes in pandas decides it):

==========================================  ==================  ==============================================
Arrow type                                  pandas dtype        Evidently type
==========================================  ==================  ==============================================
floating                                    float64             numerical
integer, no nulls                           int64               categorical if <= 10 distinct values, else
                                                                numerical
integer with nulls                          float64             numerical
bool, no nulls                              bool                categorical
bool with nulls                             object (bool)       unknown (skipped by Evidently)
string / large_string                       object (str)        text if distinct > half the non-null values,
                                                                else categorical
dictionary                                  category            categorical
timestamp                                   datetime64          datetime (never a drift feature)
date, time, decimal, binary, list, struct   object              unknown (skipped by Evidently)
==========================================  ==================  ==============================================

Where Evidently skips a column silently (unknown) or checks it with a method this pack does not implement (text:
a domain classifier), ``classify`` says so with a reason, so the verdict names the column instead of dropping it.
A boolean with nulls is the one deliberate difference: it is checked as categorical (nulls dropped, as Evidently
drops them for every type) rather than skipped.

No Airflow, numpy or pandas import: the counts come from the caller (the drift engine reads them from Arrow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_airflow.monitoring.drift_sources import DriftEngineError, _as_source

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
TEXT = "text"
DATETIME = "datetime"
UNKNOWN = "unknown"

#: ``evidently.core.datasets.INTEGER_CARDINALITY_LIMIT`` (0.7.23): an integer column with at most this many
#: distinct values is categorical.
INTEGER_CARDINALITY_LIMIT = 10
#: a string column whose distinct values exceed this share of its non-null values is text.
TEXT_DISTINCT_SHARE = 0.5


@dataclass(frozen=True)
class ColumnType:
    """The type a column gets, whether the fast engine checks it, and why not when it does not."""

    name: str
    kind: str  # numerical | categorical | text | datetime | unknown
    checked: bool
    reason: str | None = None  # set when not checked, or when the typing differs from Evidently's
    source: str = "evidently"  # evidently | override


def needs_distinct(arrow_type: Any) -> bool:
    """Whether ``classify`` needs the current side's distinct count for this type (integers and strings)."""
    import pyarrow as pa

    return bool(
        pa.types.is_integer(arrow_type) or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    )


def classify(
    name: str,
    arrow_type: Any,
    *,
    null_count: int,
    count: int,
    distinct: int | None,
    override: str | None = None,
) -> ColumnType:
    """Evidently 0.7's type of one column of the current data.

    :param arrow_type: the column's Arrow type (``pyarrow.DataType``).
    :param null_count: nulls in the current data's column.
    :param count: non-null values in it.
    :param distinct: distinct non-null values (integers: may stop counting above ``INTEGER_CARDINALITY_LIMIT``;
        strings: exact); None where ``needs_distinct`` is False.
    :param override: ``numerical`` or ``categorical`` to force the type (Evidently's ``DataDefinition``).
    """
    import pyarrow as pa

    t = arrow_type
    if override is not None:
        if override not in (NUMERICAL, CATEGORICAL):
            raise ValueError(f"column {name!r}: type override must be numerical or categorical, got {override!r}")
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t)
        if override == NUMERICAL and not numeric:
            raise ValueError(f"column {name!r} is {t}: it cannot be numerical; declare it categorical")
        return ColumnType(name, override, True, source="override")
    if pa.types.is_dictionary(t):
        return ColumnType(name, CATEGORICAL, True)
    if pa.types.is_floating(t):
        return ColumnType(name, NUMERICAL, True)
    if pa.types.is_integer(t):
        if null_count:  # pandas reads an integer column with nulls as float64
            return ColumnType(name, NUMERICAL, True)
        if distinct is None:
            raise ValueError(f"column {name!r}: the distinct count of an integer column is needed to type it")
        return ColumnType(name, CATEGORICAL if distinct <= INTEGER_CARDINALITY_LIMIT else NUMERICAL, True)
    if pa.types.is_boolean(t):
        if null_count:
            return ColumnType(
                name,
                CATEGORICAL,
                True,
                reason="boolean with nulls: checked as categorical (Evidently 0.7 types it unknown and skips it)",
            )
        return ColumnType(name, CATEGORICAL, True)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if count == 0:  # entirely null: checked, so the engine reports the empty side (a failed verdict)
            return ColumnType(name, CATEGORICAL, True)
        if distinct is None:
            raise ValueError(f"column {name!r}: the distinct count of a string column is needed to type it")
        if distinct > count * TEXT_DISTINCT_SHARE:
            return ColumnType(
                name,
                TEXT,
                False,
                reason=(
                    f"free text ({distinct:,} distinct of {count:,} values, more than half): Evidently checks it "
                    "with a text-content classifier that the fast engine does not implement; use engine='evidently' "
                    "for it, declare it categorical, or list it in exclude_columns if it is an identifier"
                ),
            )
        return ColumnType(name, CATEGORICAL, True)
    if pa.types.is_timestamp(t):
        return ColumnType(name, DATETIME, False, reason="datetime: a time column is not a drift feature (Evidently)")
    return ColumnType(
        name,
        UNKNOWN,
        False,
        reason=f"type {t} cannot be checked for drift (Evidently 0.7 types it unknown); cast it upstream or exclude it",
    )


def current_counts(source: Any, column: str, arrow_type: Any, batch_size: int = 1 << 18) -> tuple[int, int, int | None]:
    """``(null_count, count, distinct)`` of one column of a drift-engine source (one pass, one batch in memory).

    Integers stop counting distinct values once there are more than ``INTEGER_CARDINALITY_LIMIT`` (the type is
    numerical then, nulls or not); strings count exactly (a set of the distinct values, as pandas' ``nunique``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    integer = pa.types.is_integer(arrow_type)
    want_distinct = needs_distinct(arrow_type)
    nulls = count = 0
    seen: set[Any] = set()
    for arr in source.iter_column(column, batch_size):
        nulls += arr.null_count
        count += len(arr) - arr.null_count
        if want_distinct:
            seen.update(pc.unique(arr.drop_null()).to_pylist())
            if integer and len(seen) > INTEGER_CARDINALITY_LIMIT:
                return nulls, count, len(seen)  # numerical whatever the rest holds
    return nulls, count, (len(seen) if want_distinct else None)


def type_columns(
    reference: Any,
    current: Any,
    columns: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    batch_size: int = 1 << 18,
) -> dict[str, Any]:
    """Each column's ``column_types.ColumnType`` (Evidently 0.7's inference on the current data, or the declared
    type), after checking that every column exists on both sides with compatible types.

    :param columns: None = every column present on both sides.
    :param column_types: ``{column: "numerical" | "categorical"}`` declared types (Evidently's ``DataDefinition``).
    :raises DriftEngineError: a column missing from a side, a declared type that does not fit, a column numeric on
        one side and not on the other.
    """
    import pyarrow as pa

    ref_src, cur_src = _as_source(reference), _as_source(current)
    if columns is None:
        columns = [name for name in cur_src.schema.names if name in ref_src.schema.names]
    declared = dict(column_types or {})
    unknown = sorted(set(declared) - set(columns))
    if unknown:
        raise DriftEngineError(f"column_types names columns that are not compared: {unknown}")

    def numeric(t: Any) -> bool:
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))

    out: dict[str, Any] = {}
    for col in dict.fromkeys(columns):
        missing = [role for role, src in (("reference", ref_src), ("current", cur_src)) if col not in src.schema.names]
        if missing:
            raise DriftEngineError(f"column {col!r} is missing from the {' and '.join(missing)} data")
        ref_type, cur_type = ref_src.schema.field(col).type, cur_src.schema.field(col).type
        if numeric(ref_type) != numeric(cur_type) and not pa.types.is_null(ref_type) and not pa.types.is_null(cur_type):
            raise DriftEngineError(
                f"column {col!r} is {ref_type} in the reference but {cur_type} in the current data; fix the "
                "producing step's schema"
            )
        nulls, count, distinct = (0, 0, None)
        if declared.get(col) is None and (needs_distinct(cur_type) or pa.types.is_boolean(cur_type)):
            nulls, count, distinct = current_counts(cur_src, col, cur_type, batch_size)
        try:
            out[col] = classify(
                col, cur_type, null_count=nulls, count=count, distinct=distinct, override=declared.get(col)
            )
        except ValueError as err:
            raise DriftEngineError(str(err)) from err
    return out
