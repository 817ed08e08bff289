"""The reproduce DAG: a registered version's training set is rebuilt from its record with the same hash.

Real DVC repository (two versioned daily batches), the bundled Feast repository applied inside it, a
real training run on the Feast training set, registration (record), then the ``mlops_reproduce``
DAG's own task callables and operators: read the record, rebuild at the recorded DVC revision, check
the hash, retrain with the recorded config and compare metrics. Runtime: ~60-120 s (two tiny trainings).
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pytest
from conftest import ROOT, TRAIN_PYTHON, dvc_conn, make_context, make_dvc_repo
from mlops_airflow.exceptions import RegistryError
from unit.operators.test_registry_support import mlflow_conn_json, needs_training_env, unique


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.mark.unit
def test_reproduce_dag_parses(dagbag):
    dag = dagbag.dags.get("mlops_reproduce")
    assert dag is not None and not dagbag.import_errors
    assert {"read_record", "rebuild_training_set", "check_hash", "retrain_requested", "retrain_model",
            "compare_metrics"} == set(dag.task_ids)
    assert set(dag.params) == {"model_name", "version", "retrain", "feast_conn_id"}


@pytest.fixture
def feature_repo(generator, tmp_path, monkeypatch, mlflow_server):
    from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator
    from mlops_airflow.operators.feast_features import FeastApplyOperator

    info = make_dvc_repo(tmp_path)
    repo = info["repo"]
    for name in ("feature_store.yaml", "features.py", ".feastignore"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    monkeypatch.setenv("AIRFLOW_CONN_DVC_DEFAULT", dvc_conn(info))
    feast = {"conn_type": "feast", "extra": {"repo_path": str(repo)}}
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_DEFAULT", json.dumps(feast))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(mlflow_server))
    versions = []
    for day in ("2026-11-01", "2026-11-02"):
        df = generator.generate_batch(date.fromisoformat(day), n_customers=400)
        src = generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")
        versions.append(DvcVersionDatasetOperator(
            task_id="version_dataset", source_path=str(src), dataset_path="data/customer_events",
            file_name=f"{day}.parquet").execute(make_context("version_dataset")))
    FeastApplyOperator(task_id="apply").execute(make_context("apply"))
    return {"repo": repo, "versions": versions, "tmp": tmp_path, "generator": generator}


@pytest.mark.integration
@needs_training_env
def test_registered_version_is_rebuilt_with_the_same_hash_and_retrained(feature_repo, dagbag):
    from mlops_airflow.operators.feast_features import FeastTrainingSetOperator
    from mlops_airflow.operators.registry import RegisterModelOperator
    from mlops_airflow.operators.training import LocalTrainingOperator

    tmp = feature_repo["tmp"]
    version = feature_repo["versions"][-1]
    training_set = FeastTrainingSetOperator(
        task_id="build_training_set", dataset_version=version, feature_service="churn_model_v1", label_column="churned",
        output_dir=str(tmp / "training_sets")).execute(make_context("build_training_set"))
    trained = LocalTrainingOperator(
        task_id="train_model", training_set=training_set, dataset_version=version, experiment_name="test-reproduce",
        python=str(TRAIN_PYTHON), training_config={"epochs": 2}).execute(make_context("train_model", run_id="orig"))
    name = unique("reproduce")
    registered = RegisterModelOperator(
        task_id="register_model", model_name=name, training=trained, training_set=training_set,
        dataset_version=version, min_metrics={"val_auc": 0.5}).execute(make_context("register_model"))

    # The working copy moves on (a newer batch), so the rebuild must read the *recorded* revision.
    from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

    df = feature_repo["generator"].generate_batch(date(2026, 11, 3), n_customers=400)
    src = feature_repo["generator"].write_batch(df, tmp / "landing" / "2026-11-03.parquet")
    newer = DvcVersionDatasetOperator(task_id="version_dataset", source_path=str(src),
                                      dataset_path="data/customer_events", file_name="2026-11-03.parquet",
                                      ).execute(make_context("version_dataset", run_id="newer"))
    assert newer["rev"] != version["rev"]
    dag = dagbag.dags.get("mlops_reproduce")
    params = {"model_name": name, "version": registered["version"], "retrain": True}
    inputs = dag.get_task("read_record").python_callable(params=params)
    assert inputs["dataset_version"]["rev"] == version["rev"] and inputs["expected_hash"] == training_set["hash"]
    assert inputs["training_config"]["epochs"] == 2 and inputs["training_config"]["seed"] == 42
    json.dumps(inputs)

    rebuilt = FeastTrainingSetOperator(
        task_id="rebuild_training_set", dataset_version=inputs["dataset_version"],
        feature_service=inputs["feature_service"], label_column=inputs["label"], output_dir=str(tmp / "reproduce"),
    ).execute(make_context("rebuild_training_set"))
    checked = dag.get_task("check_hash").python_callable(inputs=inputs, rebuilt=rebuilt)
    assert checked["match"] and checked["rebuilt_hash"] == training_set["hash"] and checked["definitions_match"]
    from mlops_airflow import storage

    assert rebuilt["uri"] != training_set["uri"] and storage.local_path(rebuilt["uri"]).is_file()

    with pytest.raises(RegistryError, match=rf"{name} v1 is NOT reproducible: .*Likely cause: same data revision"):
        dag.get_task("check_hash").python_callable(inputs={**inputs, "expected_hash": "0" * 64}, rebuilt=rebuilt)

    # The record names the code that trained the version; the retrain runs that same code (same sha256).
    assert inputs["entrypoint"] == "include/training/train.py" == trained["entrypoint"]
    assert inputs["entrypoint_sha256"] == trained["entrypoint_sha256"]
    assert inputs["task_type"] == "binary_classification" and inputs["label"] == training_set["label"]
    assert dag.get_task("retrain_requested").python_callable(params=params, inputs=inputs) is True
    with pytest.raises(RegistryError, match=r"the code changed since"):
        dag.get_task("retrain_requested").python_callable(params=params,
                                                          inputs={**inputs, "entrypoint_sha256": "0" * 64})
    retrained = LocalTrainingOperator(
        task_id="retrain_model", training_set=rebuilt, dataset_version=inputs["dataset_version"],
        experiment_name=f"{name}-reproduce", python=str(TRAIN_PYTHON), training_config=inputs["training_config"],
        entrypoint=inputs["entrypoint"], requirements=inputs["requirements"], task_type=inputs["task_type"],
    ).execute(make_context("retrain_model", run_id="reproduce"))
    report = dag.get_task("compare_metrics").python_callable(inputs=inputs, retrained=retrained)
    assert set(report["differences"]) >= {"val_auc", "val_accuracy"} and report["same_code"]
    assert report["max_abs_diff"] < 0.02, report  # CPU + fixed seed: (near-)identical
    print("REPRODUCE", json.dumps({"check": checked, "retrain": report}))
