"""The bundled examples' ``ModelSpec``s, shared by their CT and monitoring DAGs (no DAG in this file).

A spec is plain data (``mlops_airflow.pipeline.ModelSpec``): parsing this imports no heavy library.
"""

from __future__ import annotations

from airflow.configuration import conf
from mlops_airflow.pipeline import ModelSpec

INCLUDE = conf.get("mlops", "include_dir", fallback=None) or f"{conf.get('core', 'dags_folder')}/../include"
CHURN_MODEL = "churn_classifier"
CHURN_FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
CHURN_KNOBS = {"covariate_shift": "{{ params.covariate_shift }}", "concept_drift": "{{ params.concept_drift }}"}

CHURN = ModelSpec(
    name=CHURN_MODEL,
    task_type="binary_classification",
    label="churned",
    entity_columns=["customer_id"],
    source=f"{INCLUDE}/data/generator.py:generate_batch",
    source_params=CHURN_KNOBS,
    suite=f"{INCLUDE}/gx/customer_events.json",
    dataset_path="data/customer_events",
    feature_service="churn_model_v1",  # the Feast repository of connection feast_default (in the data repo)
    feature_asset="feast://churn/customer_activity",
    training_config={"epochs": "{{ params.epochs }}"},  # include/training/train.py, [mlops] training_python
    min_metrics={"auc": "{{ params.min_val_auc }}"},  # val_auc for a first champion, holdout auc for a challenger
    min_improvement="{{ params.min_improvement }}",
    monitored_columns=CHURN_FEATURES,
    holdout=f"{INCLUDE}/data/generator.py:generate_batch",
    holdout_params={"n_customers": 2000, "salt": "holdout", **CHURN_KNOBS},
)

# The regression example (include/diabetes): scikit-learn's bundled diabetes data in daily batches, its own GX
# suite, Feast repository (connection feast_diabetes: data_repo/feature_repos/diabetes) and scikit-learn
# entrypoint; trained in the environment of its requirements file ([mlops] diabetes_training_python names a
# ready interpreter instead, e.g. in tests).
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
DIABETES_KNOBS = CHURN_KNOBS

DIABETES = ModelSpec(
    name="diabetes_regressor",
    task_type="regression",
    label="target",
    entity_columns=["patient_id"],
    source=f"{INCLUDE}/diabetes/data.py:daily_batch",
    source_params=DIABETES_KNOBS,
    suite=f"{INCLUDE}/diabetes/gx/suite.json",
    dataset_path="data/diabetes",
    feature_service="diabetes_v1",
    feast_conn_id="feast_diabetes",
    feature_asset="feast://diabetes/patient_measurements",
    entrypoint=f"{INCLUDE}/diabetes/train.py",
    requirements=f"{INCLUDE}/diabetes/requirements.txt",
    python=conf.get("mlops", "diabetes_training_python", fallback=None) or None,
    max_metrics={"rmse": 70.0},  # val_rmse for a first champion, holdout rmse for a challenger
    min_improvement="{{ params.min_improvement }}",
    monitored_columns=DIABETES_FEATURES,
    # A covariate shift moves 3 of the 10 measurements (bmi, bp, s5): dataset drift from 3 drifted columns.
    drift_share_threshold=0.3,
    holdout=f"{INCLUDE}/diabetes/data.py:holdout_batch",
    holdout_params=DIABETES_KNOBS,
)
