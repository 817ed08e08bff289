"""Map-reduce drift, round 1 and its merge: per-partition column summaries (counts, moments, extremes, distinct
values, a weighted sample) and their exact, order-independent merge per side.

No Airflow import; numpy, scipy and pyarrow are imported inside functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.drift_engine import (
    NUMERICAL,
    DriftEngineError,
)
from mlops_airflow.monitoring.moments import _Moments, merge_moments
from mlops_airflow.monitoring.partition_docs import (
    _PLAN_SAMPLE,
    _PLAN_SAMPLE_MAX,
    _SIDES,
    DISTINCT_LIMIT,
    FORMAT,
    SAMPLE_SIZE,
    _dec,
    _dec_type,
    _enc,
    _enc_type,
    _expect,
    load,
    open_partition,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


# -- round 1: summaries --------------------------------------------------------------------------------------------


def _countable(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    t = arrow_type
    return bool(
        pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
    )


def _numeric(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type))


def _pairs(counts: Mapping[Any, int] | None) -> list[list[Any]] | None:
    if counts is None:
        return None
    return [[k, int(v)] for k, v in counts.items()]


def _unpairs(pairs: Iterable[Sequence[Any]] | None, as_float: bool = False) -> dict[Any, int] | None:
    if pairs is None:
        return None
    out: dict[Any, int] = {}
    for key, value in pairs:
        k = key + 0.0 if as_float else key
        out[k] = out.get(k, 0) + int(value)
    return out


class _Summary(_Moments):
    """One column of one partition: the engine's per-side accumulation (``drift_engine._Side``), mergeable."""

    def __init__(self, arrow_type: pa.DataType, stride: int) -> None:
        import pyarrow as pa

        self.type = arrow_type
        self.numeric = _numeric(arrow_type)
        self.integer = bool(pa.types.is_integer(arrow_type))
        self.countable = _countable(arrow_type)
        self.rows = self.nulls = self.n = 0
        self.mean = self.m2 = 0.0
        self.min, self.max = math.inf, -math.inf
        self.counts: dict[Any, int] | None = {} if (self.numeric or self.countable) else None
        self.sample: list[np.ndarray] = []
        self.stride = stride
        self._seen = 0

    def update(self, arr: pa.Array) -> None:
        import pyarrow as pa

        from mlops_airflow.monitoring.drift_engine import _add_counts, _finite_arrow, _finite_values

        self.rows += len(arr)
        self.nulls += arr.null_count
        if not self.numeric:
            if self.countable:
                if pa.types.is_dictionary(arr.type):
                    arr = arr.dictionary_decode()
                arr = arr.drop_null()
                self.n += len(arr)
                assert self.counts is not None
                _add_counts(self.counts, arr, numeric=False)
            else:
                self.n += len(arr) - arr.null_count
            return
        x = _finite_values(arr)
        if x.size == 0:
            return
        self._add_finite(x)
        if self.counts is not None:
            self._count_capped(_finite_arrow(arr))

    def _count_capped(self, arr: pa.Array) -> None:
        """The engine's ``_Side._update_counts`` with its limit: all counts, or None past 21 distinct values."""
        import pyarrow.compute as pc

        from mlops_airflow.monitoring.drift_engine import _add_counts

        assert self.counts is not None
        if not len(arr):
            return
        if pc.count_distinct(arr.slice(0, 4096)).as_py() > DISTINCT_LIMIT:
            self.counts = None
            return
        distinct = pc.unique(arr)
        if len(distinct) > DISTINCT_LIMIT or len(set(self.counts) | {v + 0.0 for v in distinct.to_pylist()}) > (
            DISTINCT_LIMIT
        ):
            self.counts = None
            return
        _add_counts(self.counts, arr, numeric=not self.integer)  # integers keep their keys (categorical use)

    def to_doc(self) -> dict[str, Any]:
        import numpy as np

        sample = np.concatenate(self.sample) if self.sample else np.empty(0)
        return {
            "type": _enc_type(self.type),
            "type_name": str(self.type),
            "rows": self.rows,
            "nulls": self.nulls,
            "n": self.n,
            "numeric": self.numeric,
            "mean": self.mean if self.numeric and self.n else None,
            "m2": self.m2 if self.numeric and self.n else None,
            "min": self.min if self.numeric and self.n else None,
            "max": self.max if self.numeric and self.n else None,
            "had_null": self.nulls > 0,
            "counts": _pairs(self.counts),
            "sample": _enc(sample) if self.numeric else None,
            "sample_weight": (self.n / sample.size) if sample.size else 0.0,
        }


def summarize(
    source: Any,
    columns: Sequence[str] | None = None,
    side: str = "reference",
    *,
    batch_size: int = 1 << 18,
    sample_size: int = SAMPLE_SIZE,
) -> dict[str, Any]:
    """Round 1 map: the summary of ``columns`` of one partition of one side (a JSON-serialisable document).

    :param source: a partition spec (see ``open_partition``).
    :param columns: columns to summarise; None = every column of the partition.
    :param side: ``reference`` or ``current``.
    :param sample_size: at most this many sample values per column (a fixed stride over the partition's rows).
    :raises DriftEngineError: a column is missing from the partition, or the partition cannot be read.
    """
    from mlops_airflow.monitoring.drift_engine import _release_arrow_memory

    if side not in _SIDES:
        raise ValueError(f"side must be 'reference' or 'current', got {side!r}")
    started = time.perf_counter()
    src, key = open_partition(source)
    names = list(src.schema.names)
    columns = names if columns is None else list(dict.fromkeys(columns))
    missing = [c for c in columns if c not in names]
    if missing:
        raise DriftEngineError(
            f"column(s) {missing} missing from the {side} partition {key!r} (it has {names}); every partition of "
            "a side must have every compared column"
        )
    stride = max(1, math.ceil(src.rows / max(1, sample_size)))
    out: dict[str, Any] = {}
    for col in columns:
        acc = _Summary(src.schema.field(col).type, stride)
        for arr in src.iter_column(col, batch_size):
            acc.update(arr)
        out[col] = acc.to_doc()
        del acc
        _release_arrow_memory()
    return {
        "format": FORMAT,
        "kind": "summary",
        "side": side,
        "partition": key,
        "rows": src.rows,
        "columns": out,
        "seconds": time.perf_counter() - started,
    }


# -- reduce 1: merge and plan --------------------------------------------------------------------------------------


class _Merged(_Moments):
    """One column of one side, merged over its partitions."""

    def __init__(self, column: str, side: str) -> None:
        self.column, self.side = column, side
        self.type: Any = None
        self.type_name: str | None = None
        self.numeric = False
        self.rows = self.nulls = self.n = 0
        self.min, self.max = math.inf, -math.inf
        self.mean = self.m2 = 0.0
        self.counts: dict[Any, int] | None = {}
        self.moments: list[tuple[str, int, float, float]] = []
        self.samples: list[tuple[Any, Any]] = []  # (values, weight: a float or an array)
        self.sample_size = 0
        self._typed = False  # the type comes from a partition with values

    def add(self, key: str, doc: Mapping[str, Any]) -> None:
        type_name = doc["type_name"]
        self.rows += int(doc["rows"])
        self.nulls += int(doc["nulls"])
        if doc["rows"] == 0 or type_name == "null":  # nothing to merge (an empty or all-null partition)
            if self.type is None:  # its type stands only until a partition with values comes
                self.type, self.type_name, self.numeric = _dec_type(doc["type"]), type_name, bool(doc["numeric"])
            return
        if not self._typed:
            self.type, self.type_name, self.numeric = _dec_type(doc["type"]), type_name, bool(doc["numeric"])
            self._typed = True
        elif _type_family(type_name) != _type_family(self.type_name):
            raise DriftEngineError(
                f"column {self.column!r} is {type_name} in the {self.side} partition {key!r} but {self.type_name} "
                "in others; fix the producing step's schema"
            )
        self.n += int(doc["n"])
        if doc.get("min") is not None:
            self.min = min(self.min, float(doc["min"]))
            self.max = max(self.max, float(doc["max"]))
            self.moments.append((key, int(doc["n"]), float(doc["mean"]), float(doc["m2"])))
        if self.counts is not None:
            if doc["counts"] is None:
                self.counts = None
            else:
                for k, v in doc["counts"]:
                    self.counts[k] = self.counts.get(k, 0) + int(v)
                if self.numeric and len(self.counts) > DISTINCT_LIMIT:
                    self.counts = None
        if doc.get("sample") is not None and doc["n"]:
            values = _dec(doc["sample"])
            if values.size:
                self.samples.append((values, float(doc["sample_weight"])))
                self.sample_size += values.size
                if self.sample_size > _PLAN_SAMPLE_MAX:
                    self._compact()

    def _compact(self) -> None:
        """Replace the samples by ``_PLAN_SAMPLE`` weighted quantiles of them (keeps reduce 1's memory bounded)."""
        import numpy as np

        values, weights = self.weighted_sample()
        cum = np.cumsum(weights)
        targets = (np.arange(_PLAN_SAMPLE) + 0.5) * (cum[-1] / _PLAN_SAMPLE)
        idx = np.minimum(np.searchsorted(cum, targets, side="left"), values.size - 1)
        self.samples = [(values[idx], float(cum[-1] / _PLAN_SAMPLE))]
        self.sample_size = _PLAN_SAMPLE

    def weighted_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """All sample values sorted (ties by weight: independent of the partitions' order) and their weights."""
        import numpy as np

        if not self.samples:
            return np.empty(0), np.empty(0)
        values = np.concatenate([v for v, _ in self.samples])
        weights = np.concatenate([np.broadcast_to(np.asarray(w, float), v.shape) for v, w in self.samples])
        order = np.lexsort((weights, values))
        return values[order], weights[order]

    def finalize(self) -> None:
        """Merge the moments in partition-key order (the result does not depend on the summaries' order)."""
        self.mean = self.m2 = 0.0
        n_a = 0
        for _, n_b, mean_b, m2_b in sorted(self.moments):
            n_a, self.mean, self.m2 = merge_moments(n_a, self.mean, self.m2, n_b, mean_b, m2_b)
        if not self.numeric and not _countable(self.type) and self.type_name != "null":
            self.counts = None

    def kind_counts(self, kind: str) -> dict[Any, int] | None:
        """The counts as the engine keys them for ``kind``: a numerical column's keys are floats (-0.0 is 0.0),
        a categorical one's its own values (a categorical integer column keeps integers)."""
        if self.counts is None or kind != NUMERICAL:
            return self.counts
        out: dict[Any, int] = {}
        for k, v in self.counts.items():
            out[k + 0.0] = out.get(k + 0.0, 0) + v
        return out

    @property
    def integer(self) -> bool:
        import pyarrow as pa

        return bool(self.type is not None and pa.types.is_integer(self.type))

    @property
    def floating(self) -> bool:
        import pyarrow as pa

        return bool(self.type is not None and pa.types.is_floating(self.type))


_FAMILIES = {
    **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"), "integer"),
    **dict.fromkeys(("halffloat", "float", "double"), "floating"),
    **dict.fromkeys(("string", "large_string"), "string"),
}


def _type_family(type_name: str | None) -> str | None:
    """Types that read and type the same here, whatever the width: integers, floats, strings; dictionaries by
    their value type (files written apart often differ in widths only)."""
    if type_name and type_name.startswith("dictionary<values="):
        return "dictionary:" + _FAMILIES.get(v := type_name.removeprefix("dictionary<values=").split(",", 1)[0], v)
    return _FAMILIES.get(type_name or "", type_name)


def _merge_side(
    summaries: Iterable[Any], side: str, columns: Sequence[str] | None
) -> tuple[dict[str, _Merged], list[str], list[str], int]:
    """One side's summaries merged per column (read one at a time), its partition keys, column order and rows."""
    merged: dict[str, _Merged] = {}
    keys: list[str] = []
    order: dict[str, None] = {}
    rows = 0
    seen_columns: list[set[str]] = []
    for item in summaries:
        doc = load(item)
        _expect(doc, "summary", side)
        key = doc["partition"]
        keys.append(key)
        rows += int(doc["rows"])
        cols = doc["columns"]
        seen_columns.append(set(cols))
        order.update(dict.fromkeys(cols))
        for col in cols if columns is None else columns:
            if col not in cols:
                raise DriftEngineError(
                    f"column {col!r} is missing from the {side} partition {key!r} (its summary has {sorted(cols)})"
                )
            merged.setdefault(col, _Merged(col, side)).add(key, cols[col])
        del doc
    if not keys:
        raise DriftEngineError(f"no {side} partitions: pass at least one summary (an empty partition is fine)")
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise DriftEngineError(f"{side} partitions summarised more than once: {dup}")
    if columns is None:
        for col in order:
            lacking = [k for k, cols in zip(keys, seen_columns, strict=True) if col not in cols]
            if lacking:
                raise DriftEngineError(f"column {col!r} is missing from the {side} partition(s) {lacking}")
    for m in merged.values():
        m.finalize()
    return merged, keys, list(order), rows
