"""Chunk-by-chunk counts for the contract checks: nulls, infinities, timestamps out of bounds, label values.

:class:`Scan` takes pyarrow record batches one at a time (a Parquet row group, a slice of a table) and keeps only
counts, bounds and a few examples per column, so its memory does not grow with the batch. Row numbers in the
examples are 0-based positions in the whole batch (files of a directory in sorted order). pyarrow and numpy are
imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from mlops_airflow.validation.spec import ContractSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# Distinct label values kept: enough to name a domain failure and to tell "constant" from "varies".
MAX_DISTINCT = 50


@dataclass
class ColumnScan:
    """Counts of one column over the chunks that had it."""

    types: list[str] = field(default_factory=list)
    present_rows: int = 0
    nulls: int = 0  # null, or NaN in a float column
    null_rows: list[int] = field(default_factory=list)
    infs: int = 0
    inf_examples: list[str] = field(default_factory=list)


@dataclass
class TimeScan:
    """The timestamp column: values after ``now + clock_skew`` and outside the interval (+ lateness)."""

    future: int = 0
    future_examples: list[str] = field(default_factory=list)
    early: int = 0
    late: int = 0
    outside_examples: list[str] = field(default_factory=list)
    minimum: str | None = None
    maximum: str | None = None


@dataclass
class LabelScan:
    """The label column: values outside the task type's domain, distinct values, range of finite values."""

    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    distinct: list[Any] = field(default_factory=list)
    many_distinct: bool = False
    minimum: float | None = None
    maximum: float | None = None


def show(value: Any) -> str:
    """A value as an example: ``null``, ``NaN``, ``inf``, ``'text'``, ``3``, an ISO timestamp."""
    if value is None:
        return "null"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _ticks(instant: datetime, unit: str) -> int:
    """``instant`` as an integer in ``unit`` since the epoch (how Arrow stores a timestamp)."""
    micros = (instant - EPOCH) // _MICRO
    per = _PER_SECOND[unit]
    return micros * per // 1_000_000 if per >= 1_000_000 else micros // (1_000_000 // per)


class Scan:
    """Accumulates, chunk by chunk, what :func:`mlops_airflow.validation.contract.run_contract` judges."""

    def __init__(self, spec: ContractSpec, now: datetime, max_examples: int) -> None:
        self.spec = spec
        self.now = now
        self.k = max_examples
        self.rows = 0
        self.columns: dict[str, ColumnScan] = {}
        self.time = TimeScan()
        self.label = LabelScan()

    # ------------------------------------------------------------------ feeding

    def add_table(self, table: pa.Table, chunk_rows: int = 65_536) -> None:
        """Feed a whole table in slices of ``chunk_rows`` rows."""
        for batch in table.to_batches(max_chunksize=chunk_rows):
            self.add(batch)

    def add(self, batch: pa.RecordBatch) -> None:
        """Feed one chunk; the row numbers of its examples continue from the chunks before."""
        import pyarrow as pa
        import pyarrow.compute as pc

        n = batch.num_rows
        for name, arr in zip(batch.schema.names, batch.columns, strict=True):
            col = self.columns.setdefault(name, ColumnScan())
            type_name = str(arr.type)
            if type_name not in col.types:
                col.types.append(type_name)
            col.present_rows += n
            nullmask = pc.is_null(arr, nan_is_null=True)
            nulls = int(pc.sum(nullmask).as_py() or 0)
            if nulls:
                col.nulls += nulls
                col.null_rows += self._rows(nullmask, self.k - len(col.null_rows))
            if pa.types.is_floating(arr.type):
                infmask = pc.fill_null(pc.is_inf(arr), False)
                infs = int(pc.sum(infmask).as_py() or 0)
                if infs:
                    col.infs += infs
                    col.inf_examples += self._examples(arr, infmask, self.k - len(col.inf_examples))
        names = set(batch.schema.names)
        if self.spec.timestamp_column in names:
            self._add_time(batch.column(self.spec.timestamp_column))
        if self.spec.label_column in names:
            self._add_label(batch.column(self.spec.label_column))
        self.rows += n

    # ------------------------------------------------------------------ helpers

    def _rows(self, mask: pa.Array, limit: int) -> list[int]:
        if limit <= 0:
            return []
        import numpy as np

        hits = np.flatnonzero(mask.to_numpy(zero_copy_only=False))[:limit]
        return [int(i) + self.rows for i in hits]

    def _examples(self, arr: pa.Array, mask: pa.Array, limit: int) -> list[str]:
        """``row N: value`` for the first ``limit`` rows where ``mask`` is true."""
        rows = self._rows(mask, limit)
        if not rows:
            return []
        import pyarrow as pa

        values = arr.take(pa.array([r - self.rows for r in rows])).to_pylist()
        return [f"row {r}: {show(v)}" for r, v in zip(rows, values, strict=True)]

    def _add_time(self, arr: pa.Array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_timestamp(arr.type) or arr.type.tz is None or arr.null_count == len(arr):
            return  # judged from the column's types and nulls
        spec, unit = self.spec, arr.type.unit
        ticks = pc.cast(arr, pa.int64())
        bounds = pc.min_max(arr).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is not None:
            self.time.minimum = min(self.time.minimum or show(low), show(low))
            self.time.maximum = max(self.time.maximum or show(high), show(high))

        def over(instant: datetime) -> pa.Array:
            return pc.fill_null(pc.greater(ticks, pa.scalar(_ticks(instant, unit), pa.int64())), False)

        future = over(self.now + spec.clock_skew)
        count = int(pc.sum(future).as_py() or 0)
        if count:
            self.time.future += count
            self.time.future_examples += self._examples(arr, future, self.k - len(self.time.future_examples))
        masks = []
        if spec.interval_start is not None:
            early = pc.fill_null(pc.less(ticks, pa.scalar(_ticks(spec.interval_start, unit), pa.int64())), False)
            self.time.early += int(pc.sum(early).as_py() or 0)
            masks.append(early)
        if spec.interval_end is not None:
            late = over(spec.interval_end + spec.allowed_lateness)
            self.time.late += int(pc.sum(late).as_py() or 0)
            masks.append(late)
        if masks:
            outside = masks[0] if len(masks) == 1 else pc.or_(masks[0], masks[1])
            self.time.outside_examples += self._examples(arr, outside, self.k - len(self.time.outside_examples))

    def _add_label(self, arr: pa.Array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        from mlops_airflow.task_types import REGRESSION

        numeric = pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
        if self.spec.task_type == REGRESSION:
            if numeric:
                bad = pc.is_null(arr, nan_is_null=True)
                if pa.types.is_floating(arr.type):
                    bad = pc.or_(bad, pc.fill_null(pc.is_inf(arr), False))
                finite = arr.filter(pc.invert(bad))
                if len(finite):
                    bounds = pc.min_max(finite).as_py()
                    low, high = float(bounds["min"]), float(bounds["max"])
                    self.label.minimum = low if self.label.minimum is None else min(self.label.minimum, low)
                    self.label.maximum = high if self.label.maximum is None else max(self.label.maximum, high)
            else:
                bad = pa.array([True] * len(arr))
        elif pa.types.is_boolean(arr.type):
            bad = pc.is_null(arr)
        elif numeric:
            valid = pc.is_in(arr, value_set=pa.array([0, 1]).cast(arr.type))
            bad = pc.invert(pc.fill_null(valid, False))
        else:
            bad = pa.array([True] * len(arr))
        count = int(pc.sum(bad).as_py() or 0)
        if count:
            self.label.bad += count
            self.label.bad_examples += self._examples(arr, bad, self.k - len(self.label.bad_examples))
        if not self.label.many_distinct:
            for value in pc.unique(arr.filter(pc.invert(pc.is_null(arr, nan_is_null=True)))).to_pylist():
                if value not in self.label.distinct:
                    self.label.distinct.append(value)
                if len(self.label.distinct) > MAX_DISTINCT:
                    self.label.many_distinct = True
                    break


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH
