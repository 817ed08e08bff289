"""The factories build the expected tasks and dependencies; stages a spec does not use are left out; a spec's
misspelled column or feature service fails at the first task that can know it, naming the field."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ROOT
from mlops_airflow.exceptions import DataValidationError, FeatureStoreError
from mlops_airflow.pipeline import ModelSpec, continuous_training, model_monitoring

USER = ROOT / "tests" / "user_dag" / "my_model.py"
BASE = {"name": "m1", "label": "y", "entity_columns": ["account_id"], "source": f"{USER}:daily_batch",
        "features": ["x1", "x2", "x3"]}


def build(factory, spec, **kw):
    from airflow.sdk import DAG

    with DAG(f"t_{spec.name}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        factory(spec, **kw)
    return dag


def upstream(dag):
    return {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}


@pytest.mark.unit
def test_minimal_spec_leaves_out_validation_dvc_feast_and_evaluation(tmp_path):
    dag = build(continuous_training, ModelSpec(**BASE), data_root=str(tmp_path))
    assert set(dag.task_ids) == {"land_batch", "retrain_guard", "version_dataset", "build_training_set",
                                 "train_model", "register_model", "check_drift", "summarize"}
    up = upstream(dag)
    assert up["retrain_guard"] == {"land_batch"} and up["version_dataset"] == {"retrain_guard", "land_batch"}
    assert up["build_training_set"] == {"version_dataset", "land_batch"}
    assert dag.get_task("retrain_guard").require_data_gate is False
    assert dag.get_task("check_drift").columns == ["x1", "x2", "x3"]


@pytest.mark.unit
def test_full_spec_builds_the_reference_loop_prefixed_in_a_group(tmp_path):
    spec = ModelSpec(**{**BASE, "features": None}, feature_service="svc_v1", feast_repo="include/feast_repo",
                     suite="include/gx/customer_events.json", dataset_path="data/events", task_type="regression",
                     max_metrics={"rmse": 70}, holdout=f"{USER}:holdout_batch", entrypoint="pkg.train:main")
    dag = build(continuous_training, spec, group_id="m1_ct", data_root=str(tmp_path))
    names = {t.split(".", 1)[1] for t in dag.task_ids}
    assert names == {"land_batch", "validate_batch", "retrain_guard", "version_dataset", "plan_materialization",
                     "materialize_window", "materialize_features", "check_feature_skew", "build_training_set",
                     "train_model", "register_model", "check_drift", "has_challenger", "holdout_batch",
                     "evaluate_challenger", "approve_promotion", "promote_model", "summarize"}
    up = upstream(dag)
    assert up["m1_ct.register_model"] >= {"m1_ct.train_model", "m1_ct.check_feature_skew", "m1_ct.retrain_guard"}
    assert dag.get_task("m1_ct.retrain_guard").downstream_task_ids == {"m1_ct.version_dataset",
                                                                        "m1_ct.register_model"}
    ts = dag.get_task("m1_ct.build_training_set")
    assert ts.label_column == "y" and ts.entity_columns == ["account_id"] and ts.repo_path.endswith("feast_repo")
    assert "m1_ct.land_batch" in ts.entity_start
    register, evaluate = dag.get_task("m1_ct.register_model"), dag.get_task("m1_ct.evaluate_challenger")
    assert register.max_metrics == {"val_rmse": 70} and evaluate.max_metrics == {"rmse": 70}
    assert evaluate.primary_metric == "rmse" and evaluate.label_column == "y"
    assert dag.get_task("m1_ct.train_model").entrypoint == "pkg.train:main"
    # The approver sees the training set (window, rows, hash): the gate reads the training-set task's XCom.
    approve = dag.get_task("m1_ct.approve_promotion")
    assert approve.training_set.operator is ts


@pytest.mark.unit
def test_monitoring_factory(tmp_path):
    spec = ModelSpec(**BASE, task_type="regression")
    dag = build(model_monitoring, spec, data_root=str(tmp_path))
    assert dag.get_task("check_prediction_drift").columns == ["prediction"]
    assert dag.get_task("check_quality").quality_metric == "rmse"
    assert list(dag.get_task("check_quality").join_keys) == ["account_id", "event_timestamp"]
    assert dag.get_task("act_on_recommendation").downstream_task_ids == {"challenger_version", "rollback_canary",
                                                                         "hold"}


@pytest.mark.unit
def test_misspelled_label_fails_at_land_batch_naming_the_field(tmp_path):
    dag = build(continuous_training, ModelSpec(**{**BASE, "label": "yy"}), data_root=str(tmp_path))
    land = dag.get_task("land_batch").python_callable
    with pytest.raises(DataValidationError, match=r"ModelSpec.label: \['yy'\]"):
        land({}, params={"day": "2026-11-01"})
    dag = build(continuous_training, ModelSpec(**{**BASE, "features": ["x1", "x9"]}), data_root=str(tmp_path))
    with pytest.raises(DataValidationError, match=r"ModelSpec.features: \['x9'\]"):
        dag.get_task("land_batch").python_callable({}, params={"day": "2026-11-01"})
    assert not (tmp_path / "landing").exists() or not list((tmp_path / "landing").iterdir())


@pytest.mark.integration
def test_misspelled_feature_service_fails_at_land_batch(tmp_path):
    from mlops_airflow.operators.feast_apply import FeastApplyOperator

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("feature_store.yaml", "features.py", ".feastignore"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    FeastApplyOperator(task_id="apply", repo_path=str(repo), feast_conn_id="no_such_conn").execute({})
    spec = ModelSpec(**{**BASE, "features": None}, feature_service="churn_model_v2", feast_repo=str(repo))
    dag = build(continuous_training, spec, data_root=str(tmp_path))
    with pytest.raises(FeatureStoreError, match=r"ModelSpec.feature_service: .*'churn_model_v2' does not exist.*"
                                                r"known services: \['churn_model_v1'\]"):
        dag.get_task("land_batch").python_callable({}, params={"day": "2026-11-01"})
    assert not (tmp_path / "landing").exists()
    json.dumps(spec.required_columns())


@pytest.mark.unit
def test_every_artefact_location_is_a_uri_under_the_root(s3_store):
    """No shared disk: the factories build each stage's folder with storage.join from the root URI."""
    root = f"{s3_store.root}/m1"
    spec = ModelSpec(**BASE, suite="include/gx/customer_events.json", holdout=f"{USER}:holdout_batch")
    dag = build(continuous_training, spec, data_root=root)
    gate = dag.get_task("validate_batch")
    assert (gate.quarantine_dir, gate.results_dir) == (f"{root}/quarantine", f"{root}/validation")
    assert dag.get_task("check_drift").report_dir == f"{root}/reports"
    assert dag.get_task("evaluate_challenger").output_dir == f"{root}/scores"
    mon = build(model_monitoring, ModelSpec(**BASE), data_root=root)
    assert mon.get_task("score_window").output_dir == f"{root}/inference_log"
    assert mon.get_task("check_quality").report_dir == f"{root}/reports"
    assert mon.get_task("shadow_canary").evidence_dir == f"{root}/reports"
    default = build(continuous_training, ModelSpec(**BASE))  # [mlops] data_root, as a URI
    import os

    assert default.get_task("check_drift").report_dir == f"{Path(os.environ['AIRFLOW__MLOPS__DATA_ROOT']).as_uri()}" \
                                                         "/reports"


@pytest.mark.unit
def test_the_loop_without_dvc_or_feast_runs_on_the_object_store(s3_store):
    """land -> version -> training set as the tasks run them, every artefact in the bucket, URIs in XCom."""
    root = f"{s3_store.root}/m1"
    dag = build(continuous_training, ModelSpec(**BASE), data_root=root)
    batch = dag.get_task("land_batch").python_callable({}, params={"day": "2026-11-01"})
    assert batch["path"] == f"{root}/landing/2026-11-01.parquet" and batch["file_name"] == "2026-11-01.parquet"
    version = dag.get_task("version_dataset").python_callable(batch)
    assert version["path"] == f"{root}/datasets/m1" and version["rev"].startswith("local:")
    tset = dag.get_task("build_training_set").python_callable(version, batch)
    assert tset["uri"].startswith(f"{root}/training_sets/m1/") and tset["rows"] == batch["rows"]
    keys = s3_store.keys("m1/")
    assert keys == sorted(["m1/landing/2026-11-01.parquet", "m1/datasets/m1/2026-11-01.parquet",
                           tset["uri"].removeprefix(f"{s3_store.root}/")])


@pytest.mark.unit
def test_the_monitoring_window_is_landed_on_the_object_store(s3_store):
    from mlops_airflow import storage

    root = f"{s3_store.root}/m1"
    dag = build(model_monitoring, ModelSpec(**BASE), data_root=root)
    window = dag.get_task("land_window").python_callable({}, params={"day": "2026-11-01"})
    mon = f"{root}/monitoring"
    assert window["path"] == f"{mon}/windows/2026-11-01.parquet" and window["rows"] > 0
    assert window["labels_path"] == f"{mon}/labels/2026-11-01.parquet"
    assert window["labelled_path"] == f"{mon}/labelled/2026-11-01.parquet"
    assert "y" not in storage.read_table(window["path"]).columns
    assert list(storage.read_table(window["labels_path"]).columns) == ["account_id", "event_timestamp", "y"]
