"""Fast data-drift engine: Evidently 0.7's per-column drift verdicts, computed one column at a time from Parquet.

Evidently's ``DataDriftPreset`` loads both datasets into pandas and runs a stattest per column; on 1,000,000 x 20
numeric rows that takes minutes and ~2 GB. This engine reaches the same per-column verdicts by reading one column
at a time (pyarrow, in record batches) and computing the same statistics with numpy/scipy.

**Method selection** copies ``evidently.legacy.calculations.stattests.registry._get_default_stattest`` (0.7.23);
``n`` is the number of non-null, finite reference values and ``k`` the number of distinct values of both sides::

    numerical,   n <= 1000: k <= 5 -> chisquare (k > 2) / z (k <= 2); k > 5 -> ks            (p-values, 0.05)
    numerical,   n >  1000: k <= 5 -> jensenshannon;                   k > 5 -> wasserstein    (distances, 0.1)
    categorical, n <= 1000: chisquare (k > 2) / z (k <= 2);  n > 1000: jensenshannon

An explicit ``stattest`` may be ``wasserstein``, ``ks``, ``jensenshannon``, ``psi``, ``chisquare`` or ``z`` (the
feature types Evidently allows for each). Like Evidently, nulls and +-inf are dropped first; a side left empty
gives a result with ``empty_side`` set instead of a score. Drift: a distance drifts when ``score >= threshold``;
``ks`` when ``p <= threshold``; ``chisquare`` and ``z`` when ``p < threshold`` (Evidently's own comparisons).

**Exactness.**
- Counts-based tests (chisquare, z, jensenshannon, psi; numerical histograms with Sturges bins as Evidently's
  ``get_binned_data``) are exact at any size: they need per-value or per-bin counts only, accumulated batch by
  batch.
- Wasserstein and KS need the whole sorted column. While both sides have at most ``max_exact_rows`` rows the
  values of the column are held in memory (8 bytes a value), sorted, and the statistic is exact (equal to
  Evidently's up to floating-point summation order, ~1e-15 relative).
- Above that, the column is streamed and the statistic is **bounded, not estimated**: exact cumulative counts
  at ``bins`` edges (quantiles of a strided sample of both sides), both at and just below each edge, give for
  every interval between two edges the range both empirical CDFs can take inside it, hence a guaranteed interval
  ``[low, high]`` that contains the exact Wasserstein distance (and the exact KS statistic, hence its p-value).
  When the threshold lies outside that interval, the verdict equals the exact one, by construction. When it
  does not, every interval that carries slack is split into ``refine_splits`` parts (the largest first, within
  ``max_edges`` edges) and the column is counted again, up to ``max_refinements`` times; for a smooth density
  each pass shrinks the interval ~``refine_splits``-fold. The width after the first pass is at most
  ``sum_k width_k * (dF_k + dG_k)``, about ``2 * (max - min) / bins`` for equal-mass edges: ~0.0013 of a standard
  deviation for 10M normal rows and 16,384 edges (the threshold is 0.1). Values that are edges (atoms: integer
  data) are counted exactly. A column whose interval still holds the threshold after the refinements is decided
  on the midpoint and reported with ``certain=False`` and its bounds; the caller names it.
Memory is bounded by one record batch, the edges and the counters (plus held values below ``max_exact_rows``),
whatever the row count. Categorical counts grow with the number of distinct values (as in Evidently).

Imports numpy, scipy and pyarrow inside functions only, and no Airflow, so a plain process can use it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
#: Distinct values tracked per side before a numerical column counts as continuous (Evidently needs <= 5 for its
#: method choice and <= 20 for the keys-based binning of psi/jensenshannon).
_DISTINCT_LIMIT = 21
_SAMPLE_TARGET = 1 << 18


class DriftEngineError(ValueError):
    """Bad input for the drift engine (missing file, unknown column, unsupported stattest, mixed types)."""


@dataclass(frozen=True)
class StatTestSpec:
    name: str
    display_name: str
    default_threshold: float
    distance: bool  # drift when score >= threshold; else a p-value
    strict: bool  # p-value: drift when p < threshold (True) or p <= threshold (False, ks)
    kinds: tuple[str, ...]

    def drifted(self, score: float, threshold: float) -> bool:
        if self.distance:
            return bool(score >= threshold)
        return bool(score < threshold) if self.strict else bool(score <= threshold)


#: The stattests this engine implements, with Evidently 0.7.23's names, default thresholds and comparisons
#: (evidently/legacy/calculations/stattests/*.py).
STATTESTS: dict[str, StatTestSpec] = {
    s.name: s
    for s in (
        StatTestSpec("wasserstein", "Wasserstein distance (normed)", 0.1, True, False, (NUMERICAL,)),
        StatTestSpec("ks", "K-S p_value", 0.05, False, False, (NUMERICAL,)),
        StatTestSpec("jensenshannon", "Jensen-Shannon distance", 0.1, True, False, (NUMERICAL, CATEGORICAL)),
        StatTestSpec("psi", "PSI", 0.1, True, False, (NUMERICAL, CATEGORICAL)),
        StatTestSpec("chisquare", "chi-square p_value", 0.05, False, True, (CATEGORICAL,)),
        StatTestSpec("z", "Z-test p_value", 0.05, False, True, (CATEGORICAL,)),
    )
}


def default_stattest(kind: str, reference_count: int, n_unique: int) -> str:
    """Evidently 0.7's automatic choice (``_get_default_stattest``) for one column.

    :param kind: ``numerical`` or ``categorical``.
    :param reference_count: non-null, finite reference values.
    :param n_unique: distinct values of reference and current together (any number > 5 means "many").
    """
    if reference_count <= 1000:
        if kind == NUMERICAL and n_unique > 5:
            return "ks"
        return "chisquare" if n_unique > 2 else "z"
    if kind == NUMERICAL and n_unique > 5:
        return "wasserstein"
    return "jensenshannon"


@dataclass
class ColumnDrift:
    """One column's result. ``score`` is a distance or a p-value (see ``STATTESTS[method]``)."""

    column: str
    kind: str
    method: str | None = None
    threshold: float | None = None
    score: float | None = None
    drifted: bool = False
    exact: bool = True  # the score is the exact statistic (else the midpoint of score_low..score_high)
    certain: bool = True  # the verdict equals the exact one (always when exact; by the bounds when streamed)
    score_low: float | None = None
    score_high: float | None = None
    reference_count: int = 0
    current_count: int = 0
    n_unique: int | None = None  # distinct values of both sides; None = more than the engine tracks
    empty_side: str | None = None  # "reference" | "current" | "reference and current": nothing to compare
    passes: int = 0  # reads of the column (per side)
    seconds: float = 0.0
    typing_note: str | None = None  # where the type differs from Evidently's, or was declared by the caller
    #: for the report, not the verdict: ``{"kind": "bins", "edges": [...], "reference": [...], "current": [...]}``
    #: (shares of each side per bin) or ``{"kind": "values", "values": [...], "reference": [...], "current": [...]}``
    histogram: dict[str, Any] | None = field(default=None, repr=False)

    def as_verdict_entry(self) -> dict[str, Any]:
        """The per-column entry of the drift verdict (same keys as the Evidently path)."""
        return {"score": self.score, "threshold": self.threshold, "method": self.method, "drifted": self.drifted}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftResult:
    columns: dict[str, ColumnDrift]
    reference_rows: int
    current_rows: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    #: columns asked for (or found) that the engine did not check, with the reason (text, datetime, unknown type)
    unchecked: dict[str, str] = field(default_factory=dict)
    #: the type each column got: ``numerical``/``categorical`` (checked), ``text``/``datetime``/``unknown``
    types: dict[str, str] = field(default_factory=dict)

    @property
    def approximate_columns(self) -> dict[str, dict[str, Any]]:
        """Columns whose score is bounded rather than exact: ``{col: {low, high, certain}}``."""
        return {
            c: {"low": r.score_low, "high": r.score_high, "certain": r.certain}
            for c, r in self.columns.items()
            if not r.exact
        }

    @property
    def uncertain_columns(self) -> list[str]:
        """Columns whose verdict the bounds could not make sure (decided on the midpoint)."""
        return [c for c, r in self.columns.items() if not r.certain]


# -- sources -------------------------------------------------------------------------------------------------------


class ParquetSource:
    """A Parquet file, or a directory of Parquet files (recursive), local or a ``scheme://`` URI pyarrow knows.

    Only footers are read on open; columns are streamed on demand, one at a time, in record batches.
    Hive partition keys in directory names are not columns here (drift compares features, not partitions).
    """

    def __init__(self, path: str | Path) -> None:
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        self.path = str(path)
        try:
            if "://" in self.path and not self.path.startswith("file://"):
                self.filesystem, base = pafs.FileSystem.from_uri(self.path)
            else:
                self.filesystem = pafs.LocalFileSystem()
                base = str(Path(self.path.removeprefix("file://")).expanduser().resolve())
            info = self.filesystem.get_file_info(base)
        except Exception as err:  # noqa: BLE001 - any filesystem error is reported with the path
            raise DriftEngineError(f"cannot open {self.path!r}: {err}") from err
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.path)
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(base, recursive=True)
            files = sorted(
                f.path
                for f in self.filesystem.get_file_info(selector)
                if f.type == pafs.FileType.File
                and not Path(f.path).name.startswith((".", "_"))
                and not f.path.endswith((".tmp", ".crc"))
            )
        else:
            files = [base]
        if not files:
            raise DriftEngineError(f"{self.path!r} is a directory without Parquet files")
        self.files = files
        self._metadata = []
        for file in files:
            try:
                with self.filesystem.open_input_file(file) as handle:
                    self._metadata.append(pq.ParquetFile(handle).metadata)
            except Exception as err:  # noqa: BLE001
                raise DriftEngineError(f"cannot read {file!r} as Parquet: {err}") from err
        self.schema = self._metadata[0].schema.to_arrow_schema()

    @property
    def rows(self) -> int:
        return sum(m.num_rows for m in self._metadata)

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        import pyarrow.parquet as pq

        for file in self.files:
            with self.filesystem.open_input_file(file) as handle:
                # pre_buffer=False: pyarrow's default pre-buffers the column of *every* row group of the file
                # (80 MB a float column at 10M rows); without it memory is one row group's column chunk.
                reader = pq.ParquetFile(handle, pre_buffer=False)
                if column not in reader.schema_arrow.names:
                    raise DriftEngineError(f"column {column!r} is missing from {file!r} ({reader.schema_arrow.names})")
                for batch in reader.iter_batches(batch_size=batch_size, columns=[column]):
                    yield batch.column(0)


class ArraySource:
    """In-memory columns (numpy arrays, lists or pyarrow arrays) with the ``ParquetSource`` interface; for tests."""

    def __init__(self, columns: Mapping[str, Any]) -> None:
        import pyarrow as pa

        self.path = "<memory>"
        self._columns = {
            name: values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True)
            for name, values in columns.items()
        }
        self.schema = pa.schema([(name, arr.type) for name, arr in self._columns.items()])
        lengths = {len(arr) for arr in self._columns.values()}
        if len(lengths) > 1:
            raise DriftEngineError(f"columns of unequal length: {lengths}")
        self._rows = lengths.pop() if lengths else 0

    @property
    def rows(self) -> int:
        return self._rows

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        arr = self._columns[column]
        for start in range(0, len(arr), batch_size):
            yield arr.slice(start, batch_size)


def _as_source(data: Any) -> ParquetSource | ArraySource:
    if isinstance(data, ParquetSource | ArraySource):
        return data
    if isinstance(data, str | Path):
        return ParquetSource(data)
    if isinstance(data, Mapping):
        return ArraySource(data)
    raise DriftEngineError(f"unsupported input {type(data).__name__}: pass a Parquet path or a mapping of columns")


def column_kind(arrow_type: Any) -> str:
    """``numerical`` for integer/floating types (as pandas' ``is_numeric_dtype`` minus bool), else categorical."""
    import pyarrow as pa

    return NUMERICAL if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) else CATEGORICAL


# -- per-side accumulation ---------------------------------------------------------------------------------------


class _Side:
    """One pass over one side of one column: counts, moments, extremes, distinct values, held values, a sample."""

    def __init__(self, kind: str, keep_values: bool, stride: int) -> None:
        self.kind = kind
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.had_null = False
        self.counts: dict[Any, int] | None = {}
        self.values: list[np.ndarray] | None = [] if keep_values else None
        self.sample: list[np.ndarray] = []
        self.stride = stride
        self._seen = 0

    def update(self, arr: pa.Array) -> None:
        if arr.null_count:
            self.had_null = True
        if self.kind == CATEGORICAL:
            self._update_counts(arr)
            return
        import numpy as np

        x = _finite_values(arr)
        if x.size == 0:
            return
        # Chan et al.'s parallel update of mean and sum of squared deviations.
        mean_b = float(x.mean())
        dev = x - mean_b
        m2_b = float(np.dot(dev, dev))
        del dev
        n_a, n_b = self.n, int(x.size)
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * n_a * n_b / total
        self.n = total
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        if self.counts is not None:
            self._update_counts(_finite_arrow(arr))
        if self.values is not None:
            self.values.append(x)
        else:
            start = (-self._seen) % self.stride
            self.sample.append(x[start :: self.stride].copy())
        self._seen += n_b

    def _update_counts(self, arr: pa.Array, limit: int | None = _DISTINCT_LIMIT) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if self.kind == CATEGORICAL:
            arr = arr.drop_null()
            self.n += len(arr)
            limit = None
        assert self.counts is not None
        if limit is not None and len(arr):
            # Continuous data shows itself in the first few thousand values: stop before any per-value work.
            if pc.count_distinct(arr.slice(0, 4096)).as_py() > limit:
                self.counts = None
                return
            distinct = pc.unique(arr)
            if len(distinct) > limit or len(set(self.counts) | {v + 0.0 for v in distinct.to_pylist()}) > limit:
                self.counts = None
                return
        _add_counts(self.counts, arr, numeric=self.kind == NUMERICAL)

    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0  # np.std's default ddof=0

    def take_values(self) -> list[np.ndarray]:
        """The held values (batch order), handed over once."""
        assert self.values is not None
        values, self.values = self.values, None
        return values


def _finite_values(arr: pa.Array) -> np.ndarray:
    """The non-null, finite values of a numerical arrow array as float64 numpy.

    Read straight from the arrow buffer: ``Array.to_numpy`` would import pandas (pyarrow's pandas shim), ~50 MB.
    The result may be a read-only view of the batch.
    """
    import numpy as np
    import pyarrow as pa

    if arr.type != pa.float64():
        arr = arr.cast(pa.float64(), safe=False)
    if arr.null_count:
        arr = arr.drop_null()
    x = np.frombuffer(arr.buffers()[1], dtype=np.float64, count=len(arr), offset=arr.offset * 8)
    finite = np.isfinite(x)
    return x if finite.all() else x[finite]


def _finite_arrow(arr: pa.Array) -> pa.Array:
    """The non-null, finite values of a numerical arrow array (arrow compute: no pandas, no numpy copy)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(arr.type):
        return arr.filter(pc.is_finite(arr))  # null -> null -> dropped
    return arr.drop_null()


def _add_counts(counts: dict[Any, int], arr: pa.Array, numeric: bool) -> None:
    import pyarrow.compute as pc

    if len(arr) == 0:
        return
    value_counts = pc.value_counts(arr)
    values, hits = value_counts.field("values").to_pylist(), value_counts.field("counts").to_pylist()
    for value, count in zip(values, hits, strict=True):
        key = value + 0.0 if numeric else value  # -0.0 and 0.0 are one value, as in pandas
        counts[key] = counts.get(key, 0) + count


def _read_side(source: Any, column: str, kind: str, keep_values: bool, stride: int, batch_size: int) -> _Side:
    side = _Side(kind, keep_values, stride)
    for arr in source.iter_column(column, batch_size):
        side.update(arr)
    return side


# -- statistics ----------------------------------------------------------------------------------------------------


def _wasserstein_merged(merged: np.ndarray, n: int, block: int = 1 << 18) -> float:
    """Exact W1 between ``merged[:n]`` and ``merged[n:]``, both sorted: the integral of |F - G| over the merged
    values, as scipy's ``_cdf_distance`` computes it.

    The merge order comes from a stable argsort of the two sorted runs (timsort: one linear merge); the CDFs are
    running counts along it, evaluated block by block so the temporaries stay small.
    """
    import numpy as np

    m = merged.size - n
    order = np.argsort(merged, kind="stable")
    total, taken_u = 0.0, 0
    size = merged.size
    for start in range(0, size - 1, block):
        stop = min(start + block, size - 1)
        idx = order[start : stop + 1]
        values = merged[idx]
        from_u = np.cumsum(idx[:-1] < n) + taken_u  # values of the first sample among the first k + 1 merged
        taken_u = int(from_u[-1])
        from_v = np.arange(start + 1, stop + 1) - from_u
        total += float(np.dot(np.abs(from_u / n - from_v / m), np.diff(values)))
    return total


def _aligned(ref_counts: Mapping[Any, int], cur_counts: Mapping[Any, int]) -> tuple[list[Any], Any, Any]:
    import numpy as np

    keys = list(set(ref_counts) | set(cur_counts))
    ref = np.array([ref_counts.get(k, 0) for k in keys], float)
    cur = np.array([cur_counts.get(k, 0) for k in keys], float)
    return keys, ref, cur


def _jensenshannon(ref_pct: np.ndarray, cur_pct: np.ndarray) -> float:
    """``scipy.spatial.distance.jensenshannon(ref_pct, cur_pct)`` (natural log), step for step."""
    import numpy as np

    def rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # scipy.special.rel_entr; y > 0 wherever x > 0 here
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log(x / y), 0.0)

    p = ref_pct / np.sum(ref_pct)
    q = cur_pct / np.sum(cur_pct)
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    return float(np.sqrt(js / 2.0))


def _psi(ref_pct: np.ndarray, cur_pct: np.ndarray) -> float:
    import numpy as np

    ref_pct, cur_pct = ref_pct.copy(), cur_pct.copy()
    for pct in (ref_pct, cur_pct):  # get_binned_data(..., feel_zeroes=True)
        smallest = pct[pct != 0].min()
        np.place(pct, pct == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return float(np.sum((ref_pct - cur_pct) * np.log(ref_pct / cur_pct)))


def _chisquare(ref_counts: Mapping[Any, int], cur_counts: Mapping[Any, int], n_ref: int, n_cur: int) -> float:
    import numpy as np
    from scipy.stats import chisquare

    _, ref, cur = _aligned(ref_counts, cur_counts)
    with np.errstate(divide="ignore", invalid="ignore"):  # a value new in current: expected 0, p = 0 (as Evidently)
        return float(chisquare(cur, ref * (n_cur / n_ref))[1])


def _z_test(ref_counts: Mapping[Any, int], cur_counts: Mapping[Any, int], n_ref: int, n_cur: int) -> float:
    import numpy as np

    if len(ref_counts) == 1 and len(cur_counts) == 1 and next(iter(ref_counts)) == next(iter(cur_counts)):
        return 1.0
    first = sorted(set(ref_counts) | set(cur_counts))[0]
    p1 = float(n_ref - ref_counts.get(first, 0)) / n_ref
    p2 = float(n_cur - cur_counts.get(first, 0)) / n_cur
    pooled = float(p1 * n_ref + p2 * n_cur) / (n_ref + n_cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    if not math.isfinite(float(z)):
        return float("nan")
    return float(2 * (1 - 0.5 * math.erfc(-abs(float(z)) / math.sqrt(2))))  # scipy.stats.norm.cdf = ndtr


def _sturges_edges(ref: _Side, cur: _Side, integer: bool) -> np.ndarray:
    """``np.histogram_bin_edges(concat(ref, cur), bins="sturges")`` from counts and extremes only."""
    import numpy as np

    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    size = ref.n + cur.n
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    width = (hi - lo) / (np.log2(size) + 1.0)
    if integer and width < 1:
        width = 1
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def _histogram(source: Any, column: str, edges: np.ndarray, batch_size: int) -> np.ndarray:
    import numpy as np

    counts = np.zeros(edges.size - 1, dtype=np.int64)
    for arr in source.iter_column(column, batch_size):
        x = _finite_values(arr)
        counts += np.histogram(x, edges)[0]
    return counts


def _cdf_at_edges(source: Any, column: str, edges: np.ndarray, batch_size: int, n: int) -> tuple[Any, Any]:
    """``(F(e_k), F(e_k-))``: the share of values ``<= e_k`` and ``< e_k`` for every edge.

    The edges span the data (``e_0`` = min, ``e_last`` = max). One counter per edge and one per interval: a value
    equal to ``e_k`` counts at ``2k``, a value inside ``(e_k-1, e_k)`` at ``2k - 1``.
    """
    import numpy as np

    counts = np.zeros(2 * edges.size, dtype=np.int64)
    for arr in source.iter_column(column, batch_size):
        x = _finite_values(arr)
        idx = np.searchsorted(edges, x, side="left")
        key = 2 * idx - (edges[idx] != x)
        counts += np.bincount(key, minlength=2 * edges.size)
    cum = np.cumsum(counts) / n
    at = cum[0::2]
    below = np.concatenate(([0.0], cum[1:-1:2]))
    return at, below


def _interval_bounds(f: tuple[Any, Any], g: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per open interval (e_k, e_k+1): the least and the largest |F - G| can be inside it.

    Inside it F runs from F(e_k) to F(e_k+1 -) and G likewise, so F - G lies in ``[a, b]`` below; an interval no
    value falls into has ``a == b``: both CDFs are known there exactly.
    """
    import numpy as np

    f_at, f_below = f
    g_at, g_below = g
    a = f_at[:-1] - g_below[1:]  # F - G >= a inside the interval
    b = f_below[1:] - g_at[:-1]  # F - G <= b
    low = np.where(a > 0, a, np.where(b < 0, -b, 0.0))
    high = np.maximum(np.abs(a), np.abs(b))
    return low, high


def _ks_pvalue(d: float, n1: int, n2: int) -> float:
    """scipy's ``ks_2samp(method="auto")`` two-sided p-value for statistic ``d`` and sample sizes ``n1``, ``n2``."""
    import numpy as np
    from scipy.stats import kstwo

    if max(n1, n2) <= 10_000:  # scipy's MAX_AUTO_N: it tries the exact distribution first
        try:
            from scipy.stats._stats_py import _attempt_exact_2kssamp  # private; same function ks_2samp calls

            g = math.gcd(n1, n2)
            success, _, prob = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
            if success:
                return float(np.clip(prob, 0, 1))
        except (ImportError, TypeError):  # scipy moved it: the asymptotic value is what scipy falls back to
            pass
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(kstwo.sf(d, np.round(en)), 0, 1))


# -- pictures for the report (not the verdict) --------------------------------------------------------------------

_DISPLAY_BINS = 30
_DISPLAY_VALUES = 20


def _histogram_from_cdf(display: np.ndarray, ref_at: np.ndarray, cur_at: np.ndarray) -> dict[str, Any]:
    """Shares per display bin from both CDFs at the bin edges (the first bin also holds the minimum)."""
    import numpy as np

    ref_share = np.diff(np.concatenate(([0.0], ref_at[1:])))
    cur_share = np.diff(np.concatenate(([0.0], cur_at[1:])))
    return _bins_histogram(display, ref_share, cur_share)


def _bins_histogram(edges: np.ndarray, ref_share: np.ndarray, cur_share: np.ndarray) -> dict[str, Any]:
    """At most ``2 * _DISPLAY_BINS`` bins: neighbours are summed when there are more (integer Sturges bins)."""
    import numpy as np

    step = max(1, math.ceil((edges.size - 1) / (2 * _DISPLAY_BINS)))
    if step > 1:
        idx = np.arange(0, edges.size - 1, step)
        ref_share, cur_share = np.add.reduceat(ref_share, idx), np.add.reduceat(cur_share, idx)
        edges = np.concatenate((edges[idx], edges[-1:]))
    return {
        "kind": "bins",
        "edges": [float(e) for e in edges],
        "reference": [float(x) for x in ref_share],
        "current": [float(x) for x in cur_share],
    }


def _values_histogram(ref_counts: Mapping[Any, int], cur_counts: Mapping[Any, int], n_ref: int, n_cur: int) -> dict:
    """Shares of the most frequent values (both sides together); the rest in one "other" entry."""
    keys = sorted(set(ref_counts) | set(cur_counts), key=lambda k: -(ref_counts.get(k, 0) + cur_counts.get(k, 0)))
    shown = keys[:_DISPLAY_VALUES]
    with contextlib.suppress(TypeError):
        shown = sorted(shown)
    ref = [ref_counts.get(k, 0) / n_ref for k in shown]
    cur = [cur_counts.get(k, 0) / n_cur for k in shown]
    labels = [str(k) for k in shown]
    if len(keys) > len(shown):
        labels.append(f"other ({len(keys) - len(shown)} values)")
        ref.append(max(0.0, 1.0 - sum(ref)))
        cur.append(max(0.0, 1.0 - sum(cur)))
    return {"kind": "values", "values": labels, "reference": ref, "current": cur}


# -- the engine ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    stattest: str | None = None
    threshold: float | None = None
    max_exact_rows: int = 2_000_000
    batch_size: int = 1 << 18
    bins: int = 16_384
    max_refinements: int = 4
    refine_splits: int = 32
    max_edges: int = 1 << 20  # 8 MiB of edges (and 16 MiB of counters) at most, per column in flight


def _column(ref_src: Any, cur_src: Any, column: str, kind: str, cfg: EngineSettings) -> ColumnDrift:
    import numpy as np

    started = time.perf_counter()
    result = ColumnDrift(column=column, kind=kind)
    exact = ref_src.rows <= cfg.max_exact_rows and cur_src.rows <= cfg.max_exact_rows and kind == NUMERICAL
    stride = max(1, (ref_src.rows + cur_src.rows) // _SAMPLE_TARGET)
    ref = _read_side(ref_src, column, kind, exact, stride, cfg.batch_size)
    cur = _read_side(cur_src, column, kind, exact, stride, cfg.batch_size)
    result.passes = 1
    result.reference_count, result.current_count = ref.n, cur.n
    empty = [role for role, side in (("reference", ref), ("current", cur)) if side.n == 0]
    if empty:
        result.empty_side = " and ".join(empty)
        result.seconds = time.perf_counter() - started
        return result

    if ref.counts is not None and cur.counts is not None:
        union = set(ref.counts) | set(cur.counts)
        result.n_unique = len(union) if kind == CATEGORICAL or len(union) <= _DISTINCT_LIMIT else None
    n_unique = result.n_unique if result.n_unique is not None else _DISTINCT_LIMIT + 1

    method = cfg.stattest or default_stattest(kind, ref.n, n_unique)
    spec = STATTESTS[method]
    if cfg.stattest is not None and kind not in spec.kinds:  # Evidently's own choice may take either
        raise DriftEngineError(
            f"stattest {method!r} does not apply to {kind} column {column!r} (it takes {', '.join(spec.kinds)})"
        )
    threshold = spec.default_threshold if cfg.threshold is None else float(cfg.threshold)
    result.method, result.threshold = method, threshold

    if method in ("chisquare", "z"):
        assert ref.counts is not None and cur.counts is not None  # categorical, or numerical with <= 5 values
        test = _chisquare if method == "chisquare" else _z_test
        result.score = test(ref.counts, cur.counts, ref.n, cur.n)
        result.histogram = _values_histogram(ref.counts, cur.counts, ref.n, cur.n)
    elif method in ("jensenshannon", "psi"):
        ref_distinct = len(ref.counts) if ref.counts is not None else _DISTINCT_LIMIT + 1
        if kind == NUMERICAL and ref_distinct > 20:
            integer = (
                _is_integer(ref_src, column) and _is_integer(cur_src, column) and not (ref.had_null or cur.had_null)
            )
            edges = _sturges_edges(ref, cur, integer)
            if ref.values is not None and cur.values is not None:
                ref_hist = sum(np.histogram(x, edges)[0] for x in ref.take_values())
                cur_hist = sum(np.histogram(x, edges)[0] for x in cur.take_values())
            else:
                ref_hist = _histogram(ref_src, column, edges, cfg.batch_size)
                cur_hist = _histogram(cur_src, column, edges, cfg.batch_size)
                result.passes += 1
            ref_pct, cur_pct = ref_hist / ref.n, cur_hist / cur.n
            result.histogram = _bins_histogram(edges, ref_pct, cur_pct)
        else:
            if cur.counts is None:  # few reference values, a continuous current side: count it again
                cur = _recount(cur_src, column, cfg.batch_size)
                result.passes += 1
            assert ref.counts is not None and cur.counts is not None
            _, ref_c, cur_c = _aligned(ref.counts, cur.counts)
            ref_pct, cur_pct = ref_c / ref.n, cur_c / cur.n
            result.histogram = _values_histogram(ref.counts, cur.counts, ref.n, cur.n)
        result.score = _jensenshannon(ref_pct, cur_pct) if method == "jensenshannon" else _psi(ref_pct, cur_pct)
    elif ref.values is not None and cur.values is not None:  # wasserstein / ks, exact in memory
        # One buffer for both sides, each half sorted in place: the merge needs nothing else.
        merged = np.concatenate(ref.take_values() + cur.take_values())
        u, v = merged[: ref.n], merged[ref.n :]
        u.sort()
        v.sort()
        display = np.linspace(min(u[0], v[0]), max(u[-1], v[-1]), _DISPLAY_BINS + 1)
        ref_at = np.searchsorted(u, display, side="right") / u.size
        cur_at = np.searchsorted(v, display, side="right") / v.size
        result.histogram = _histogram_from_cdf(display, ref_at, cur_at)
        if method == "wasserstein":
            norm = max(float(np.std(u)), 0.001)
            result.score = _wasserstein_merged(merged, ref.n) / norm
        else:
            from scipy.stats import ks_2samp

            result.score = float(ks_2samp(u, v)[1])
        del merged, u, v
    else:
        _certified(result, ref_src, cur_src, ref, cur, spec, threshold, cfg)

    assert result.score is not None
    _release_arrow_memory()
    if result.exact:
        result.drifted = spec.drifted(result.score, threshold)
        result.score_low = result.score_high = None
    result.seconds = time.perf_counter() - started
    return result


def _release_arrow_memory() -> None:
    """Hand the batches' freed memory back to the OS (mimalloc/jemalloc keep it for reuse otherwise)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _recount(source: Any, column: str, batch_size: int) -> _Side:
    """All value counts of a numerical side, however many distinct values it has."""
    side = _Side(NUMERICAL, False, 1)
    side.counts = {}
    for arr in source.iter_column(column, batch_size):
        finite = _finite_arrow(arr)
        side.n += len(finite)
        _add_counts(side.counts, finite, numeric=True)
    return side


def _is_integer(source: Any, column: str) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(source.schema.field(column).type))


def _certified(
    result: ColumnDrift,
    ref_src: Any,
    cur_src: Any,
    ref: _Side,
    cur: _Side,
    spec: StatTestSpec,
    threshold: float,
    cfg: EngineSettings,
) -> None:
    """Streamed Wasserstein/KS: guaranteed bounds from exact CDF values at edges, refined until the verdict is sure."""
    import numpy as np

    sample = np.concatenate(ref.sample + cur.sample)
    sample.sort()
    ref.sample, cur.sample = [], []
    positions = np.linspace(0, sample.size - 1, min(cfg.bins, sample.size) + 1).round().astype(np.int64)
    lo_all, hi_all = min(ref.min, cur.min), max(ref.max, cur.max)
    edges = np.unique(np.concatenate((sample[positions], [lo_all, hi_all])))
    del sample
    norm = max(ref.std(), 0.001)
    low = high = 0.0
    for round_ in range(cfg.max_refinements + 1):
        f = _cdf_at_edges(ref_src, result.column, edges, cfg.batch_size, ref.n)
        g = _cdf_at_edges(cur_src, result.column, edges, cfg.batch_size, cur.n)
        result.passes += 1
        lo_k, hi_k = _interval_bounds(f, g)
        if spec.name == "wasserstein":
            widths = np.diff(edges)
            low, high = float(np.dot(widths, lo_k)) / norm, float(np.dot(widths, hi_k)) / norm
            slack = widths * (hi_k - lo_k)
            score_low, score_high = low, high
        else:  # ks: the statistic, then its (decreasing) p-value
            at_edges = float(np.max(np.abs(f[0] - g[0])))
            low, high = at_edges, max(at_edges, float(hi_k.max(initial=0.0)))
            slack = np.maximum(hi_k - at_edges, 0.0)
            score_low, score_high = _ks_pvalue(high, ref.n, cur.n), _ks_pvalue(low, ref.n, cur.n)
        sure = spec.drifted(score_low, threshold) == spec.drifted(score_high, threshold)
        result.score_low, result.score_high = score_low, score_high
        if sure or round_ == cfg.max_refinements or not np.any(slack > 0):
            break
        # Split the intervals that carry the slack (all of them while the edge budget allows, else the largest);
        # the edges stay a superset, so the bounds only tighten.
        budget = max(0, cfg.max_edges - edges.size) // (cfg.refine_splits - 1)
        order = np.flatnonzero(slack > 0)
        if budget == 0 or order.size == 0:
            break
        if order.size > budget:
            order = order[np.argpartition(slack[order], order.size - budget)[order.size - budget :]]
        parts = np.linspace(0.0, 1.0, cfg.refine_splits + 1)[1:-1]
        inner = (edges[order, None] + np.diff(edges)[order, None] * parts[None, :]).ravel()
        edges = np.unique(np.concatenate((edges, inner)))
    display = np.linspace(lo_all, hi_all, _DISPLAY_BINS + 1)
    result.histogram = _histogram_from_cdf(display, np.interp(display, edges, f[0]), np.interp(display, edges, g[0]))
    result.score = (score_low + score_high) / 2
    result.exact = score_low == score_high
    result.certain = spec.drifted(score_low, threshold) == spec.drifted(score_high, threshold)
    result.drifted = spec.drifted(result.score, threshold)


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

    from mlops_airflow.monitoring import column_types as ct

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
        if declared.get(col) is None and (ct.needs_distinct(cur_type) or pa.types.is_boolean(cur_type)):
            nulls, count, distinct = ct.current_counts(cur_src, col, cur_type, batch_size)
        try:
            out[col] = ct.classify(
                col, cur_type, null_count=nulls, count=count, distinct=distinct, override=declared.get(col)
            )
        except ValueError as err:
            raise DriftEngineError(str(err)) from err
    return out


def detect_drift(
    reference: Any,
    current: Any,
    columns: Sequence[str] | None = None,
    *,
    stattest: str | None = None,
    threshold: float | None = None,
    cat_stattest: str | None = None,
    num_stattest: str | None = None,
    per_column_stattest: Mapping[str, str] | None = None,
    cat_threshold: float | None = None,
    num_threshold: float | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
    column_types: Mapping[str, str] | None = None,
    max_exact_rows: int = 2_000_000,
    batch_size: int = 1 << 18,
    bins: int = 16_384,
    max_refinements: int = 4,
    workers: int = 2,
) -> DriftResult:
    """Per-column drift of ``current`` against ``reference`` with Evidently 0.7's methods (see the module doc).

    Columns are typed as Evidently 0.7 types them (``monitoring.column_types``: on the current data; integers with
    at most 10 distinct values and booleans are categorical, strings categorical unless free text). Columns the
    engine cannot check (free text, datetimes, unknown types) are not compared and are listed with the reason in
    ``DriftResult.unchecked``; none is skipped silently.

    :param reference: Parquet file/directory path (or URI), a ``ParquetSource``, or a mapping column -> values.
    :param current: the same, for the new window.
    :param columns: columns to compare; None = every column present on both sides.
    :param stattest: one of ``STATTESTS`` for every column; None = Evidently's automatic choice per column.
    :param threshold: the stattest's threshold; None = its default.
    :param cat_stattest: stattest for categorical columns (``DataDriftPreset(cat_method=...)``); likewise
        ``num_stattest``, ``cat_threshold``, ``num_threshold``.
    :param per_column_stattest: ``{column: stattest}`` (``DataDriftPreset(per_column_method=...)``).
    :param per_column_threshold: ``{column: threshold}`` (``DataDriftPreset(per_column_threshold=...)``).
    :param column_types: ``{column: "numerical" | "categorical"}`` declared types; the rest are inferred.
    :param max_exact_rows: largest side (rows) whose column is held in memory for an exact Wasserstein/KS.
    :param batch_size: rows per record batch when streaming.
    :param bins: edges of the first bounding pass for streamed Wasserstein/KS.
    :param max_refinements: extra passes allowed to make a streamed verdict sure.
    :param workers: columns processed in parallel (threads; numpy and pyarrow release the GIL).
    :raises FileNotFoundError: a path does not exist.
    :raises DriftEngineError: unreadable input, unknown column, unsupported stattest, a column numerical on one
        side and categorical on the other.
    """
    started = time.perf_counter()
    named = {stattest, cat_stattest, num_stattest, *(per_column_stattest or {}).values()} - {None}
    unsupported = sorted(str(m) for m in named if m not in STATTESTS)
    if unsupported:
        raise DriftEngineError(
            f"stattest {', '.join(map(repr, unsupported))} is not implemented by the fast drift engine (it has "
            f"{sorted(STATTESTS)}); use engine='evidently' for it"
        )
    ref_src, cur_src = _as_source(reference), _as_source(current)
    types = type_columns(ref_src, cur_src, columns, column_types, batch_size)
    unknown = sorted(set(per_column_stattest or {}) - set(types)) + sorted(set(per_column_threshold or {}) - set(types))
    if unknown:
        raise DriftEngineError(f"per-column stattest/threshold names columns that are not compared: {unknown}")
    cfg = EngineSettings(
        stattest=stattest,
        threshold=threshold,
        max_exact_rows=max_exact_rows,
        batch_size=batch_size,
        bins=bins,
        max_refinements=max_refinements,
    )
    checked = [col for col, t in types.items() if t.checked]

    def run(col: str) -> ColumnDrift:
        kind = types[col].kind
        method, col_threshold = resolve_stattest(
            col,
            kind,
            stattest=stattest,
            cat_stattest=cat_stattest,
            num_stattest=num_stattest,
            per_column_stattest=per_column_stattest,
            threshold=threshold,
            cat_threshold=cat_threshold,
            num_threshold=num_threshold,
            per_column_threshold=per_column_threshold,
        )
        result = _column(ref_src, cur_src, col, kind, replace(cfg, stattest=method, threshold=col_threshold))
        result.typing_note = types[col].reason or (f"declared {kind}" if types[col].source == "override" else None)
        return result

    if workers > 1 and len(checked) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            results = list(pool.map(run, checked))
    else:
        results = [run(col) for col in checked]
    return DriftResult(
        columns={r.column: r for r in results},
        reference_rows=ref_src.rows,
        current_rows=cur_src.rows,
        seconds=time.perf_counter() - started,
        settings={**asdict(cfg), "workers": workers},
        unchecked={col: str(t.reason) for col, t in types.items() if not t.checked},
        types={col: t.kind for col, t in types.items()},
    )


def sample_rows(data: Any, columns: Sequence[str], rows: int, seed: int = 0, batch_size: int = 1 << 18) -> Any:
    """A uniform random sample of ``rows`` rows (without replacement, fixed ``seed``) of ``columns``, as a
    ``pyarrow.Table``; read one column at a time, so memory is one record batch plus the sample. All rows when the
    data has no more than ``rows``. Same input and seed, same sample (a retried task draws the same rows)."""
    import numpy as np
    import pyarrow as pa

    source = _as_source(data)
    total = source.rows
    rng = np.random.default_rng(seed)
    picks = None if total <= rows else np.sort(rng.choice(total, size=rows, replace=False))
    out = {}
    for col in columns:
        chunks, offset = [], 0
        for arr in source.iter_column(col, batch_size):
            if picks is None:
                chunks.append(arr)
            else:
                lo, hi = np.searchsorted(picks, [offset, offset + len(arr)])
                if hi > lo:
                    chunks.append(arr.take(pa.array(picks[lo:hi] - offset)))
            offset += len(arr)
        out[col] = pa.concat_arrays(chunks) if chunks else pa.array([], type=source.schema.field(col).type)
    return pa.table(out)
