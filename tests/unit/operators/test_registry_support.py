"""Shared helpers of the registry/evaluation/promotion tests (no tests here).

Real models: ``include/training/train.py`` runs in the training venv against the session's real
MLflow server. Training is memoised per server (``functools.cache``), so the modules that import
this helper share two tiny models (1500 rows, 4 epochs, ~10-20 s each):

- ``good``: trained on clean data (the holdout's distribution);
- ``weak``: trained on concept-drifted data (the feature-label relation changed): clearly worse.
"""

from __future__ import annotations

import functools
import json
import tempfile
import uuid
from datetime import date
from pathlib import Path

import pytest
from conftest import TRAIN_PYTHON, load_generator, make_context

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
DATASET = {"repo": "data_repo", "rev": "0" * 40, "path": "data/customer_events", "md5": "d" * 32}
needs_training_env = pytest.mark.skipif(
    not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo")


def mlflow_conn_json(uri: str) -> str:
    return json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": uri}})


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@functools.cache
def _base() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlops-registry-tests-"))


def _training_set(name: str, **knobs: float) -> dict:
    generator = load_generator()
    df = generator.generate_batch(date(2026, 11, 1), n_customers=1500, **knobs)
    path = generator.write_batch(df, _base() / f"{name}.parquet")
    return {"uri": str(path), "hash": f"{name}-hash".ljust(64, "0"), "features": FEATURES, "label": "churned",
            "feature_service": "churn_model_v1", "project": "churn", "definitions_hash": "f" * 64, "rows": len(df)}


@functools.cache
def trained(tracking_uri: str) -> dict:
    """``{"good": (training XCom, training set), "weak": (...)}``, trained once per MLflow server."""
    return train_jobs(tracking_uri, {"good": ("good", {}, {"epochs": 4}),
                                     "weak": ("weak", {"concept_drift": 1.0}, {"epochs": 4})})


def train_jobs(tracking_uri: str, jobs: dict[str, tuple[str, dict, dict]]) -> dict:
    """Train ``{key: (training set name, generator knobs, training_config)}`` side by side, each as its own DAG
    run (``train-<key>-<uuid>``); jobs naming the same training set share its file (written once).
    Returns ``{key: (training XCom, training set)}``."""
    import os

    from mlops_airflow.operators.training import LocalTrainingOperator

    old = os.environ.get("AIRFLOW_CONN_MLFLOW_DEFAULT")
    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = mlflow_conn_json(tracking_uri)
    try:
        from concurrent.futures import ThreadPoolExecutor

        sets = {ts_name: _training_set(ts_name, **knobs) for ts_name, knobs, _ in jobs.values()}

        def train(key: str, ts: dict, config: dict) -> tuple:
            op = LocalTrainingOperator(
                task_id="train_model", training_set=ts, dataset_version=DATASET, experiment_name="test-registry",
                python=str(TRAIN_PYTHON), training_config=config,
            )
            return op.execute(make_context(task_id="train_model", run_id=f"train-{key}-{uuid.uuid4().hex}")), ts

        # The jobs are separate processes: training them side by side shortens the wait (the experiment is
        # created first, so they do not race to create it).
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        if client.get_experiment_by_name("test-registry") is None:
            client.create_experiment("test-registry")
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = {key: pool.submit(train, key, sets[ts_name], config)
                       for key, (ts_name, _, config) in jobs.items()}
            return {key: future.result() for key, future in futures.items()}
    finally:
        if old is None:
            os.environ.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = old


@functools.cache
def holdout(n: int = 2000) -> str:
    """A fresh labelled holdout neither model saw (another salt = other customers), clean distribution."""
    generator = load_generator()
    df = generator.generate_batch(date(2026, 11, 2), n_customers=n, salt="holdout")
    return str(generator.write_batch(df, _base() / f"holdout-{n}.parquet"))


def register(model_name: str, which: tuple, *, min_metrics: dict | None = None, run_id: str | None = None,
             try_number: int = 1, **kwargs) -> dict:
    from mlops_airflow.operators.registry import RegisterModelOperator

    training, ts = which
    op = RegisterModelOperator(task_id="register_model", model_name=model_name, training=training, training_set=ts,
                               dataset_version=DATASET, min_metrics=min_metrics, **kwargs)
    ctx = make_context(task_id="register_model", run_id=run_id or unique("reg"), try_number=try_number)
    result = op.execute(ctx)
    result["_context"] = ctx
    return result


def scores_dir() -> Path:
    """Where scored holdouts are cached for the whole session (per logged model + holdout bytes)."""
    return _base() / "scores"
