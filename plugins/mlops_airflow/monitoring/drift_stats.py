"""The drift engine's statistics: Evidently 0.7's stattests (names, default thresholds, comparisons, automatic
choice), per-side accumulation of one column, and the exact and bounding computations (Wasserstein, KS, chi-square,
Z, Jensen-Shannon, PSI, Sturges histograms, CDF counts at edges), plus the report's display histograms.

Imports numpy, scipy and pyarrow inside functions only, and no Airflow.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.drift_sources import CATEGORICAL, NUMERICAL
from mlops_airflow.monitoring.moments import _Moments

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: Distinct values tracked per side before a numerical column counts as continuous (Evidently needs <= 5 for its
#: method choice and <= 20 for the keys-based binning of psi/jensenshannon).
_DISTINCT_LIMIT = 21
_SAMPLE_TARGET = 1 << 18


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


# -- per-side accumulation ---------------------------------------------------------------------------------------


class _Side(_Moments):
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
        x = _finite_values(arr)
        if x.size == 0:
            return
        self._add_finite(x, sample=self.values is None)
        if self.counts is not None:
            self._update_counts(_finite_arrow(arr))
        if self.values is not None:
            self.values.append(x)

    def _update_counts(self, arr: pa.Array, limit: int | None = _DISTINCT_LIMIT) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if self.kind == CATEGORICAL:
            # Evidently drops NaN and +-inf of every column first; NaN is not an Arrow null (and never equals
            # itself, so it would count once per batch).
            arr = _finite_arrow(arr) if pa.types.is_floating(arr.type) else arr.drop_null()
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
