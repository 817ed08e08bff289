"""Drift as map-reduce over partitions: the same verdict as the single pass (``detect_drift``), column by column.

The data is split into partitions of unequal sizes (one of them empty); small ``bins`` and ``sample_size`` force
the bounded (streamed) Wasserstein/KS path and its refinement rounds at these sizes. Counts-based tests must give
the single pass's score; Wasserstein/KS an interval that holds the single pass's exact score, with the same
verdict, made sure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlops_airflow.monitoring.drift_engine import DriftEngineError, DriftResult, detect_drift
from mlops_airflow.monitoring.drift_partitions import (
    count,
    detect_drift_partitioned,
    finish,
    load,
    plan,
    refine,
    save,
    split_partitions,
    summarize,
)

pytestmark = pytest.mark.unit

BOUNDED = ("wasserstein", "ks")


def _data(n: int, drift: bool, seed: int) -> dict[str, Any]:
    """Continuous (shifts near the 0.1 threshold), integers with many and few values, binary, 4 float levels,
    NaN/inf/nulls, booleans, strings."""
    rng = np.random.default_rng(seed)
    s = 1 if drift else 0
    d: dict[str, Any] = {}
    for i, shift in enumerate([0.0, 0.05, 0.095, 0.105, 0.3]):
        d[f"shift_{i}"] = rng.normal(50 + 10 * shift * s, 10, n)
    d["gamma"] = rng.gamma(2, 1 + 0.1 * s, n)
    d["counts"] = rng.poisson(20 + s, n)  # int64, many values: numerical
    d["few_ints"] = rng.integers(0, 4, n) + (rng.random(n) < 0.1 * s)  # int64, <= 10 values: categorical
    d["binary"] = (rng.random(n) < 0.3 + 0.05 * s).astype("int64")
    d["levels"] = rng.choice([1.0, 2.0, 3.0, 4.0], n, p=[0.4, 0.3, 0.2, 0.1])  # float: numerical, few values
    x = rng.normal(0.1 * s, 1, n)
    x[rng.random(n) < 0.1] = np.nan
    x[:3] = np.inf
    d["with_nan"] = x
    d["plan"] = rng.choice(["a", "b", "c", "d"], n, p=[0.34, 0.3, 0.26, 0.1] if s else [0.4, 0.3, 0.2, 0.1])
    d["flag"] = rng.random(n) < (0.45 if s else 0.5)
    return d


def _split(data: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    assert sum(sizes) == len(next(iter(data.values())))
    out, start = [], 0
    for size in sizes:
        out.append({c: v[start : start + size] for c, v in data.items()})
        start += size
    return out


def _sizes(n: int, shares: list[float]) -> list[int]:
    sizes = [int(n * s) for s in shares]
    sizes[-1] += n - sum(sizes)
    return sizes


def _assert_same_verdict(part: DriftResult, single: DriftResult) -> None:
    assert set(part.columns) == set(single.columns)
    assert part.unchecked == single.unchecked and part.types == single.types
    for col, want in single.columns.items():
        got = part.columns[col]
        assert (got.kind, got.method, got.threshold) == (want.kind, want.method, want.threshold), col
        assert (got.reference_count, got.current_count, got.empty_side) == (
            want.reference_count,
            want.current_count,
            want.empty_side,
        ), col
        assert got.drifted == want.drifted and got.certain, col
        if want.score is None:
            assert got.score is None, col
            continue
        if got.method in BOUNDED and not got.exact:
            tol = 1e-12 * max(1.0, abs(want.score))
            assert got.score_low - tol <= want.score <= got.score_high + tol, (col, got, want.score)
        elif got.method in BOUNDED:
            assert got.score == pytest.approx(want.score, rel=1e-9, abs=1e-12), col
        else:
            assert got.exact and got.n_unique == want.n_unique, col
            assert got.score == pytest.approx(want.score, rel=0, abs=1e-12), col


@pytest.mark.parametrize(("n_ref", "n_cur"), [(6000, 4000), (800, 700)])
def test_partitioned_verdict_equals_the_single_pass(n_ref: int, n_cur: int) -> None:
    ref, cur = _data(n_ref, False, 1), _data(n_cur, True, 2)
    single = detect_drift(ref, cur)
    ref_parts = _split(ref, _sizes(n_ref, [0.5, 0.2, 0.3]))
    cur_parts = _split(cur, _sizes(n_cur, [0.1, 0.0, 0.35, 0.05, 0.5]))  # one empty partition
    part = detect_drift_partitioned(ref_parts, cur_parts, bins=64, sample_size=256, batch_size=500)

    _assert_same_verdict(part, single)
    bounded = [r for r in part.columns.values() if r.method in BOUNDED]
    assert bounded and all(not r.exact for r in bounded if r.column.startswith("shift"))
    assert max(r.passes for r in bounded) > 2, "64 edges must need a refinement round near the threshold"
    assert part.settings["partitions"] == {"reference": 3, "current": 5}
    assert part.reference_rows == n_ref and part.current_rows == n_cur
    assert {r.method for r in part.columns.values()} >= (
        {"wasserstein", "jensenshannon"} if n_ref > 1000 else {"ks", "chisquare", "z"}
    )
    assert part.columns["few_ints"].kind == "categorical" and part.columns["counts"].kind == "numerical"
    for r in part.columns.values():  # the report's picture, as the single pass draws it
        assert r.histogram is not None and r.histogram["kind"] == single.columns[r.column].histogram["kind"]


def test_many_edges_give_the_exact_score() -> None:
    """Every value in the sample and ``bins`` above the number of values: the interval closes on the exact score."""
    ref, cur = _data(900, False, 3), _data(700, True, 4)
    single = detect_drift(ref, cur)
    part = detect_drift_partitioned(_split(ref, [300, 600]), _split(cur, [100, 250, 350]), bins=16_384)
    _assert_same_verdict(part, single)
    assert all(r.exact for r in part.columns.values())


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "ks"])
def test_explicit_stattest_matches_the_single_pass(method: str) -> None:
    """Sturges histograms (integer bins too), a continuous current side against few reference values (a recount of
    the current side), categorical columns with a distance."""
    ref, cur = _data(3000, False, 5), _data(2000, True, 6)
    rng = np.random.default_rng(0)
    ref["few_then_many"] = rng.choice([0.0, 1.0, 2.0], 3000)
    cur["few_then_many"] = rng.normal(1, 1, 2000)
    if method == "ks":  # numerical only
        for col in ("plan", "flag", "few_ints", "binary"):
            ref.pop(col), cur.pop(col)
    single = detect_drift(ref, cur, stattest=method)
    part = detect_drift_partitioned(
        _split(ref, [1000, 0, 1500, 500]), _split(cur, [700, 1300]), stattest=method, bins=128, sample_size=300
    )
    _assert_same_verdict(part, single)
    assert {r.method for r in part.columns.values()} == {method}
    if method != "ks":
        assert part.columns["few_then_many"].passes == 2 and part.columns["gamma"].histogram["kind"] == "bins"


def test_per_column_and_per_type_options_resolve_as_the_single_pass() -> None:
    ref, cur = _data(3000, False, 7), _data(2500, True, 8)
    options: dict[str, Any] = {
        "num_stattest": "ks",
        "cat_threshold": 0.02,
        "per_column_stattest": {"shift_3": "psi", "plan": "chisquare"},
        "per_column_threshold": {"shift_4": 0.5},
        "column_types": {"levels": "categorical", "counts": "categorical"},
    }
    single = detect_drift(ref, cur, **options)
    part = detect_drift_partitioned(_split(ref, [1200, 1800]), _split(cur, [500, 900, 1100]), bins=64, **options)
    _assert_same_verdict(part, single)
    assert part.columns["shift_3"].method == "psi" and part.columns["shift_4"].threshold == 0.5
    assert part.columns["counts"].typing_note == single.columns["counts"].typing_note == "declared categorical"

    with pytest.raises(DriftEngineError, match=r"stattest 'anderson' is not implemented"):
        detect_drift_partitioned([ref], [cur], stattest="anderson")
    with pytest.raises(DriftEngineError, match=r"stattest 'chisquare' does not apply to numerical column 'gamma'"):
        detect_drift_partitioned([ref], [cur], ["gamma"], stattest="chisquare")
    with pytest.raises(DriftEngineError, match=r"per-column stattest/threshold names columns that are not compared"):
        detect_drift_partitioned([ref], [cur], ["gamma"], per_column_stattest={"nope": "ks"})


def test_categorical_integers_whose_reference_has_many_values_are_counted_again() -> None:
    """Typed on the current side (8 values: categorical) while the reference has 30: its summary stopped counting,
    the second round counts all of its values. A float column with NaN declared categorical drops NaN and inf,
    as the single pass does."""
    rng = np.random.default_rng(9)
    ref = {"code": rng.integers(0, 30, 900), "f": rng.choice([1.0, 2.0, np.nan], 900)}
    cur = {"code": rng.integers(0, 8, 700), "f": rng.choice([1.0, 2.0, np.nan, np.inf], 700)}
    single = detect_drift(ref, cur, column_types={"f": "categorical"})
    part = detect_drift_partitioned(
        _split(ref, [200, 300, 400]), _split(cur, [350, 350]), column_types={"f": "categorical"}
    )
    _assert_same_verdict(part, single)
    assert part.columns["code"].kind == "categorical" and part.columns["code"].n_unique == 30
    assert part.columns["code"].passes == 2 and part.columns["code"].method == "chisquare"


def test_text_unknown_and_empty_columns_are_named() -> None:
    rng = np.random.default_rng(10)
    n = 2000
    ref = {
        "note": np.array([f"id-{i}" for i in range(n)]),
        "when": pa.array(np.arange(n).astype("datetime64[s]")),
        "gone": np.full(n, np.nan),
        "x": rng.normal(0, 1, n),
    }
    cur = {k: v for k, v in ref.items()}
    cur["note"] = np.array([f"id-{i + n}" for i in range(n)])
    single = detect_drift(ref, cur)
    part = detect_drift_partitioned(_split(ref, [500, 1500]), _split(cur, [1000, 1000]), bins=64)
    _assert_same_verdict(part, single)
    assert set(part.unchecked) == {"note", "when"} and "free text" in part.unchecked["note"]
    assert part.types["when"] == "datetime" and part.columns["gone"].empty_side == "reference and current"


def test_a_partition_lacking_a_column_is_named() -> None:
    ref = {"x": np.arange(3000.0), "y": np.ones(3000)}
    cur_ok = {"x": np.arange(1000.0), "y": np.ones(1000)}
    cur_bad = {"x": np.arange(500.0)}
    with pytest.raises(DriftEngineError, match=r"column\(s\) \['y'\] missing from the current partition 'memory:"):
        summarize(cur_bad, ["x", "y"], "current")
    ref_s = [summarize(ref, None, "reference")]
    cur_s = [summarize(cur_ok, None, "current"), summarize(cur_bad, None, "current")]
    with pytest.raises(DriftEngineError, match=r"column 'y' is missing from the current partition\(s\) \['memory:"):
        plan(ref_s, cur_s)
    with pytest.raises(DriftEngineError, match=r"column 'y' is missing from the current partition 'memory:"):
        plan(ref_s, cur_s, ["x", "y"])
    with pytest.raises(DriftEngineError, match=r"a current summary of partition .* was passed as reference data"):
        plan(cur_s, ref_s)
    with pytest.raises(DriftEngineError, match=r"partitions summarised more than once"):
        plan(ref_s + ref_s, cur_s[:1])
    narrow = {"x": np.arange(500.0, dtype=np.float32), "y": np.ones(500, dtype=np.float32)}
    assert plan(ref_s, [cur_s[0], summarize(narrow, None, "current")])["columns"]["x"]["n"] == [3000, 1500]
    mixed = {"x": np.array(["a"] * 500), "y": np.ones(500)}
    with pytest.raises(DriftEngineError, match=r"column 'x' is string in the current partition .* but double"):
        plan(ref_s, [cur_s[0], summarize(mixed, None, "current")])


def test_merging_is_independent_of_the_order_of_the_partitions() -> None:
    ref, cur = _data(5000, False, 11), _data(4000, True, 12)
    ref_parts = _split(ref, [400, 2600, 1200, 800])
    cur_parts = _split(cur, [1500, 100, 2400])
    ref_s = [summarize(p, None, "reference", sample_size=200) for p in ref_parts]
    cur_s = [summarize(p, None, "current", sample_size=200) for p in cur_parts]
    a = plan(ref_s, cur_s, bins=64)
    b = plan(ref_s[::-1], [cur_s[1], cur_s[2], cur_s[0]], bins=64)
    for col, entry in a["columns"].items():
        other = b["columns"][col]
        assert (entry["edges"], entry["std_reference"], entry["n"]) == (
            other["edges"],
            other["std_reference"],
            other["n"],
        ), col
    result_a = finish(a, [count(p, a, "reference") for p in ref_parts], [count(p, a, "current") for p in cur_parts])
    result_b = finish(
        b, [count(p, b, "reference") for p in ref_parts[::-1]], [count(p, b, "current") for p in cur_parts[::-1]]
    )
    for col, r in result_a.columns.items():
        other = result_b.columns[col]
        assert (r.method, r.drifted, r.certain, r.exact) == (other.method, other.drifted, other.certain, other.exact)
        for field in ("score", "score_low", "score_high"):
            x, y = getattr(r, field), getattr(other, field)
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-12, abs=1e-15), (col, field)


def _write(path: Path, data: dict[str, Any], row_group: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path, row_group_size=row_group)


def test_parquet_row_group_partitions_through_saved_documents(tmp_path: Path, s3_store) -> None:
    """The rounds as Airflow runs them: partition specs from the footers, every document behind a URI."""
    rng = np.random.default_rng(13)
    for day in range(3):
        n = 3000 + 1000 * day
        _write(
            tmp_path / "ref" / f"day={day}.parquet",
            {"x": rng.normal(0, 1, n), "k": rng.integers(0, 50, n), "s": rng.choice(["a", "b"], n)},
            1000,
        )
    _write(
        tmp_path / "cur" / "part-0.parquet",
        {"x": rng.normal(0.12, 1, 4500), "k": rng.integers(0, 52, 4500), "s": rng.choice(["a", "b"], 4500)},
        700,
    )
    _write(
        tmp_path / "cur" / "part-1.parquet",
        {"x": rng.normal(0.12, 1, 10), "k": rng.integers(0, 52, 10), "s": rng.choice(["a", "b"], 10)},
        700,
    )
    ref_parts = split_partitions(tmp_path / "ref", 2500)
    cur_parts = split_partitions(str(tmp_path / "cur"), 2000)
    assert sum(p["rows"] for p in ref_parts) == 12_000 and len(ref_parts) == 5
    assert [p["row_groups"] for p in cur_parts] == [[0, 3], [3, 6], [6, 7], [0, 1]]
    json.dumps(ref_parts)  # what .expand() gets

    work = tmp_path / "docs"
    ref_s = [
        save(summarize(p, ["x", "k", "s"], "reference", sample_size=100), work / f"ref-{i}.json")
        for i, p in enumerate(ref_parts)
    ]
    cur_s = [
        save(summarize(p, ["x", "k", "s"], "current", sample_size=100), f"{s3_store.root}/drift/cur-{i}.json.gz")
        for i, p in enumerate(cur_parts)
    ]
    uri = save(plan(ref_s, cur_s, bins=32), work / "plan-0.json.gz")
    rounds = 0
    while load(uri)["needs_count"]:
        ref_c = [
            save(count(p, uri, "reference"), work / f"ref-count-{rounds}-{i}.json") for i, p in enumerate(ref_parts)
        ]
        cur_c = [save(count(p, uri, "current"), work / f"cur-count-{rounds}-{i}.json") for i, p in enumerate(cur_parts)]
        if rounds == 0:
            with pytest.raises(DriftEngineError, match=r"do not cover the plan's partitions once: missing \["):
                finish(uri, ref_c[1:], cur_c)
            with pytest.raises(DriftEngineError, match=r"not one the plan was made from"):
                count({"path": cur_parts[0]["path"], "row_groups": [0, 1]}, uri, "current")
        rounds += 1
        uri = save(refine(uri, ref_c, cur_c), work / f"plan-{rounds}.json")
    part = finish(uri)
    assert rounds >= 1 and not list(work.glob(".*.tmp"))
    assert s3_store.keys("drift/") == [f"drift/cur-{i}.json.gz" for i in range(len(cur_parts))]

    single = detect_drift(tmp_path / "ref", tmp_path / "cur", ["x", "k", "s"])
    _assert_same_verdict(part, single)
    assert part.columns["x"].drifted and part.columns["x"].method == "wasserstein"
    assert part.current_rows == 4510 and part.settings["partitions"] == {"reference": 5, "current": 4}
