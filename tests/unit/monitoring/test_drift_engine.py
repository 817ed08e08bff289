"""The fast drift engine against plain Evidently 0.7 (no mocks): same method, score and verdict per column.

Evidently runs on the same pandas data through ``Report([DataDriftPreset(...)])`` and its snapshot is read with the
operator's own parser. The streamed (bounded) path is checked against the engine's exact path on data large enough
to need it, with a few edges so that refinement passes are exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlops_airflow.monitoring.drift_engine import (
    STATTESTS,
    ArraySource,
    DriftEngineError,
    ParquetSource,
    default_stattest,
    detect_drift,
    sample_rows,
)
from mlops_airflow.operators.monitoring import drift_verdict_from_snapshot

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def _frames(n_ref: int, n_cur: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numeric (continuous, shifted near the 0.1 threshold, integer, binary, 4 levels, NaN/inf) and categorical."""
    rng = np.random.default_rng(seed)

    def make(n: int, s: int) -> pd.DataFrame:
        d: dict[str, Any] = {}
        for i, shift in enumerate([0.0, 0.05, 0.095, 0.105, 0.3]):
            d[f"shift_{i}"] = rng.normal(50 + 10 * shift * s, 10, n)
        d["gamma"] = rng.gamma(2, 1 + 0.1 * s, n)
        d["counts"] = rng.poisson(3 + s, n)  # int64, > 5 values
        d["binary"] = (rng.random(n) < 0.3 + 0.05 * s).astype("int64")
        d["four"] = rng.integers(0, 4, n).astype(float) + (rng.random(n) < 0.1 * s)
        x = rng.normal(0.1 * s, 1, n)
        x[rng.random(n) < 0.1] = np.nan
        x[:3] = np.inf
        d["with_nan"] = x
        d["plan"] = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1] if not s else [0.34, 0.3, 0.26, 0.1])
        d["flag"] = rng.random(n) < (0.5 if not s else 0.45)
        return pd.DataFrame(d)

    return make(n_ref, 0), make(n_cur, 1)


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, method: str | None = None) -> dict[str, dict[str, Any]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    num = [c for c in ref.columns if is_numeric_dtype(ref[c]) and not is_bool_dtype(ref[c])]
    definition = DataDefinition(numerical_columns=num, categorical_columns=[c for c in ref.columns if c not in num])
    snapshot = Report([DataDriftPreset(columns=list(ref.columns), method=method)], include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    return drift_verdict_from_snapshot(snapshot.dict(), 0.5)["metrics"]["per_column"]


def _columns(df: pd.DataFrame) -> dict[str, Any]:
    return {c: df[c].to_numpy() for c in df.columns}


def _declared(df: pd.DataFrame) -> dict[str, str]:
    """The types ``_evidently`` declares (numeric dtypes numerical, the rest categorical), for the engine."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return {
        c: "numerical" if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c]) else "categorical" for c in df.columns
    }


def _assert_same(ours: dict[str, Any], theirs: dict[str, dict[str, Any]]) -> None:
    assert set(ours) == set(theirs)
    for col, expected in theirs.items():
        got = ours[col]
        assert got.method == expected["method"], col
        assert got.score == pytest.approx(expected["score"], rel=1e-9, abs=1e-12), col
        assert got.drifted == expected["drifted"], col
        assert got.exact and got.certain, col


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "methods"),
    [
        (800, 700, {"ks", "chisquare", "z"}),  # small reference: p-value tests
        (6000, 4000, {"wasserstein", "jensenshannon"}),  # large reference: distances
    ],
)
def test_automatic_choice_matches_evidently(n_ref: int, n_cur: int, methods: set[str]) -> None:
    ref, cur = _frames(n_ref, n_cur)
    theirs = _evidently(ref, cur)
    result = detect_drift(_columns(ref), _columns(cur), column_types=_declared(ref), batch_size=1000)

    _assert_same(result.columns, theirs)
    assert {r.method for r in result.columns.values()} == methods
    assert any(r.drifted for r in result.columns.values()) and not all(r.drifted for r in result.columns.values())
    assert result.columns["with_nan"].reference_count == n_ref - 3 - int(ref["with_nan"].isna().sum())


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_explicit_stattest_matches_evidently(method: str) -> None:
    ref, cur = _frames(3000, 2000, seed=1)
    if method == "ks":
        ref, cur = ref.drop(columns=["plan", "flag"]), cur.drop(columns=["plan", "flag"])
    result = detect_drift(
        _columns(ref), _columns(cur), stattest=method, column_types=_declared(ref), batch_size=700
    )
    _assert_same(result.columns, _evidently(ref, cur, method))
    assert {r.threshold for r in result.columns.values()} == {STATTESTS[method].default_threshold}


def test_streamed_bounds_contain_the_exact_score_and_decide_the_same_verdict() -> None:
    """Above max_exact_rows the score is an interval that holds the exact one; refinement makes the verdict sure."""
    rng = np.random.default_rng(7)
    n = 120_000
    ref = {f"c{i}": rng.normal(0, 1, n) for i in range(4)}
    ref["ints"] = rng.poisson(20, n).astype(float)
    cur = {"c0": rng.normal(0.0, 1, n), "c1": rng.normal(0.099, 1, n), "c2": rng.normal(0.101, 1, n)}
    cur["c3"] = rng.standard_t(3, n)
    cur["ints"] = rng.poisson(21, n).astype(float)
    exact = detect_drift(ref, cur, batch_size=10_000)
    streamed = detect_drift(ref, cur, max_exact_rows=0, bins=64, batch_size=10_000)

    for col, want in exact.columns.items():
        got = streamed.columns[col]
        assert want.exact and not got.exact, col
        assert got.score_low <= want.score <= got.score_high, col
        assert got.certain and got.drifted == want.drifted, col
    assert max(r.passes for r in streamed.columns.values()) > 2, "64 edges must need refinement near 0.1"
    assert streamed.uncertain_columns == []
    assert set(streamed.approximate_columns) <= set(ref)


def test_streamed_ks_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = {"x": rng.normal(0, 1, 40_000), "y": rng.integers(0, 50, 40_000).astype(float)}
    cur = {"x": rng.normal(0.02, 1, 30_000), "y": rng.integers(0, 51, 30_000).astype(float)}
    exact = detect_drift(ref, cur, stattest="ks")
    streamed = detect_drift(ref, cur, stattest="ks", max_exact_rows=0, bins=256)
    for col in ref:
        got, want = streamed.columns[col], exact.columns[col]
        if got.exact:  # every distinct value became an edge: both CDFs known everywhere
            assert got.score == pytest.approx(want.score, rel=1e-9)
        else:
            assert got.score_low <= want.score * (1 + 1e-9) and want.score <= got.score_high * (1 + 1e-9)
        assert got.drifted == want.drifted and got.certain
    assert streamed.columns["y"].exact and not streamed.columns["x"].exact


def test_parquet_source_reads_a_directory_one_column_at_a_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    for day in (1, 2):
        table = pa.table({"x": rng.normal(0, 1, 5000), "y": rng.integers(0, 3, 5000), "s": ["a"] * 5000})
        pq.write_table(table, tmp_path / "ref" / f"day={day:02d}.parquet", row_group_size=1000)
    pq.write_table(pa.table({"x": rng.normal(1, 1, 3000), "y": rng.integers(0, 3, 3000), "s": ["a"] * 3000}),
                   tmp_path / "cur.parquet")
    source = ParquetSource(tmp_path / "ref")
    assert source.rows == 10_000 and len(source.files) == 2
    assert sum(len(a) for a in source.iter_column("x", 777)) == 10_000

    result = detect_drift(tmp_path / "ref", str(tmp_path / "cur.parquet"), ["x", "y", "s"])
    assert result.reference_rows == 10_000 and result.current_rows == 3000
    assert result.columns["x"].drifted and result.columns["x"].method == "wasserstein"
    assert result.columns["y"].method == "jensenshannon" and not result.columns["y"].drifted
    assert result.columns["s"].kind == "categorical" and result.columns["s"].score == 0.0

    sample = sample_rows(source, ["x", "y"], 1234, seed=0)
    assert sample.num_rows == 1234 and sample.column_names == ["x", "y"]
    assert sample.equals(sample_rows(source, ["x", "y"], 1234, seed=0))  # a retry draws the same rows
    assert sample_rows(source, ["x"], 50_000).num_rows == 10_000  # fewer rows than asked: all of them


def test_bad_input_is_named() -> None:
    ref = {"x": np.arange(2000.0), "s": np.array(["a", "b"] * 1000), "gone": np.full(2000, np.nan)}
    cur = {"x": np.arange(1000.0), "s": np.arange(1000.0), "gone": np.full(1000, np.nan)}
    result = detect_drift({"gone": ref["gone"]}, {"gone": cur["gone"]})
    assert result.columns["gone"].empty_side == "reference and current" and result.columns["gone"].score is None

    with pytest.raises(DriftEngineError, match=r"column 's' is string in the reference but double in the current"):
        detect_drift(ref, cur, ["s"])
    with pytest.raises(DriftEngineError, match=r"stattest 'anderson' is not implemented .*engine='evidently'"):
        detect_drift(ref, cur, ["x"], stattest="anderson")
    with pytest.raises(DriftEngineError, match=r"stattest 'chisquare' does not apply to numerical column 'x'"):
        detect_drift(ref, cur, ["x"], stattest="chisquare")
    with pytest.raises(DriftEngineError, match=r"column 'nope' is missing from the reference and current data"):
        detect_drift(ref, cur, ["nope"])
    with pytest.raises(FileNotFoundError):
        ParquetSource("/nonexistent/reference.parquet")


def test_default_stattest_table() -> None:
    assert default_stattest("numerical", 1000, 6) == "ks"
    assert default_stattest("numerical", 1000, 5) == "chisquare"
    assert default_stattest("numerical", 1000, 2) == "z"
    assert default_stattest("numerical", 1001, 6) == "wasserstein"
    assert default_stattest("numerical", 1001, 5) == "jensenshannon"
    assert default_stattest("categorical", 1001, 50) == "jensenshannon"
    assert default_stattest("categorical", 10, 2) == "z"
    assert ArraySource({"a": [1, 2]}).rows == 2


def test_engine_process_stays_small_and_imports_no_pandas(tmp_path: Path) -> None:
    """What the benchmark relies on: a plain process reading Parquet column by column, without pandas."""
    rng = np.random.default_rng(1)
    cols = {f"c{i}": rng.normal(i * 0.01, 1, 200_000) for i in range(6)}
    pq.write_table(pa.table(cols), tmp_path / "ref.parquet", row_group_size=50_000)
    pq.write_table(pa.table({k: v + 0.2 for k, v in cols.items()}), tmp_path / "cur.parquet", row_group_size=50_000)
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'plugins')!r})\n"
        "from mlops_airflow.monitoring.drift_engine import detect_drift\n"
        f"r = detect_drift({str(tmp_path / 'ref.parquet')!r}, {str(tmp_path / 'cur.parquet')!r}, max_exact_rows=0)\n"
        # VmHWM: this process's peak RSS (ru_maxrss would include the pytest parent's at fork time).
        "hwm = [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
        "print(json.dumps({'pandas': 'pandas' in sys.modules, 'airflow': 'airflow' in sys.modules,\n"
        "  'drifted': sorted(c for c, x in r.columns.items() if x.drifted), 'rss_mb': hwm / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pandas"] is False and out["airflow"] is False
    assert out["drifted"] == sorted(cols)
    assert out["rss_mb"] < 250, out
