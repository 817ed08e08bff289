"""The engine types columns as plain Evidently 0.7 does (no data definition) and reaches its verdicts.

Plain Evidently here is ``Report([DataDriftPreset()], include_tests=True)`` on ``pyarrow.parquet.read_table(...)
.to_pandas()`` of the same files, with the data definition inferred (``Dataset.from_pandas(df)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlops_airflow.monitoring import column_types as ct
from mlops_airflow.monitoring.drift_engine import DriftEngineError, detect_drift, type_columns
from mlops_airflow.monitoring.verdict import drift_verdict_from_snapshot

pytestmark = pytest.mark.unit


def _table(n: int, shifted: bool, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    s = 1 if shifted else 0
    levels = ["basic", "plus", "pro", "team", "enterprise"]
    return pa.table(
        {
            "amount": rng.gamma(2.0, 10.0 + 1.5 * s, n),  # float: numerical
            "calls": rng.poisson(2.0 + 0.4 * s, n).clip(0, 8).astype("int64"),  # int, <= 10 values: categorical
            "tenure": rng.integers(0, 72 + 12 * s, n).astype("int64"),  # int, many values: numerical
            "tenure_nulls": pa.array(  # int with nulls: pandas float64, numerical
                [None if i % 17 == 0 else int(v) for i, v in enumerate(rng.integers(0, 40, n))], pa.int64()
            ),
            "flag": rng.random(n) < (0.30 + 0.08 * s),  # bool: categorical
            "plan": rng.choice(levels, n, p=[0.4, 0.25, 0.2, 0.1, 0.05] if not s else [0.3, 0.25, 0.25, 0.1, 0.1]),
            "region": pa.array(rng.choice(["north", "south", "east", "west"], n)).dictionary_encode(),  # category
            "note": [f"ticket {seed}-{i}" for i in range(n)],  # free text: > half distinct
            "seen_at": pa.array(np.arange(n, dtype="int64") * 1_000_000, pa.timestamp("us", tz="UTC")),
        }
    )


def _write(tmp_path: Path, n_ref: int, n_cur: int) -> tuple[Path, Path]:
    ref, cur = tmp_path / f"ref_{n_ref}.parquet", tmp_path / f"cur_{n_cur}.parquet"
    pq.write_table(_table(n_ref, False, 1), ref, row_group_size=max(1, n_ref // 3))
    pq.write_table(_table(n_cur, True, 2), cur, row_group_size=max(1, n_cur // 3))
    return ref, cur


def _plain_evidently(ref: Path, cur: Path) -> tuple[dict[str, dict[str, Any]], Any]:
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    current = Dataset.from_pandas(pq.read_table(cur).to_pandas())
    reference = Dataset.from_pandas(pq.read_table(ref).to_pandas())
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current_data=current, reference_data=reference)
    return drift_verdict_from_snapshot(snapshot.dict(), 0.5)["metrics"]["per_column"], current.data_definition


@pytest.mark.parametrize(
    ("n_ref", "n_cur"),
    [(600, 500), (5000, 4000)],  # Evidently's small-reference rule (<= 1000: p-values) and distances above it
)
def test_types_methods_scores_and_verdicts_equal_plain_evidentlys(tmp_path: Path, n_ref: int, n_cur: int) -> None:
    ref, cur = _write(tmp_path, n_ref, n_cur)
    theirs, definition = _plain_evidently(ref, cur)
    result = detect_drift(ref, cur, batch_size=max(1, n_cur // 4))

    assert set(definition.categorical_columns) == {"calls", "flag", "plan", "region"}
    assert set(definition.numerical_columns) == {"amount", "tenure", "tenure_nulls"}
    assert result.types == {
        "amount": "numerical",
        "calls": "categorical",
        "tenure": "numerical",
        "tenure_nulls": "numerical",
        "flag": "categorical",
        "plan": "categorical",
        "region": "categorical",
        "note": "text",
        "seen_at": "datetime",
    }
    compared = set(result.columns)
    assert compared == {"amount", "calls", "tenure", "tenure_nulls", "flag", "plan", "region"}
    for col in compared:
        got, want = result.columns[col], theirs[col]
        assert got.method == want["method"], col
        assert got.score == pytest.approx(want["score"], rel=1e-9, abs=1e-9), col
        assert got.drifted == want["drifted"], col
    small = n_ref <= 1000
    assert result.columns["calls"].method == ("chisquare" if small else "jensenshannon")
    assert result.columns["flag"].method == ("z" if small else "jensenshannon")
    assert result.columns["tenure"].method == ("ks" if small else "wasserstein")
    assert any(r.drifted for r in result.columns.values())
    if not small:  # the p-value tests at 500 rows flag every column of these seeds; the distances do not
        assert not all(r.drifted for r in result.columns.values())

    # No silent skip: what the engine cannot check is named with the reason (Evidently checks "note" as text).
    assert "note" in theirs and "seen_at" not in theirs
    assert set(result.unchecked) == {"note", "seen_at"}
    assert "free text" in result.unchecked["note"] and "engine='evidently'" in result.unchecked["note"]
    assert "datetime" in result.unchecked["seen_at"]


def test_per_column_overrides_resolve_as_in_evidently(tmp_path: Path) -> None:
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = _write(tmp_path, 3000, 2500)
    per_method = {"amount": "psi", "calls": "chisquare"}
    per_threshold = {"amount": 0.2, "tenure": 0.05}
    snapshot = Report(
        [DataDriftPreset(per_column_method=per_method, per_column_threshold=per_threshold, cat_threshold=0.03)],
        include_tests=True,
    ).run(
        current_data=Dataset.from_pandas(pq.read_table(cur).to_pandas()),
        reference_data=Dataset.from_pandas(pq.read_table(ref).to_pandas()),
    )
    theirs = drift_verdict_from_snapshot(snapshot.dict(), 0.5)["metrics"]["per_column"]
    result = detect_drift(
        ref, cur, per_column_stattest=per_method, per_column_threshold=per_threshold, cat_threshold=0.03
    )
    for col, got in result.columns.items():
        want = theirs[col]
        assert (got.method, got.threshold, got.drifted) == (want["method"], want["threshold"], want["drifted"]), col
        assert got.score == pytest.approx(want["score"], rel=1e-9, abs=1e-9), col
    assert result.columns["amount"].threshold == 0.2 and result.columns["plan"].threshold == 0.03


def test_declared_types_and_bad_declarations(tmp_path: Path) -> None:
    ref, cur = _write(tmp_path, 800, 700)
    types = type_columns(ref, cur, ["calls", "note", "flag"], {"calls": "numerical", "note": "categorical"})
    assert (types["calls"].kind, types["calls"].source) == ("numerical", "override")
    assert types["note"].kind == "categorical" and types["note"].checked
    with pytest.raises(DriftEngineError, match=r"column 'plan' is string.*cannot be numerical"):
        type_columns(ref, cur, ["plan"], {"plan": "numerical"})
    with pytest.raises(DriftEngineError, match=r"column_types names columns that are not compared: \['nope'\]"):
        type_columns(ref, cur, ["plan"], {"nope": "categorical"})
    with pytest.raises(DriftEngineError, match=r"per-column stattest/threshold names columns.*\['gone'\]"):
        detect_drift(ref, cur, ["amount"], per_column_threshold={"gone": 0.1})


def test_classify_table() -> None:
    """The rules of ``evidently.core.datasets.infer_column_type`` (0.7.23) on the pandas dtype Arrow gives."""

    def kind(t: Any, nulls: int = 0, count: int = 100, distinct: int | None = None) -> tuple[str, bool]:
        c = ct.classify("c", t, null_count=nulls, count=count, distinct=distinct)
        return c.kind, c.checked

    assert kind(pa.int64(), distinct=10) == ("categorical", True)
    assert kind(pa.int64(), distinct=11) == ("numerical", True)
    assert kind(pa.int32(), nulls=3, distinct=2) == ("numerical", True)  # float64 in pandas
    assert kind(pa.float32()) == ("numerical", True)
    assert kind(pa.bool_()) == ("categorical", True)
    assert kind(pa.string(), distinct=50) == ("categorical", True)
    assert kind(pa.string(), distinct=51) == ("text", False)
    assert kind(pa.dictionary(pa.int8(), pa.string())) == ("categorical", True)
    assert kind(pa.timestamp("ns")) == ("datetime", False)
    assert kind(pa.list_(pa.int64())) == ("unknown", False)
    boolean_with_nulls = ct.classify("b", pa.bool_(), null_count=1, count=9, distinct=None)
    assert boolean_with_nulls.kind == "categorical"
    assert "Evidently 0.7 types it unknown" in str(boolean_with_nulls.reason)


def test_a_categorical_float_drops_nan_and_inf_whatever_the_batch_size() -> None:
    """NaN is not an Arrow null and never equals itself: counted as a value it would count once per batch."""
    ref = {"level": [1.0, 2.0, float("nan"), 2.0, float("inf"), 1.0, 3.0, float("nan")] * 50}
    cur = {"level": [1.0, 2.0, 2.0, float("nan"), 3.0, 3.0, float("-inf"), 1.0] * 40}
    results = [
        detect_drift(ref, cur, column_types={"level": "categorical"}, batch_size=size).columns["level"]
        for size in (3, 1000)
    ]
    assert {r.n_unique for r in results} == {3}
    assert results[0].score == pytest.approx(results[1].score, abs=1e-15)
    assert results[0].reference_count == 250 and results[0].current_count == 240
