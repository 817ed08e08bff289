"""When the evaluation evidence cannot decide a promotion (issue #15 item 3): ``registry.evidence``."""

from __future__ import annotations

import pytest
from mlops_airflow.registry.evidence import approval_markdown, degenerate_holdout

pytestmark = pytest.mark.unit

# The issue's case: both models at 0.998 accuracy, McNemar p = 1.0 (no discordant pair), drift share 0.80.
DEGENERATE = {
    "passed": True, "champion_version": "1", "reasons": ["challenger v2 passed"], "evidence_uri": "runs:/r/e.json",
    "metrics": {
        "challenger": {"auc": 0.9990, "accuracy": 0.998}, "champion": {"auc": 0.9990, "accuracy": 0.998},
        "primary_metric": "auc", "delta": 0.0001, "ci": [0.00005, 0.0002], "n_boot": 1000, "holdout_rows": 500,
        "mcnemar_p": 1.0, "mcnemar": {"b_champion_only_correct": 0, "c_challenger_only_correct": 0, "p_value": 1.0},
    },
}
DRIFTED = {"passed": False, "drift_share": 0.8, "drifted_columns": ["a", "b", "c", "d"]}


def test_the_issue_s_degenerate_holdout_is_flagged_for_each_cause() -> None:
    reasons = degenerate_holdout(DEGENERATE, DRIFTED)
    assert len(reasons) == 4, reasons
    assert reasons[0].startswith("no discordant pairs: challenger and champion are right and wrong on exactly the "
                                 "same 500 holdout rows (McNemar p = 1.0000)")
    assert reasons[1].startswith("near-perfect challenger auc = 0.9990 on the holdout (>= 0.995): check it for leakage")
    assert reasons[2].startswith("near-perfect champion auc = 0.9990")
    assert reasons[3].startswith("the evaluation data drifted: 0.80 of the columns drifted (> 0.75)")


def test_a_sound_verdict_raises_no_warning() -> None:
    sound = {
        "passed": True, "champion_version": "1",
        "metrics": {"challenger": {"auc": 0.83, "accuracy": 0.75}, "champion": {"auc": 0.80},
                    "mcnemar": {"b_champion_only_correct": 40, "c_challenger_only_correct": 71, "p_value": 0.004}},
    }
    assert degenerate_holdout(sound, {"passed": True, "drift_share": 0.1}) == []
    assert degenerate_holdout({"passed": True, "metrics": {}}) == []  # a first champion: nothing to compare
    # Regression: R² is the near-perfect signal; no McNemar to read.
    assert degenerate_holdout({"passed": True, "metrics": {"challenger": {"rmse": 50.0, "r2": 0.45}}}) == []
    assert "near-perfect challenger r2" in degenerate_holdout(
        {"passed": True, "metrics": {"challenger": {"rmse": 0.01, "r2": 0.9999}}})[0]


def test_the_approver_sees_the_warnings_first_and_the_training_window() -> None:
    _, body = approval_markdown(
        model_name="m", version="2", alias="champion", verdict=DEGENERATE, dataset_version=None, drift=DRIFTED,
        links={"evaluation evidence": "http://mlflow/#/experiments/1/runs/r/artifacts/e.json"},
        training_set={"rows": 1234, "hash": "f" * 64, "entity_window": {"start": "2026-11-01T00:00:00+00:00",
                                                                         "end": "2026-11-03T00:00:00+00:00"}},
        serving_drift={"passed": False, "drift_share": 0.6, "at": "2026-11-03T02:00+00:00"},
        warnings=degenerate_holdout(DEGENERATE, DRIFTED),
    )
    lines = body.splitlines()
    assert lines[2] == "**WARNING: this evidence cannot decide the promotion** (the auto policy refuses it):"
    assert lines[3].startswith("- no discordant pairs")
    assert ("**Training set:** 1234 rows, window 2026-11-01T00:00:00+00:00 to 2026-11-03T00:00:00+00:00, hash "
            "`ffffffffffffffff`") in lines
    assert "**Champion v1 in serving (last monitoring check, 2026-11-03T02:00+00:00):** DRIFT (share 0.60)" in lines
    assert "**Evidence:** [runs:/r/e.json](http://mlflow/#/experiments/1/runs/r/artifacts/e.json)" in lines
