"""The monitoring DAG's wiring and the CT DAG's asset schedule (what makes drift retrain)."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
TRIGGER = "mlops://monitoring/churn_classifier"


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


@pytest.mark.unit
def test_monitoring_dag_wiring(dags):
    dag = dags["mlops_monitoring"]
    assert {"land_window", "resolve_champion", "score_window", "check_drift", "record_window", "labelled_window",
            "check_quality", "shadow_canary", "act_on_recommendation", "challenger_version", "approve_challenger",
            "promote_challenger", "rollback_canary", "hold",
            "summarize", "prediction_reference", "check_prediction_drift"} == set(dag.task_ids)
    up = {t: set(dag.get_task(t).upstream_task_ids) for t in dag.task_ids}
    assert up["score_window"] == {"land_window", "resolve_champion"}
    assert up["check_drift"] == {"score_window"}
    assert up["check_quality"] == {"labelled_window"} and up["shadow_canary"] == {"labelled_window"}
    assert up["act_on_recommendation"] == {"shadow_canary"}
    assert dag.get_task("act_on_recommendation").downstream_task_ids == {"challenger_version", "rollback_canary",
                                                                         "hold"}
    assert up["promote_challenger"] == {"approve_challenger", "challenger_version"}
    assert set(dag.get_task("promote_challenger").clear_aliases) == {"challenger", "shadow", "canary"}
    # The champion's own rollback is validated and approved, in its own DAG.
    rollback = dags["mlops_rollback"]
    assert [t.task_id for t in rollback.topological_sort()] == [
        "labelled_window", "validate_rollback", "approve_rollback", "rollback_champion"]
    assert dag.get_task("summarize").trigger_rule == "none_failed"
    # Drift and quality failures reach the retraining asset through an alias (only failures emit).
    for task_id in ("check_drift", "check_quality"):
        names = [getattr(o, "name", "") for o in dag.get_task(task_id).outlets]
        assert names == [f"mlops-retrain::{TRIGGER}"], (task_id, names)
    assert dag.get_task("score_window").canary_share == 0.1


@pytest.mark.unit
def test_prediction_drift_is_informative_and_keeps_the_feature_drift_verdict_on_the_models_page(dags):
    dag = dags["mlops_monitoring"]
    up = {t: set(dag.get_task(t).upstream_task_ids) for t in dag.task_ids}
    assert up["prediction_reference"] == {"score_window"}
    assert up["check_prediction_drift"] == {"prediction_reference"}
    assert "check_prediction_drift" in up["summarize"] and "check_drift" in up["summarize"]
    check = dag.get_task("check_prediction_drift")
    assert check.columns == ["proba"] and check.label_column is None
    assert "score_window" in check.current_path and "prediction_reference" in check.reference_path
    # No retraining from it (no alias outlet, so nothing can emit), and not in the experiment the models page reads.
    assert check.emit_retrain_event is False and not check.outlets
    assert check.experiment_name != dag.get_task("check_drift").experiment_name == "mlops-monitoring"


@pytest.mark.unit
def test_ct_dag_is_scheduled_on_the_monitoring_asset_behind_the_guard(dags):
    dag = dags["mlops_continuous_training"]
    condition = dag.timetable.asset_condition  # AssetAll of the schedule's assets
    assert [a.uri for a in condition.objects] == [TRIGGER]
    guard = dag.get_task("retrain_guard")
    assert guard.upstream_task_ids == {"validate_batch"}
    assert guard.downstream_task_ids == {"version_dataset", "register_model"}  # its decision goes to the record
    assert guard.require_data_gate is True
    assert {"day", "cooldown_hours"} <= set(dag.params)
    assert dag.get_task("register_model").retrain is not None  # the decision reaches the record


@pytest.mark.unit
def test_ct_drift_check_never_triggers_the_next_retraining(dags):
    drift = dags["mlops_continuous_training"].get_task("check_drift")
    assert drift.emit_retrain_event is False and not drift.outlets
