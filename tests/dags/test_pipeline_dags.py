"""The DAGs built with the pipeline factories: the diabetes example's CT and monitoring loops, and the user DAG."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


@pytest.mark.unit
def test_diabetes_ct_is_the_reference_loop_for_a_regressor(dags):
    ct, churn = dags["mlops_diabetes_ct"], dags["mlops_continuous_training"]
    assert set(ct.task_ids) == set(churn.task_ids)
    assert [a.uri for a in ct.timetable.asset_condition.objects] == ["mlops://monitoring/diabetes_regressor"]
    evaluate, register = ct.get_task("evaluate_challenger"), ct.get_task("register_model")
    assert evaluate.primary_metric == "rmse" and evaluate.max_metrics == {"rmse": 70.0}
    assert register.max_metrics == {"val_rmse": 70.0} and register.label_column == "target"
    ts = ct.get_task("build_training_set")
    assert ts.feature_service == "diabetes_v1" and ts.feast_conn_id == "feast_diabetes"
    assert ts.entity_columns == ["patient_id"] and ts.label_column == "target"
    assert ct.get_task("train_model").entrypoint.endswith("include/diabetes/train.py")
    assert "/diabetes/" in ct.get_task("check_drift").report_dir


@pytest.mark.unit
def test_diabetes_monitoring_watches_the_prediction_and_rmse(dags):
    mon = dags["mlops_diabetes_monitoring"]
    assert set(mon.task_ids) == set(dags["mlops_monitoring"].task_ids)
    assert mon.get_task("check_prediction_drift").columns == ["prediction"]
    assert mon.get_task("check_quality").quality_metric == "rmse"
    names = [getattr(o, "name", "") for o in mon.get_task("check_drift").outlets]
    assert names == ["mlops-retrain::mlops://monitoring/diabetes_regressor"]


@pytest.mark.unit
def test_user_dag_parses_and_is_short():
    from airflow.dag_processing.dagbag import DagBag

    path = ROOT / "tests" / "user_dag" / "my_model_dag.py"
    assert len(path.read_text().splitlines()) <= 40
    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["my_model_ct"]
    assert "validate_batch" not in dag.task_ids and "materialize_features" not in dag.task_ids
    assert {"version_dataset", "build_training_set", "evaluate_challenger", "promote_model"} <= set(dag.task_ids)
