"""What monitoring keeps between days (the per-day index, the prediction-drift reference, the day's summary) lives
under the model's artefact root: the same behaviour on ``file://`` and on ``s3://`` (a real S3 API)."""

from __future__ import annotations

import logging

import pytest
from mlops_airflow import storage
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.pipeline import ModelSpec
from mlops_airflow.pipeline.windows import (
    labelled_window,
    prediction_reference,
    record_window,
    write_monitoring_summary,
)

pytestmark = pytest.mark.unit


@pytest.fixture(params=["file", "s3"])
def mon(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "monitoring").as_uri()
    return request.getfixturevalue("s3_store").root + "/m1/monitoring"


def day_of(mon: str, day: str, champion: str) -> tuple[dict, dict]:
    log = storage.write_atomic(storage.join(mon, "logs", f"{day}.parquet"), b"log")
    landed = {"day": day, "labels_path": storage.join(mon, "labels", f"{day}.parquet"),
              "labelled_path": storage.join(mon, "labelled", f"{day}.parquet")}
    scored = {"uri": log, "versions": {"champion": champion}, "rows": 3}
    return landed, scored


def test_the_index_finds_the_first_window_the_champion_served(mon):
    index = storage.join(mon, "index")
    for day, champion in (("2026-11-01", "1"), ("2026-11-02", "2"), ("2026-11-03", "2")):
        entry = record_window(*day_of(mon, day, champion), index)
        assert storage.read_json(storage.join(index, f"{day}.json")) == entry
    landed, scored = day_of(mon, "2026-11-04", "2")
    ref = prediction_reference(landed, scored, index, "m1")
    assert ref == {"champion": "2", "reference_day": "2026-11-02", "own_reference": False,
                   "reference_path": storage.join(mon, "logs", "2026-11-02.parquet")}
    landed, scored = day_of(mon, "2026-11-04", "3")  # a new champion: its own window is the reference
    assert prediction_reference(landed, scored, index, "m1")["own_reference"] is True
    storage.remove(storage.join(mon, "logs", "2026-11-02.parquet"))
    landed, scored = day_of(mon, "2026-11-04", "2")
    with pytest.raises(MonitoringError, match=r"first served window 2026-11-02 .*no longer exists.*delete "
                                              r".*/index/2026-11-02.json"):
        prediction_reference(landed, scored, index, "m1")


def test_no_window_scored_on_the_labelled_day_skips_quality(mon, caplog):
    with caplog.at_level(logging.INFO, logger="mlops_airflow.pipeline.windows"):
        assert labelled_window("2026-11-05", 2, storage.join(mon, "index"), "m1", "val_auc") is None
    assert caplog.records[-1].getMessage().startswith("SUMMARY labelled-window day=2026-11-03 window=none")


def test_the_day_s_summary_is_an_artefact_and_a_short_block(mon, caplog):
    spec = ModelSpec(name="m1", label="y", entity_columns=["id"], source="pkg.data:batch", features=["x1"])
    verdict = {"passed": False, "drift_share": 0.5, "drifted_columns": ["x1"], "report_path": "r", "reasons": ["x"],
               "retrain_event": {"kind": "data_drift", "reason": "drift share 0.50"}}
    xcom = {"land_window": {"day": "2026-11-04"}, "resolve_champion": {"version": "2"},
            "score_window": {"uri": "s3://b/log.parquet", "rows": 3, "versions": {"champion": "2"}},
            "check_drift": verdict,
            "check_prediction_drift": {"passed": True, "reasons": [], "metrics": {"per_column": {"proba": {}}}},
            "prediction_reference": {"reference_day": "2026-11-02", "own_reference": False}}

    class TI:
        run_id = "scheduled__2026-11-04"

    with caplog.at_level(logging.INFO, logger="mlops_airflow.pipeline.windows"):
        summary = write_monitoring_summary(xcom.get, TI(), mon, "proba", spec)
    assert summary["summary_uri"] == storage.join(mon, "summaries", "2026-11-04.json")
    assert storage.read_json(summary["summary_uri"]) == summary
    assert summary["retrain_events"] == [{"kind": "data_drift", "reason": "drift share 0.50"}]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("SUMMARY monitoring model=m1 day=2026-11-04 champion=v2 feature_drift=True drift_share=0.5 "
                        "prediction_drift=False")
    assert lines[-1].startswith("SUMMARY monitoring-events retrain_events=[{'kind': 'data_drift'") and len(lines) <= 4
