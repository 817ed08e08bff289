"""Map-reduce drift, reduce 1: typing, stattest choice and the second pass's edges for every column, and the
certified bracket from counts at edges.

No Airflow import; numpy, scipy and pyarrow are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring import column_types as _ct
from mlops_airflow.monitoring.drift_engine import (
    CATEGORICAL,
    STATTESTS,
    ColumnDrift,
    DriftEngineError,
    default_stattest,
)
from mlops_airflow.monitoring.drift_options import STATTEST_OPTIONS, check_stattest_options, resolve_stattest
from mlops_airflow.monitoring.partition_docs import _SIDES, DISTINCT_LIMIT, FORMAT, _dec, _enc
from mlops_airflow.monitoring.partition_summary import _merge_side, _Merged, _pairs

if TYPE_CHECKING:
    import numpy as np


def plan(
    reference: Iterable[Any],
    current: Iterable[Any],
    columns: Sequence[str] | None = None,
    *,
    column_types: Mapping[str, str] | None = None,
    bins: int = 16_384,
    max_refinements: int = 4,
    refine_splits: int = 32,
    max_edges: int = 1 << 20,
    **options: Any,
) -> dict[str, Any]:
    """Reduce 1: merge the summaries, type the columns, choose the methods, fix the second pass's edges.

    The stattest options are ``detect_drift``'s (``stattest``, ``threshold``, ``cat_stattest``, ``num_stattest``,
    ``per_column_stattest``, ``cat_threshold``, ``num_threshold``, ``per_column_threshold``: see
    ``drift_options``), resolved per column by ``drift_options.resolve_stattest`` as Evidently's
    ``DataDriftPreset`` does, plus the refinement settings ``refine`` uses.

    :param reference: the reference side's summaries (documents, or URIs written by ``save``), one per partition;
        read one at a time.
    :param current: the current side's.
    :param columns: columns to compare; None = every summarised column of the current side also in the reference.
    :param column_types: ``{column: "numerical" | "categorical"}`` declared types; the rest are inferred from the
        merged current side (``column_types.classify``).
    :param bins: edges of the first Wasserstein/KS count round.
    :raises DriftEngineError: a column missing from a partition or a side, a type that differs between partitions
        or sides, an unknown stattest or one that does not apply to the column's type.
    :raises TypeError: an unknown option name.
    """
    check_stattest_options(options)
    options = {name: options.get(name) for name in STATTEST_OPTIONS}
    options["per_column_stattest"] = dict(options["per_column_stattest"] or {})
    options["per_column_threshold"] = dict(options["per_column_threshold"] or {})
    declared = dict(column_types or {})
    wanted = None if columns is None else list(dict.fromkeys(columns))
    ref, ref_keys, _, ref_rows = _merge_side(reference, "reference", wanted)
    cur, cur_keys, cur_order, cur_rows = _merge_side(current, "current", wanted)
    if wanted is None:
        wanted = [c for c in cur_order if c in ref]
    for col in wanted:
        missing = [role for role, side in (("reference", ref), ("current", cur)) if col not in side]
        if missing:
            raise DriftEngineError(f"column {col!r} is missing from the {' and '.join(missing)} data")
    unknown = sorted(set(declared) - set(wanted))
    if unknown:
        raise DriftEngineError(f"column_types names columns that are not compared: {unknown}")
    check_stattest_options(options, wanted)

    out_columns: dict[str, Any] = {}
    unchecked: dict[str, str] = {}
    types: dict[str, str] = {}
    for col in wanted:
        r, c = ref[col], cur[col]
        if r.numeric != c.numeric and "null" not in (r.type_name, c.type_name):
            raise DriftEngineError(
                f"column {col!r} is {r.type_name} in the reference but {c.type_name} in the current data; fix the "
                "producing step's schema"
            )
        distinct = None
        if _ct.needs_distinct(c.type):
            distinct = len(c.counts) if c.counts is not None else DISTINCT_LIMIT + 1
        try:
            typed = _ct.classify(
                col,
                c.type,
                null_count=c.nulls,
                count=c.rows - c.nulls,
                distinct=distinct,
                override=declared.get(col),
            )
        except ValueError as err:
            raise DriftEngineError(str(err)) from err
        types[col] = typed.kind
        if not typed.checked:
            unchecked[col] = str(typed.reason)
            continue
        method, col_threshold = resolve_stattest(col, typed.kind, **options)
        entry = _plan_column(col, typed.kind, r, c, method, col_threshold, bins)
        note = typed.reason or (f"declared {typed.kind}" if typed.source == "override" else None)
        if entry["result"] is not None:
            entry["result"]["typing_note"] = note
        entry["typing_note"] = note
        out_columns[col] = entry

    doc = {
        "format": FORMAT,
        "kind": "plan",
        "round": 0,
        "partitions": {"reference": sorted(ref_keys), "current": sorted(cur_keys)},
        "reference_rows": ref_rows,
        "current_rows": cur_rows,
        "columns": out_columns,
        "unchecked": unchecked,
        "types": types,
        "settings": {
            **options,
            "column_types": declared,
            "bins": bins,
            "max_refinements": max_refinements,
            "refine_splits": refine_splits,
            "max_edges": max_edges,
        },
    }
    doc["needs_count"] = any(e["op"] is not None for e in out_columns.values())
    return doc


def _plan_column(
    col: str, kind: str, r: _Merged, c: _Merged, explicit: str | None, threshold: float | None, bins: int
) -> dict[str, Any]:
    """One column of the plan: method and threshold, and either its result or the counting it needs."""
    import numpy as np

    from mlops_airflow.monitoring.drift_engine import _sturges_edges

    result = ColumnDrift(column=col, kind=kind, passes=1)
    entry: dict[str, Any] = {
        "kind": kind,
        "method": None,  # None with an op: chosen from the counts (a categorical float column with NaN or inf)
        "explicit": explicit,
        "threshold": None,
        "threshold_given": threshold,
        "n": [r.n, c.n],
        "std_reference": r.std(),
        "op": None,  # None (decided) | values | hist | cdf
        "sides": [],
        "edges": None,
        "known_counts": {"reference": None, "current": None},
        "n_unique": None,
        "passes": 1,
        "result": None,
    }
    ref_counts, cur_counts = r.kind_counts(kind), c.kind_counts(kind)
    # A categorical float column drops NaN and +-inf as the engine (and Evidently) does: the summaries' finite
    # counts are its counts.
    n_ref, n_cur = entry["n"]
    result.reference_count, result.current_count = n_ref, n_cur
    empty = [role for role, n in (("reference", n_ref), ("current", n_cur)) if n == 0]
    if empty:
        result.empty_side = " and ".join(empty)
        entry["result"] = result.to_dict()
        return entry

    deferred = False
    if ref_counts is not None and cur_counts is not None:
        union = set(ref_counts) | set(cur_counts)
        result.n_unique = len(union) if kind == CATEGORICAL or len(union) <= DISTINCT_LIMIT else None
    elif kind == CATEGORICAL and explicit is None and n_ref <= 1000 and r.counts is not None and c.counts is not None:
        deferred = True  # chisquare or z hangs on the number of values, which the recount gives
    n_unique = result.n_unique if result.n_unique is not None else DISTINCT_LIMIT + 1
    method = explicit or default_stattest(kind, n_ref, n_unique)
    spec = STATTESTS[method]
    if explicit is not None and kind not in spec.kinds:  # Evidently's own choice may take either
        raise DriftEngineError(
            f"stattest {method!r} does not apply to {kind} column {col!r} (it takes {', '.join(spec.kinds)})"
        )
    result.method, result.threshold = method, spec.default_threshold if threshold is None else float(threshold)
    if not deferred:
        entry["method"], entry["threshold"] = result.method, result.threshold

    if method in ("chisquare", "z") or (method in ("jensenshannon", "psi") and kind == CATEGORICAL):
        sides = [s for s, counts in (("reference", ref_counts), ("current", cur_counts)) if counts is None]
        if not sides:
            _score_from_counts(result, ref_counts, cur_counts, n_ref, n_cur)
            entry["result"] = result.to_dict()
            return entry
        entry.update(op="values", sides=sides)
    elif method in ("jensenshannon", "psi"):  # numerical
        ref_distinct = len(ref_counts) if ref_counts is not None else DISTINCT_LIMIT + 1
        if ref_distinct > 20:
            integer = r.integer and c.integer and not (r.nulls or c.nulls)
            edges = _sturges_edges(r, c, integer)
            entry.update(op="hist", sides=list(_SIDES), edges=_enc(edges))
        elif cur_counts is None:  # few reference values, a continuous current side: count it
            entry.update(op="values", sides=["current"])
        else:
            _score_from_counts(result, ref_counts, cur_counts, n_ref, n_cur)
            entry["result"] = result.to_dict()
            return entry
    elif ref_counts is not None and cur_counts is not None:  # wasserstein / ks on few values: every value an edge
        edges = np.array(sorted(set(ref_counts) | set(cur_counts)), dtype=np.float64)
        entry["edges"] = _enc(edges)
        _bracket_result(result, entry, _atom_counts(edges, ref_counts), _atom_counts(edges, cur_counts))
        entry["edges"] = None
        entry["result"] = result.to_dict()
        return entry
    else:
        edges = _quantile_edges(r, c, ref_counts, cur_counts, bins)
        entry.update(op="cdf", sides=list(_SIDES), edges=_enc(edges))
    if entry["op"] == "values":
        for side, counts in (("reference", ref_counts), ("current", cur_counts)):
            if side not in entry["sides"]:
                entry["known_counts"][side] = _pairs(counts)
    entry["n_unique"] = result.n_unique
    return entry


def _quantile_edges(
    r: _Merged, c: _Merged, ref_counts: Mapping[Any, int] | None, cur_counts: Mapping[Any, int] | None, bins: int
) -> np.ndarray:
    """Equal-mass edges of both sides' merged, weighted samples, plus min, max and any side's (few) values."""
    import numpy as np

    extra = [np.array([min(r.min, c.min), max(r.max, c.max)])]
    for counts in (ref_counts, cur_counts):
        if counts is not None:
            extra.append(np.array(sorted(counts), dtype=np.float64))
    pairs = r.samples + c.samples
    if not pairs:
        return np.unique(np.concatenate(extra))
    values = np.concatenate([v for v, _ in pairs])
    weights = np.concatenate([np.broadcast_to(np.asarray(w, float), v.shape) for v, w in pairs])
    order = np.lexsort((weights, values))
    values, weights = values[order], weights[order]
    cum = np.cumsum(weights)
    targets = np.linspace(0.0, cum[-1], min(bins, values.size) + 1)
    idx = np.minimum(np.searchsorted(cum, targets, side="left"), values.size - 1)
    return np.unique(np.concatenate([values[idx], *extra]))


def _atom_counts(edges: np.ndarray, counts: Mapping[Any, int]) -> np.ndarray:
    """The engine's two counters per edge for a side whose every value is an edge."""
    import numpy as np

    out = np.zeros(2 * edges.size, dtype=np.int64)
    idx = np.searchsorted(edges, np.array(list(counts), dtype=np.float64))
    np.add.at(out, 2 * idx, np.array(list(counts.values()), dtype=np.int64))
    return out


def _score_from_counts(
    result: ColumnDrift, ref_counts: Mapping[Any, int], cur_counts: Mapping[Any, int], n_ref: int, n_cur: int
) -> None:
    from mlops_airflow.monitoring.drift_engine import (
        _aligned,
        _chisquare,
        _jensenshannon,
        _psi,
        _values_histogram,
        _z_test,
    )

    method = result.method
    assert method is not None and result.threshold is not None
    if method == "chisquare":
        result.score = _chisquare(ref_counts, cur_counts, n_ref, n_cur)
    elif method == "z":
        result.score = _z_test(ref_counts, cur_counts, n_ref, n_cur)
    else:
        _, ref_c, cur_c = _aligned(ref_counts, cur_counts)
        ref_pct, cur_pct = ref_c / n_ref, cur_c / n_cur
        result.score = _jensenshannon(ref_pct, cur_pct) if method == "jensenshannon" else _psi(ref_pct, cur_pct)
    result.drifted = STATTESTS[method].drifted(result.score, result.threshold)
    result.histogram = _values_histogram(ref_counts, cur_counts, n_ref, n_cur)


def _at_below(counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(F(e_k), F(e_k-))`` from the two counters per edge (``drift_engine._cdf_at_edges``'s last step)."""
    import numpy as np

    cum = np.cumsum(counts) / n
    return cum[0::2], np.concatenate(([0.0], cum[1:-1:2]))


def _bracket_result(result: ColumnDrift, entry: Mapping[str, Any], f_counts: Any, g_counts: Any) -> Any:
    """A Wasserstein/KS result from the summed counters: the certified ``[score_low, score_high]`` (as
    ``drift_engine._certified`` computes it), the verdict, the display histogram; returns each interval's slack."""
    import numpy as np

    from mlops_airflow.monitoring.drift_engine import _DISPLAY_BINS, _histogram_from_cdf, _interval_bounds, _ks_pvalue

    spec = STATTESTS[entry["method"]]
    threshold = entry["threshold"]
    n_ref, n_cur = entry["n"]
    edges = _dec(entry["edges"])
    f, g = _at_below(f_counts, n_ref), _at_below(g_counts, n_cur)
    lo_k, hi_k = _interval_bounds(f, g)
    if spec.name == "wasserstein":
        norm = max(float(entry["std_reference"]), 0.001)
        widths = np.diff(edges)
        score_low, score_high = float(np.dot(widths, lo_k)) / norm, float(np.dot(widths, hi_k)) / norm
        slack = widths * (hi_k - lo_k)
    else:  # ks: the statistic, then its (decreasing) p-value
        at_edges = float(np.max(np.abs(f[0] - g[0])))
        low, high = at_edges, max(at_edges, float(hi_k.max(initial=0.0)))
        slack = np.maximum(hi_k - at_edges, 0.0)
        score_low, score_high = _ks_pvalue(high, n_ref, n_cur), _ks_pvalue(low, n_ref, n_cur)
    result.score = (score_low + score_high) / 2
    result.exact = score_low == score_high
    result.certain = spec.drifted(score_low, threshold) == spec.drifted(score_high, threshold)
    result.drifted = spec.drifted(result.score, threshold)
    result.score_low, result.score_high = (None, None) if result.exact else (score_low, score_high)
    display = np.linspace(edges[0], edges[-1], _DISPLAY_BINS + 1)
    if entry["op"] is None:  # every value is an edge: the CDFs are step functions known everywhere
        at = np.searchsorted(edges, display, side="right") - 1
        ref_at, cur_at = f[0][at], g[0][at]
    else:  # as the single pass draws a streamed column
        ref_at, cur_at = np.interp(display, edges, f[0]), np.interp(display, edges, g[0])
    result.histogram = _histogram_from_cdf(display, ref_at, cur_at)
    return slack
