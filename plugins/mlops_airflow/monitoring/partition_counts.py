"""Map-reduce drift, round 2 and reduce 2: per-partition counts for the plan, refinement, and the verdict.

No Airflow import; numpy, scipy and pyarrow are imported inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.drift_engine import (
    CATEGORICAL,
    NUMERICAL,
    STATTESTS,
    ColumnDrift,
    DriftEngineError,
    DriftResult,
    default_stattest,
)
from mlops_airflow.monitoring.partition_docs import (
    _SIDES,
    DISTINCT_LIMIT,
    FORMAT,
    _dec,
    _enc,
    _expect,
    load,
    open_partition,
)
from mlops_airflow.monitoring.partition_plan import _bracket_result, _score_from_counts
from mlops_airflow.monitoring.partition_summary import _pairs, _unpairs

if TYPE_CHECKING:
    pass


# -- round 2: counts -----------------------------------------------------------------------------------------------

_NAN = float("nan")


def _add_value_counts(counts: dict[Any, int], pairs: Iterable[Sequence[Any]]) -> None:
    """Add ``[value, count]`` pairs; every NaN is one key (NaN != NaN would make one key per batch)."""
    for key, value in pairs:
        k = _NAN if isinstance(key, float) and key != key else key
        counts[k] = counts.get(k, 0) + int(value)


def count(source: Any, plan: Any, side: str, *, batch_size: int = 1 << 18) -> dict[str, Any]:
    """Round 2 map (and every refinement round): the counts the plan asks of one partition of one side.

    Sturges histograms (``hist``), the engine's two counters per edge (``cdf``) or value counts (``values``: the
    finite values of a numerical column, the non-null values of a categorical one). A partition the plan has
    nothing to count for returns at once.

    :param source: the partition spec, as given to ``summarize``.
    :param plan: the plan document (or its URI) of this round.
    :raises DriftEngineError: the partition is not one the plan was made from, lacks a column, or holds values
        outside the plan's range (it changed after it was summarised).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops_airflow.monitoring.drift_engine import _finite_arrow, _finite_values, _release_arrow_memory

    started = time.perf_counter()
    if side not in _SIDES:
        raise ValueError(f"side must be 'reference' or 'current', got {side!r}")
    doc = load(plan)
    _expect(doc, "plan")
    jobs = {col: e for col, e in doc["columns"].items() if e["op"] is not None and side in e["sides"]}
    src, key = open_partition(source)
    if key not in doc["partitions"][side]:
        raise DriftEngineError(f"{side} partition {key!r} is not one the plan was made from")
    out: dict[str, Any] = {}
    for col, entry in jobs.items():
        if col not in src.schema.names:
            raise DriftEngineError(f"column {col!r} is missing from the {side} partition {key!r}")
        op, n = entry["op"], 0
        if op == "values":
            counts: dict[Any, int] = {}
            for arr in src.iter_column(col, batch_size):
                if entry["kind"] == NUMERICAL:
                    arr = _finite_arrow(arr)
                else:
                    if pa.types.is_dictionary(arr.type):
                        arr = arr.dictionary_decode()
                    arr = _finite_arrow(arr) if pa.types.is_floating(arr.type) else arr.drop_null()
                n += len(arr)
                if len(arr):
                    vc = pc.value_counts(arr)
                    _add_value_counts(
                        counts, zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
                    )
            out[col] = {"op": op, "n": n, "counts": _pairs(counts)}
        else:
            edges = _dec(entry["edges"])
            size = edges.size - 1 if op == "hist" else 2 * edges.size
            acc = np.zeros(size, dtype=np.int64)
            for arr in src.iter_column(col, batch_size):
                x = _finite_values(arr)
                if x.size == 0:
                    continue
                n += x.size
                if op == "hist":
                    acc += np.histogram(x, edges)[0]
                    continue
                if float(x.min()) < edges[0] or float(x.max()) > edges[-1]:
                    raise DriftEngineError(
                        f"column {col!r} of the {side} partition {key!r} has values outside the plan's "
                        f"[{edges[0]!r}, {edges[-1]!r}]: the data changed after it was summarised"
                    )
                # drift_engine._cdf_at_edges: a value equal to e_k counts at 2k, one inside (e_k-1, e_k) at 2k - 1.
                idx = np.searchsorted(edges, x, side="left")
                acc += np.bincount(2 * idx - (edges[idx] != x), minlength=size)
            out[col] = {"op": op, "n": n, "counts": _enc(acc)}
        _release_arrow_memory()
    return {
        "format": FORMAT,
        "kind": "counts",
        "side": side,
        "partition": key,
        "round": doc["round"],
        "columns": out,
        "seconds": time.perf_counter() - started,
    }


# -- reduce 2: finish (and refine) ---------------------------------------------------------------------------------


def _sum_counts(plan_doc: Mapping[str, Any], docs: Iterable[Any], side: str) -> dict[str, Any]:
    """Add up one side's counts documents, one at a time; check that they cover the plan's partitions once."""
    sums: dict[str, Any] = {}
    keys: list[str] = []
    for item in docs:
        doc = load(item)
        _expect(doc, "counts", side)
        if doc["round"] != plan_doc["round"]:
            raise DriftEngineError(
                f"counts of the {side} partition {doc['partition']!r} are of round {doc['round']}, the plan is of "
                f"round {plan_doc['round']}"
            )
        keys.append(doc["partition"])
        for col, part in doc["columns"].items():
            acc = sums.setdefault(col, {"n": 0, "counts": None})
            acc["n"] += int(part["n"])
            if part["op"] == "values":
                if acc["counts"] is None:
                    acc["counts"] = {}
                _add_value_counts(acc["counts"], part["counts"])
            else:
                arr = _dec(part["counts"])
                acc["counts"] = arr if acc["counts"] is None else acc["counts"] + arr
        del doc
    expected = sorted(plan_doc["partitions"][side])
    if sorted(keys) != expected:
        lacking = sorted(set(expected) - set(keys))
        extra = sorted({k for k in keys if keys.count(k) > 1} | (set(keys) - set(expected)))
        raise DriftEngineError(
            f"the {side} counts of round {plan_doc['round']} do not cover the plan's partitions once: "
            f"missing {lacking}, unexpected or repeated {extra}"
        )
    return sums


def _resolve(
    plan_doc: Mapping[str, Any], reference_counts: Iterable[Any], current_counts: Iterable[Any]
) -> tuple[dict[str, ColumnDrift], dict[str, Any]]:
    """Every column's result from this round's counts, and the per-interval slack of the Wasserstein/KS ones."""
    from mlops_airflow.monitoring.drift_engine import _bins_histogram, _jensenshannon, _psi

    needs = bool(plan_doc.get("needs_count"))
    ref_sums = _sum_counts(plan_doc, reference_counts, "reference") if needs else {}
    cur_sums = _sum_counts(plan_doc, current_counts, "current") if needs else {}
    results: dict[str, ColumnDrift] = {}
    slacks: dict[str, Any] = {}
    for col, entry in plan_doc["columns"].items():
        if entry["result"] is not None:
            results[col] = ColumnDrift(**entry["result"])
            continue
        n_ref, n_cur = entry["n"]
        result = ColumnDrift(
            column=col,
            kind=entry["kind"],
            method=entry["method"],
            threshold=entry["threshold"],
            reference_count=n_ref,
            current_count=n_cur,
            n_unique=entry["n_unique"],
            passes=int(entry["passes"]) + 1,
            typing_note=entry.get("typing_note"),
        )
        got: dict[str, Any] = {}
        for side, sums, n in (("reference", ref_sums, n_ref), ("current", cur_sums, n_cur)):
            if side not in entry["sides"]:
                continue
            if col not in sums:
                raise DriftEngineError(f"no {side} counts for column {col!r} in round {plan_doc['round']}")
            if sums[col]["n"] != n:
                raise DriftEngineError(
                    f"column {col!r}: the {side} counts hold {sums[col]['n']:,} values, the summaries {n:,}: the data "
                    "changed between the rounds"
                )
            got[side] = sums[col]["counts"]
        op = entry["op"]
        if op == "values":
            numerical = entry["kind"] == NUMERICAL
            sides = []
            for side in _SIDES:
                counts = got.get(side)
                if counts is None:
                    counts = _unpairs(entry["known_counts"][side], numerical)
                elif numerical:
                    counts = _unpairs(counts.items(), True)
                sides.append(counts)
            ref_c, cur_c = sides
            if entry["kind"] == CATEGORICAL:
                result.n_unique = len(set(ref_c) | set(cur_c))
            if result.method is None:  # deferred: the automatic choice needed the number of values
                result.method = default_stattest(entry["kind"], n_ref, result.n_unique or DISTINCT_LIMIT + 1)
                given = entry["threshold_given"]
                result.threshold = STATTESTS[result.method].default_threshold if given is None else float(given)
            _score_from_counts(result, ref_c, cur_c, n_ref, n_cur)
        elif op == "hist":
            ref_pct, cur_pct = got["reference"] / n_ref, got["current"] / n_cur
            fn = _jensenshannon if entry["method"] == "jensenshannon" else _psi
            result.score = fn(ref_pct, cur_pct)
            result.drifted = STATTESTS[entry["method"]].drifted(result.score, entry["threshold"])
            result.histogram = _bins_histogram(_dec(entry["edges"]), ref_pct, cur_pct)
        else:
            slacks[col] = _bracket_result(result, entry, got["reference"], got["current"])
        results[col] = result
    return results, slacks


def _decided(entry: Mapping[str, Any], result: ColumnDrift) -> dict[str, Any]:
    return {
        **entry,
        "op": None,
        "sides": [],
        "edges": None,
        "known_counts": {"reference": None, "current": None},
        "result": result.to_dict(),
    }


def refine(plan: Any, reference_counts: Iterable[Any], current_counts: Iterable[Any]) -> dict[str, Any]:
    """A refinement round: the next plan, in which every column this round decides is finished and each
    Wasserstein/KS column whose interval still holds the threshold gets the intervals that carry its slack split
    (``refine_splits`` parts, the largest first within ``max_edges``), as the single pass refines.

    When the returned plan's ``needs_count`` is False nothing is left to count and ``finish(next_plan)`` gives the
    result (a DAG with a fixed number of rounds can run them all: count tasks of such a plan return at once).
    Otherwise count every partition again with it. After ``max_refinements`` rounds every column is decided.
    """
    import numpy as np

    doc = load(plan)
    _expect(doc, "plan")
    results, slacks = _resolve(doc, reference_counts, current_counts)
    settings = doc["settings"]
    splits, max_edges = int(settings["refine_splits"]), int(settings["max_edges"])
    next_round = int(doc["round"]) + 1
    columns: dict[str, Any] = {}
    for col, entry in doc["columns"].items():
        result, slack = results[col], slacks.get(col)
        if slack is None or result.certain or next_round > int(settings["max_refinements"]):
            columns[col] = _decided(entry, result)
            continue
        edges = _dec(entry["edges"])
        budget = max(0, max_edges - edges.size) // (splits - 1)
        order = np.flatnonzero(slack > 0)
        if budget == 0 or order.size == 0:
            columns[col] = _decided(entry, result)
            continue
        if order.size > budget:
            order = order[np.argpartition(slack[order], order.size - budget)[order.size - budget :]]
        parts = np.linspace(0.0, 1.0, splits + 1)[1:-1]
        inner = (edges[order, None] + np.diff(edges)[order, None] * parts[None, :]).ravel()
        columns[col] = {**entry, "edges": _enc(np.unique(np.concatenate((edges, inner)))), "passes": result.passes}
    out = {**doc, "round": next_round, "columns": columns}
    out["needs_count"] = any(e["op"] is not None for e in columns.values())
    return out


def finish(plan: Any, reference_counts: Iterable[Any] = (), current_counts: Iterable[Any] = ()) -> DriftResult:
    """Reduce 2: the drift result from the plan and this round's counts of every partition of both sides.

    Counts-based tests are exact; a Wasserstein/KS column carries the certified interval (``certain`` when the
    threshold lies outside it, else decided on the midpoint, as the single pass after its refinements).

    :param plan: the plan (or its URI) the counts were made with; a plan from ``refine`` without ``needs_count``
        needs no counts.
    :param reference_counts: the reference side's counts documents (or URIs), one per partition, read one at a
        time; likewise ``current_counts``.
    """
    started = time.perf_counter()
    doc = load(plan)
    _expect(doc, "plan")
    results, _ = _resolve(doc, reference_counts, current_counts)
    settings = {
        **doc["settings"],
        "mode": "partitioned",
        "count_rounds": int(doc["round"]) + (1 if doc["needs_count"] else 0),
        "partitions": {side: len(doc["partitions"][side]) for side in _SIDES},
    }
    return DriftResult(
        columns=results,
        reference_rows=int(doc["reference_rows"]),
        current_rows=int(doc["current_rows"]),
        seconds=time.perf_counter() - started,
        settings=settings,
        unchecked=dict(doc["unchecked"]),
        types=dict(doc["types"]),
    )
