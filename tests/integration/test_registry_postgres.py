"""Register + promote against an MLflow server whose backend store is PostgreSQL (the production shape).

A fresh database ``mlflow_test_<random>`` on 127.0.0.1:5432 (trust auth), dropped afterwards. The
model is a real one: the artifacts of a model trained by the shared fixture are copied into a run of
this server (no second training). PostgreSQL is stricter than SQLite (``varchar(5000)`` registered-
model tags, real transactions for the promotion lock). Runtime: ~30-60 s (server start dominates).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import free_port, make_context, require_service
from unit.operators.test_registry_support import DATASET, mlflow_conn_json, needs_training_env, trained

pytestmark = [pytest.mark.integration, pytest.mark.postgres, needs_training_env]


@pytest.fixture(scope="module")
def pg_mlflow(tmp_path_factory):
    require_service("PostgreSQL", 5432)
    import psycopg2

    db = f"mlflow_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    base = tmp_path_factory.mktemp("mlflow-pg")
    port = free_port()
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"postgresql://postgres@127.0.0.1:5432/{db}", "--artifacts-destination", str(base / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"MLflow on PostgreSQL did not start: {(base / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        log.close()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def _copy_model(source_uri: str, source_server: str, client, experiment_id: str, epochs: int = 4) -> dict:
    """A run on the PostgreSQL server holding the real model trained on the other server."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    location = MlflowClient(source_server).get_logged_model(source_uri.removeprefix("models:/")).artifact_location
    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=source_server)
        run = client.create_run(experiment_id)
        client.log_artifacts(run.info.run_id, local, "model")
        client.log_metric(run.info.run_id, "val_auc", 0.84)
        client.log_param(run.info.run_id, "epochs", str(epochs))  # another config: a new version, not an adoption
        client.set_terminated(run.info.run_id)
    return {"run_id": run.info.run_id, "model_uri": f"runs:/{run.info.run_id}/model", "metrics": {"val_auc": 0.84}}


def test_register_promote_ledger_on_postgresql(pg_mlflow, mlflow_server, monkeypatch):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.operators.promotion import PromoteModelOperator, read_ledger
    from mlops_airflow.operators.registry import RegisterModelOperator

    models = trained(mlflow_server)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(pg_mlflow))
    client = MlflowHook().get_client()
    experiment = client.create_experiment("pg-registry")
    good, ts = models["good"]
    runs = [_copy_model(good["model_uri"], mlflow_server, client, experiment, epochs=n) for n in (4, 5)]

    def register(training: dict, run_id: str, try_number: int) -> dict:
        return RegisterModelOperator(
            task_id="register_model", model_name="churn_pg", training=training, training_set=ts,
            dataset_version=DATASET, min_metrics={"val_auc": 0.6},
        ).execute(make_context("register_model", run_id=run_id, try_number=try_number))

    first = [register(runs[0], "dag-run-1", n) for n in (1, 2, 3)]  # forced retries
    assert {r["version"] for r in first} == {"1"} and first[0]["aliases"] == ["champion"]
    second = register(runs[1], "dag-run-2", 1)
    assert second["version"] == "2" and second["aliases"] == ["challenger"]

    verdict = {"passed": True, "reasons": ["ok " * 2000], "evidence_uri": "runs:/x/evaluation/vs-v1.json",
               "champion_version": "1", "metrics": {"challenger": {"auc": 0.84}, "delta": 0.01, "ci": [0.001, 0.02]}}
    approval = {"chosen_options": ["Approve"], "responded_by_user": {"id": "1", "name": "bob " + "x" * 6000},
                "responded_at": "2026-11-21T09:00:00+00:00"}
    ctx = make_context("promote_model", run_id="dag-run-2")
    for try_number in (1, 2, 3):
        ctx = make_context("promote_model", run_id="dag-run-2", try_number=try_number)
        result = PromoteModelOperator(task_id="promote_model", model_name="churn_pg", version=second,
                                      approval=approval, verdict=verdict).execute(ctx)
        assert result["changed"] is True  # at least once, same seq: a retry re-announces, never re-moves
    assert client.get_registered_model("churn_pg").aliases == {"champion": "2"}
    ledger = read_ledger(client, "churn_pg")
    assert [(e["alias"], e["version"], e["action"]) for e in ledger] == [
        ("champion", "1", "first-champion"), ("challenger", "2", "candidate"), ("champion", "2", "promote"),
        ("challenger", "2", "cleared")]
    assert ledger[2]["approved_by"].startswith("bob x") and ledger[2]["previous_version"] == "1"
    assert ledger[2]["verdict"] == {"passed": True, "truncated": True}  # an over-long entry is shortened, valid JSON
    assert all(len(v) <= 5000 for v in client.get_registered_model("churn_pg").tags.values())  # varchar(5000)
