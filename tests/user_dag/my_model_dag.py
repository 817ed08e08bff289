"""A user's own continuous-training DAG: a scikit-learn classifier, features from the batch, no Feast."""

import sys
from datetime import datetime

from airflow.sdk import DAG
from mlops_airflow.pipeline import ModelSpec, continuous_training

spec = ModelSpec(
    name="my_classifier",
    label="y",
    entity_columns=["account_id"],
    source="tests/user_dag/my_model.py:daily_batch",  # (day, **params) -> DataFrame; or "s3://bucket/{ds}.parquet"
    features=["x1", "x2", "x3"],
    dataset_path="data/my_events",  # versioned with DVC
    entrypoint="tests.user_dag.my_model:train",
    python=sys.executable,  # scikit-learn, no torch
    min_metrics={"auc": 0.75},  # a first model's val_auc, a challenger's holdout auc
    holdout="tests/user_dag/my_model.py:holdout_batch",
    approval_policy="auto",
)

with DAG(
    dag_id="my_model_ct",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": 10},
    tags=["my-team"],
):
    continuous_training(spec)
