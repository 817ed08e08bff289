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

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.column_types import type_columns  # noqa: F401 - re-exported
from mlops_airflow.monitoring.drift_options import check_stattest_options, resolve_stattest  # noqa: F401
from mlops_airflow.monitoring.drift_sources import (  # noqa: F401 - re-exported: the engine's public names
    CATEGORICAL,
    NUMERICAL,
    ArraySource,
    DriftEngineError,
    ParquetSource,
    _as_source,
    column_kind,
    sample_rows,
)
from mlops_airflow.monitoring.drift_stats import (  # noqa: F401 - re-exported for the partitioned engine
    _DISPLAY_BINS,
    _DISTINCT_LIMIT,
    _SAMPLE_TARGET,
    STATTESTS,
    StatTestSpec,
    _add_counts,
    _aligned,
    _bins_histogram,
    _cdf_at_edges,
    _chisquare,
    _finite_arrow,
    _finite_values,
    _histogram,
    _histogram_from_cdf,
    _interval_bounds,
    _jensenshannon,
    _ks_pvalue,
    _psi,
    _read_side,
    _Side,
    _sturges_edges,
    _values_histogram,
    _wasserstein_merged,
    _z_test,
    default_stattest,
)

if TYPE_CHECKING:
    pass


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
    options = {
        "stattest": stattest,
        "cat_stattest": cat_stattest,
        "num_stattest": num_stattest,
        "per_column_stattest": per_column_stattest,
        "threshold": threshold,
        "cat_threshold": cat_threshold,
        "num_threshold": num_threshold,
        "per_column_threshold": per_column_threshold,
    }
    check_stattest_options(options)
    ref_src, cur_src = _as_source(reference), _as_source(current)
    types = type_columns(ref_src, cur_src, columns, column_types, batch_size)
    check_stattest_options(options, types)
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
        method, col_threshold = resolve_stattest(col, kind, **options)
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
