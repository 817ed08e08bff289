"""LocalTrainingOperator: the real entrypoint in the training venv, against a real MLflow server."""

from __future__ import annotations

import json
from datetime import date

import pytest
from conftest import TRAIN_PYTHON
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.operators.training import LocalTrainingOperator, train_model_task

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo"),
]
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]


@pytest.fixture
def mlflow_conn(mlflow_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    return mlflow_server


def _training_set(tmp_path, generator, **knobs):
    df = generator.generate_batch(date(2026, 11, 1), n_customers=1500, **knobs)
    path = generator.write_batch(df, tmp_path / "train.parquet")
    return {"uri": str(path), "hash": "h" * 64, "features": FEATURES, "label": "churned"}


def _op(training_set, experiment="test-training", **kw):
    return LocalTrainingOperator(
        task_id="train_model", training_set=training_set, experiment_name=experiment, python=str(TRAIN_PYTHON),
        dataset_version={"repo": "r", "rev": "abc", "path": "data/x", "md5": "m"},
        training_config={"epochs": 3}, **kw,
    )


def test_trains_logs_and_a_retry_adopts_the_finished_run(tmp_path, generator, mlflow_conn, context):
    ts = _training_set(tmp_path, generator)
    ctx = context(task_id="train_model", run_id="run-adopt")
    first = _op(ts).execute(ctx)
    assert first["run_id"] and first["model_uri"].startswith("models:/") and not first["adopted"]
    assert 0.5 < first["metrics"]["val_auc"] <= 1.0
    assert first["runtime"]["device"] == "cpu" and first["runtime"]["torch_version"].startswith("2.")
    assert ctx["ti"].xcom["_link_MlflowRunLink"].endswith(first["run_id"])
    json.dumps(first)

    from mlflow import MlflowClient

    run = MlflowClient(mlflow_conn).get_run(first["run_id"])
    assert run.data.tags["mlops.run_id"] == "run-adopt" and run.data.tags["mlops.task_id"] == "train_model"
    assert run.data.tags["mlops.dataset_md5"] == "m" and run.data.params["epochs"] == "3"

    again = _op(ts).execute(context(task_id="train_model", run_id="run-adopt", try_number=2))
    assert again["adopted"] and again["run_id"] == first["run_id"]


def test_reads_an_s3_training_set_through_the_store_connection(generator, mlflow_conn, s3_store, context, monkeypatch,
                                                               capfd):
    """The set is only in the bucket: the job reads it with the store's settings and credentials in its env."""
    key_id, secret = "AKIALOCALTEST0004711", "local-store-secret-0815"
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STORE", json.dumps({
        "conn_type": "aws", "login": key_id, "password": secret,
        "extra": {"endpoint_url": s3_store.endpoint, "region_name": "us-east-1"}}))
    df = generator.generate_batch(date(2026, 11, 1), n_customers=400)
    s3_store.client().put_object(Bucket=s3_store.bucket, Key="ts/train.parquet", Body=df.to_parquet(index=False))
    uri = f"{s3_store.root}/ts/train.parquet"
    ctx = context(task_id="train_model", run_id="run-s3")
    result = _op({"uri": uri, "hash": "s" * 64, "features": FEATURES, "label": "churned"},
                 experiment="test-training-s3").execute(ctx)

    from mlflow import MlflowClient

    assert MlflowClient(mlflow_conn).get_run(result["run_id"]).data.params["training_set_uri"] == uri
    out = capfd.readouterr().out
    assert f"[train] training set {uri}: 400 rows" in out and "through connection mlops_store" in out
    pushed = json.dumps([result, ctx["ti"].xcom], default=str)  # the return value is the XCom
    assert not any(s in out or s in pushed for s in (key_id, secret))


def test_bad_training_set_fails_with_the_cause(tmp_path, generator, mlflow_conn, context):
    df = generator.generate_batch(date(2026, 11, 1), n_customers=200).drop(columns=["usage_hours"])
    path = generator.write_batch(df, tmp_path / "bad.parquet")
    ts = {"uri": str(path), "hash": "x", "features": FEATURES, "label": "churned"}
    with pytest.raises(TrainingError, match=r"exited with code \d+: .*usage_hours"):
        _op(ts).execute(context(task_id="train_model", run_id="run-bad"))


def test_backend_is_chosen_by_configuration(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_BACKEND", "local")
    op = train_model_task(task_id="t", training_set={}, dataset_version={}, experiment_name="e")
    assert isinstance(op, LocalTrainingOperator)
    with pytest.raises(ValueError, match="not one of"):
        train_model_task(backend="spark", task_id="t2", training_set={}, dataset_version={}, experiment_name="e")


def test_missing_training_environment_is_a_clear_error(tmp_path, mlflow_conn, context, monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_PYTHON", raising=False)
    monkeypatch.delenv("MLOPS_TRAINING_PYTHON", raising=False)
    op = LocalTrainingOperator(task_id="t", training_set={"uri": "x", "hash": "y"}, experiment_name="e3",
                               dataset_version={"rev": "r"})
    with pytest.raises(TrainingError, match="no training environment configured"):
        op.execute(context(task_id="t", run_id="run-noenv"))


def test_mlflow_down_fails_in_seconds_with_one_line(monkeypatch, context):
    """The registry is unreachable: one line naming the URI and the next step, long before MLflow's own retries."""
    import time

    from conftest import free_port
    from mlops_airflow.exceptions import RegistryError

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": uri}}))
    op = LocalTrainingOperator(task_id="t", training_set={"uri": "x", "hash": "y"}, experiment_name="e-down",
                               dataset_version={"rev": "r"}, python=str(TRAIN_PYTHON))
    started = time.monotonic()
    with pytest.raises(RegistryError) as err:
        op.execute(context(task_id="t", run_id="run-down"))
    assert time.monotonic() - started < 60
    message = str(err.value)
    assert uri in message and "\n" not in message
