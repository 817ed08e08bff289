"""Bad inputs of the monitoring loop that need no model, and the retraining reason in the record."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import make_context
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators.scoring import ShadowCanaryAnalysisOperator
from mlops_airflow.record import record_tags, trigger_section

pytestmark = pytest.mark.unit


def _log(tmp_path: Path) -> Path:
    ts = pd.to_datetime(["2026-11-01T01:00:00Z", "2026-11-01T02:00:00Z"], utc=True)
    log = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": ts, "prediction": [1, 0], "proba": [0.8, 0.2],
                        "served_by": ["champion", "champion"], "challenger_prediction": [1, 1],
                        "challenger_proba": [0.7, 0.6]})
    path = tmp_path / "log.parquet"
    log.to_parquet(path, index=False)
    return path


def test_labels_that_match_no_prediction_are_an_error(tmp_path: Path) -> None:
    labels = pd.DataFrame({"customer_id": [7, 8], "event_timestamp": pd.to_datetime(
        ["2026-11-02T01:00:00Z", "2026-11-02T02:00:00Z"], utc=True), "churned": [1, 0]})
    labels.to_parquet(tmp_path / "labels.parquet", index=False)
    op = ShadowCanaryAnalysisOperator(task_id="shadow_canary", inference_log=str(_log(tmp_path)),
                                      labels_path=str(tmp_path / "labels.parquet"), evidence_dir=str(tmp_path),
                                      label_column="churned", keys=["customer_id", "event_timestamp"])
    with pytest.raises(MonitoringError, match=r"0 of 2 labels joined the inference log .*check the keys"):
        op.execute(make_context(task_id="shadow_canary"))


def test_without_labels_disagreement_only_and_hold(tmp_path: Path) -> None:
    op = ShadowCanaryAnalysisOperator(task_id="shadow_canary", inference_log=str(_log(tmp_path)),
                                      evidence_dir=str(tmp_path), max_disagreement=0.2)
    verdict = op.execute(make_context(task_id="shadow_canary"))
    assert verdict["recommendation"] == "hold" and verdict["passed"] is False
    assert verdict["metrics"]["comparisons"]["challenger"]["disagreement"] == 0.5
    assert "challenger disagrees with the served model on 50.0% of rows" in verdict["reasons"][0]


def test_the_retraining_reason_goes_into_the_record_and_tags() -> None:
    decision = {"proceed": True, "reason": "dataset drift: 4 of 5 columns drifted (share 0.80 >= 0.50)",
                "triggered_by": "asset mlops://monitoring/churn_classifier from mlops_monitoring/r/check_drift",
                "decided_at": "2026-11-05T23:59:59+00:00", "events": [{"big": "x" * 1000}],
                "asset_extra": {"kind": "data_drift", "drifted_columns": ["monthly_charges"], "drift_share": 0.8,
                                "quality_drop": None, "verdict_uri": "file:///v.json"}}
    section = trigger_section(decision)
    assert section == {"reason": decision["reason"], "triggered_by": decision["triggered_by"],
                       "decided_at": "2026-11-05T23:59:59+00:00", "kind": "data_drift",
                       "drifted_columns": ["monthly_charges"], "drift_share": 0.8, "quality_drop": None,
                       "verdict_uri": "file:///v.json"}
    record = {"schema_version": 2, "dataset": {"rev": "r", "md5": "m"}, "features": {"feature_service": "s",
              "definitions_hash": "d"}, "training_set": {"hash": "h"}, "code": {"revision": "c", "image_digest": "i",
              "airflow_lock_sha256": "a", "training_lock_sha256": "t"}, "runtime": {}, "training": {},
              "mlflow": {"run_id": "run"}, "trigger": section}
    tags = record_tags(record)
    assert tags["mlops.retrain.reason"] == decision["reason"] and tags["mlops.retrain.kind"] == "data_drift"
    assert tags["mlops.retrain.triggered_by"].startswith("asset mlops://monitoring/churn_classifier")
    del record["trigger"]
    assert not any(k.startswith("mlops.retrain.") for k in record_tags(record))  # no guard: no tags
