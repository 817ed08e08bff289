"""RegisterModelOperator + the reproducibility record, against a real MLflow server and real trained models.

Runtime: ~60-90 s on a loaded 2-core box, most of it training the two shared tiny models (once per
session, see test_registry_support.py) and importing mlflow.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import free_port, make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators.promotion import read_ledger
from mlops_airflow.record import RECORD_ARTIFACT, RECORD_SCHEMA_VERSION, load_record
from unit.operators.test_registry_support import (
    DATASET,
    mlflow_conn_json,
    needs_training_env,
    register,
    trained,
    unique,
)

pytestmark = [pytest.mark.integration, needs_training_env]


@pytest.fixture
def models(mlflow_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(mlflow_server))
    return trained(mlflow_server)


@pytest.fixture
def client(models):
    return MlflowHook().get_client()


def test_three_forced_retries_register_one_version_and_one_champion(models, client):
    name = unique("retry")
    dag_run = unique("run")
    results = [register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id=dag_run, try_number=n)
               for n in (1, 2, 3)]
    assert {r["version"] for r in results} == {"1"}
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    assert all(r["aliases"] == ["champion"] for r in results)
    ledger = read_ledger(client, name)
    assert [(e["alias"], e["version"], e["action"]) for e in ledger] == [("champion", "1", "first-champion")]
    first_event = results[0]["_context"]["outlet_events"]
    assert [e.extra["changed"] for e in first_event.values()] == [True]
    # At least once (registry/aliases.py): a retry of the task whose earlier try moved the alias announces that move
    # again, with the same ledger seq (the earlier try's event may never have been recorded; consumers dedupe on seq).
    retry_event = results[2]["_context"]["outlet_events"]
    assert [(e.extra["changed"], e.extra["seq"]) for e in retry_event.values()] == [(True, 1)]
    json.dumps({k: v for k, v in results[0].items() if k != "_context"})  # XCom is small JSON


def test_record_is_complete_tagged_and_integrity_checked(models, client):
    name = unique("record")
    reg = register(name, models["good"], min_metrics={"val_auc": 0.6})
    hook = MlflowHook()
    record = load_record(hook, client, name, reg["version"])
    assert record["schema_version"] == RECORD_SCHEMA_VERSION
    assert record["model"] == {"name": name, "version": reg["version"]}
    assert record["dataset"]["rev"] == DATASET["rev"] and record["dataset"]["md5"] == DATASET["md5"]
    assert record["features"]["feature_service"] == "churn_model_v1" and record["features"]["definitions_hash"]
    assert record["training_set"]["hash"] == models["good"][1]["hash"]
    assert record["training"]["seed"] == "42" and record["training"]["config"]["epochs"] == "4"
    assert "dataset.md5" not in record["training"]["config"]
    assert record["code"]["airflow_lock_sha256"] and record["code"]["training_entrypoint_sha256"]
    runtime = record["runtime"]
    assert runtime["device"] == "cpu" and runtime["torch_version"].startswith("2.") and "determinism" in runtime
    assert record["airflow"]["task_id"] == "register_model" and record["mlflow"]["run_id"] == reg["run_id"]
    tags = client.get_model_version(name, reg["version"]).tags
    assert tags["mlops.record_sha256"] == record["record_sha256"] == reg["record_sha256"]
    assert tags["mlops.training_set_hash"] == record["training_set"]["hash"] and tags["mlops.seed"] == "42"

    tampered = {**record, "training_set": {**record["training_set"], "rows": 1}}
    hook.log_json_artifact(client, reg["run_id"], tampered, RECORD_ARTIFACT)
    with pytest.raises(RegistryError, match="modified after registration"):
        load_record(hook, client, name, reg["version"])
    hook.log_json_artifact(client, reg["run_id"], record, RECORD_ARTIFACT)  # restore for other tests


def test_second_model_becomes_challenger_and_champion_stays(models, client):
    name = unique("challenger")
    first = register(name, models["weak"], min_metrics={"val_auc": 0.5})
    second = register(name, models["good"], min_metrics={"val_auc": 0.5})
    assert first["aliases"] == ["champion"] and second["aliases"] == ["challenger"]
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    assert [(e["alias"], e["action"]) for e in read_ledger(client, name)] == [
        ("champion", "first-champion"), ("challenger", "candidate")]


def test_first_model_without_thresholds_or_below_them_is_not_champion(models, client):
    name = unique("nothreshold")
    assert register(name, models["good"], min_metrics=None)["aliases"] == []
    assert register(name, models["weak"], min_metrics={"val_auc": 0.999})["aliases"] == []
    assert client.get_registered_model(name).aliases == {} and read_ledger(client, name) == []


def test_run_without_a_model_is_refused_and_nothing_is_registered(models, client):
    name = unique("nomodel")
    experiment = client.get_experiment_by_name("test-registry").experiment_id
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    training = {"run_id": run.info.run_id, "model_uri": f"runs:/{run.info.run_id}/model", "metrics": {"val_auc": 0.9}}
    with pytest.raises(RegistryError, match=rf"run {run.info.run_id} has no logged model .*nothing registered for "
                                            rf"{name}.*retrain"):
        register(name, (training, models["good"][1]), min_metrics={"val_auc": 0.5})
    assert client.search_registered_models(f"name = '{name}'") == []

    missing_run = {"run_id": "0" * 32, "model_uri": "models:/m-0", "metrics": {}}
    with pytest.raises(RegistryError, match="training run 0+ not found in MLflow"):
        register(name, (missing_run, models["good"][1]))


def test_server_down_is_a_clear_error_and_the_retry_completes(models, client, monkeypatch):
    name = unique("down")
    dag_run = unique("run")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(f"http://127.0.0.1:{free_port()}"))
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"is unreachable .* nothing was changed in the registry\. Airflow retries"):
        register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id=dag_run, try_number=1)
    assert time.monotonic() - start < 30
    assert client.search_registered_models(f"name = '{name}'") == []  # nothing half-done
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(client.tracking_uri))
    retried = register(name, models["good"], min_metrics={"val_auc": 0.6}, run_id=dag_run, try_number=2)
    assert retried["version"] == "1" and retried["aliases"] == ["champion"]


def test_unknown_model_name_is_a_clear_error(models, client):
    from mlops_airflow.operators.evaluation import EvaluateChallengerOperator
    from mlops_airflow.operators.promotion import PromoteModelOperator

    approval = {"chosen_options": ["Approve"], "responded_by_user": {"id": "u", "name": "alice"},
                "responded_at": "2026-11-01T00:00:00+00:00"}
    with pytest.raises(RegistryError, match=r"registered model 'no_such_model' does not exist; check model_name"):
        PromoteModelOperator(task_id="promote", model_name="no_such_model", version="1",
                             approval=approval).execute(make_context("promote"))
    with pytest.raises(RegistryError, match=r"registered model 'no_such_model' does not exist"):
        EvaluateChallengerOperator(task_id="evaluate", model_name="no_such_model", challenger="1",
                                   holdout_path="/nonexistent.parquet",
                                   min_metrics={"auc": 0.5}).execute(make_context("evaluate"))
