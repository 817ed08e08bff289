"""Drift verdicts in the gate shape: from per-column results, and from real Evidently 0.7 snapshots.

One real ``Report([DataDriftPreset(...)])`` run per module (with and without tests, ~5-10 s with the import);
hand-written snapshot dicts cover the shapes a report can take (names, statuses, missing scores).
"""

from __future__ import annotations

import json
import math

import pytest
from mlops_airflow.monitoring.verdict import (
    SnapshotError,
    drift_verdict,
    drift_verdict_from_snapshot,
    finite,
    verdict_from_columns,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def snapshots() -> dict:
    """Real Evidently snapshots (``Snapshot.dict()``): x shifted, y the same values reordered, c re-weighted."""
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(7)
    n = 300
    ref = pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.normal(0, 1, n), "c": rng.choice(list("abc"), n)})
    cur = pd.DataFrame(
        {
            "x": rng.normal(1.5, 1, n),
            "y": rng.permutation(ref["y"].to_numpy()),
            "c": rng.choice(list("abc"), n, p=[0.1, 0.1, 0.8]),
        }
    )
    definition = DataDefinition(numerical_columns=["x", "y"], categorical_columns=["c"])

    def run(include_tests: bool, **preset) -> dict:
        report = Report(
            [DataDriftPreset(columns=["x", "y", "c"], drift_share=0.5, **preset)], include_tests=include_tests
        )
        snapshot = report.run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
        return json.loads(json.dumps(snapshot.dict(), default=str))

    return {"tests": run(True), "no_tests": run(False), "wasserstein": run(True, num_method="wasserstein")}


def test_real_snapshot_gives_the_per_column_verdict(snapshots):
    verdict = drift_verdict_from_snapshot(snapshots["tests"], 0.5)
    per_column = verdict["metrics"]["per_column"]
    assert set(per_column) == {"x", "y", "c"}
    assert {col: info["method"] for col, info in per_column.items()} == {"x": "ks", "y": "ks", "c": "chisquare"}
    assert {col for col, info in per_column.items() if info["drifted"]} == {"x", "c"}
    assert verdict["passed"] is False and verdict["drifted_columns"] == [c for c in per_column if c in ("x", "c")]
    assert verdict["drift_share"] == round(2 / 3, 6)
    assert verdict["metrics"]["n_columns"] == 3 and verdict["metrics"]["n_drifted"] == 2
    (reason,) = verdict["reasons"]
    assert reason.startswith("dataset drift: 2 of 3 columns drifted (share 0.67 >= 0.50): ")
    assert "x (ks p=" in reason and "c (chisquare p=" in reason and "< 0.05)" in reason
    assert drift_verdict_from_snapshot(snapshots["tests"], 0.7)["passed"] is True  # 2/3 < 0.7
    json.dumps(verdict)


def test_without_tests_the_direction_is_inferred_to_the_same_verdict(snapshots):
    with_tests = drift_verdict_from_snapshot(snapshots["tests"], 0.5)
    inferred = drift_verdict_from_snapshot(snapshots["no_tests"], 0.5)
    assert not snapshots["no_tests"].get("tests")
    assert inferred == with_tests


def test_display_names_map_back_to_stattest_names(snapshots):
    verdict = drift_verdict_from_snapshot(snapshots["wasserstein"], 0.5)
    per_column = verdict["metrics"]["per_column"]
    assert per_column["x"]["method"] == "wasserstein" and per_column["x"]["threshold"] == 0.1
    assert per_column["x"]["drifted"] is True and per_column["y"]["drifted"] is False
    assert f"x (wasserstein {per_column['x']['score']:.2f} >= 0.10)" in verdict["reasons"][0]


def _metric(mid: str, column: str, method, threshold, value) -> dict:
    return {
        "id": mid,
        "config": {
            "type": "evidently:metric_v2:ValueDrift",
            "column": column,
            "method": method,
            "threshold": threshold,
        },
        "value": value,
    }


def _test(mid: str, status: str) -> dict:
    return {
        "metric_config": {"metric_id": mid},
        "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest"},
        "status": status,
    }


def test_a_test_status_wins_over_score_and_threshold():
    snapshot = {
        "metrics": [_metric("a", "x", "K-S p_value", 0.05, 0.9), _metric("b", "y", "psi", 0.1, 0.5)],
        "tests": [
            _test("a", "fail"),
            _test("b", "SUCCESS"),
            {"metric_config": {"metric_id": "zz"}, "test_config": {"type": "LessThanMetricTest"}, "status": "FAIL"},
        ],
    }
    verdict = drift_verdict_from_snapshot(snapshot, 0.5)
    assert verdict["metrics"]["per_column"] == {
        "x": {"score": 0.9, "threshold": 0.05, "method": "ks", "drifted": True},
        "y": {"score": 0.5, "threshold": 0.1, "method": "psi", "drifted": False},
    }
    assert verdict["reasons"] == ["dataset drift: 1 of 2 columns drifted (share 0.50 >= 0.50): x (ks p=0.9 < 0.05)"]


@pytest.mark.parametrize(
    ("method", "score", "threshold", "drifted"),
    [
        ("Jensen-Shannon distance", 0.1, 0.1, True),  # distances drift at score >= threshold
        ("Jensen-Shannon distance", 0.099, 0.1, False),
        ("chi-square p_value", 0.05, 0.05, False),  # p-values drift at score < threshold
        ("chi-square p_value", 0.0499, 0.05, True),
        ("Hellinger distance", "nan", 0.1, False),  # no finite score: not decided drifted
        ("Z-test p_value", None, 0.05, False),
        ("custom_test", 0.01, None, False),
    ],
)
def test_inferred_direction_per_stattest_kind(method, score, threshold, drifted):
    verdict = drift_verdict_from_snapshot({"metrics": [_metric("m", "col", method, threshold, score)]}, 0.5)
    assert verdict["metrics"]["per_column"]["col"]["drifted"] is drifted
    assert verdict["passed"] is (not drifted)


def test_unknown_method_names_pass_through_and_missing_numbers_read_plainly():
    snapshot = {
        "metrics": [_metric("m", "col", "my_test", None, None), _metric("n", "other", None, 0.1, 1.0)],
        "tests": [_test("m", "FAIL")],
    }
    verdict = drift_verdict_from_snapshot(snapshot, 0.5)
    assert verdict["metrics"]["per_column"]["col"] == {
        "score": None,
        "threshold": None,
        "method": "my_test",
        "drifted": True,
    }
    assert verdict["metrics"]["per_column"]["other"]["method"] == "unknown"
    assert verdict["reasons"] == ["dataset drift: 1 of 2 columns drifted (share 0.50 >= 0.50): col (my_test)"]


def test_count_only_snapshot_and_renamed_metric_prefix():
    counts = {
        "metrics": [
            {
                "id": "k",
                "config": {"type": "evidently:metric_v3:DriftedColumnsCount"},
                "value": {"count": 3.0, "share": 0.6},
            }
        ]
    }
    verdict = drift_verdict_from_snapshot(counts, 0.5)
    assert verdict == {
        "passed": False,
        "reasons": ["dataset drift: 3 of 5 columns drifted (share 0.60 >= 0.50)"],
        "drifted_columns": [],
        "drift_share": 0.6,
        "metrics": {"n_columns": 5, "n_drifted": 3, "per_column": {}},
    }
    none = {"metrics": [{"id": "k", "config": {"type": "DriftedColumnsCount"}, "value": {"count": 0, "share": 0}}]}
    assert drift_verdict_from_snapshot(none, 0.5)["passed"] is True
    assert drift_verdict_from_snapshot(none, 0.5)["metrics"]["n_columns"] == 0


@pytest.mark.parametrize(
    "snapshot",
    [{}, {"metrics": [], "tests": []}, {"metrics": [{"config": {"type": "evidently:metric_v2:MissingValueCount"}}]}],
)
def test_a_snapshot_without_drift_results_is_an_error(snapshot):
    with pytest.raises(SnapshotError, match="holds no ValueDrift or DriftedColumnsCount metric: .* Re-run the drift"):
        drift_verdict_from_snapshot(snapshot, 0.5)
    assert issubclass(SnapshotError, ValueError)


def test_verdict_from_columns_shared_by_both_engines():
    per_column = {
        "a": {"score": 0.3, "threshold": 0.1, "method": "wasserstein", "drifted": True},
        "b": {"score": 0.5, "threshold": 0.05, "method": "ks", "drifted": False},
        "c": {"score": 0.001, "threshold": 0.05, "method": "chisquare", "drifted": True},
    }
    verdict = verdict_from_columns(per_column, 0.5)
    assert verdict["passed"] is False and verdict["drifted_columns"] == ["a", "c"]
    assert verdict["drift_share"] == 0.666667 and verdict["metrics"]["per_column"] is per_column
    assert verdict["reasons"] == [
        "dataset drift: 2 of 3 columns drifted (share 0.67 >= 0.50): "
        "a (wasserstein 0.30 >= 0.10), c (chisquare p=0.001 < 0.05)"
    ]
    assert verdict_from_columns(per_column, 0.7)["passed"] is True
    assert verdict_from_columns({}, 0.0) == {
        "passed": True,
        "reasons": [],
        "drifted_columns": [],
        "drift_share": 0.0,
        "metrics": {"n_columns": 0, "n_drifted": 0, "per_column": {}},
    }


def test_drift_verdict_without_details_and_finite():
    verdict = drift_verdict({}, [], 4, 2, 0.5, 0.5)
    assert verdict["reasons"] == ["dataset drift: 2 of 4 columns drifted (share 0.50 >= 0.50)"]
    assert [finite(v) for v in (1, "2.5", None, "x", math.inf, -math.inf, math.nan, float("1e308"))] == [
        1.0,
        2.5,
        None,
        None,
        None,
        None,
        None,
        1e308,
    ]
