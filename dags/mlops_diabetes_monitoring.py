"""Monitoring of the regression example (diabetes): the churn monitoring loop, built from another ModelSpec.

``model_monitoring`` of the ``DIABETES`` spec (``dags/model_specs.py``): scores each daily window with the champion
(a scikit-learn pyfunc: ``prediction``, no ``proba``), checks feature drift against its training set and
prediction drift of ``prediction``, the quality of the window whose labels arrived (RMSE/MAE rise against the
serving version's ``val_rmse``), shadow/canary on absolute errors; a failing drift or quality verdict emits
``mlops://monitoring/diabetes_regressor`` (``mlops_diabetes_ct`` retrains). Files under ``<data_root>/diabetes``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param
from mlops_airflow import storage
from mlops_airflow.pipeline import load_spec, model_monitoring

DIABETES = load_spec(Path(__file__).with_name("model_specs.py"), "DIABETES")  # also mlops_diabetes_ct
DATA_ROOT = storage.join(storage.data_root(), "diabetes")  # a URI under [mlops] data_root

with DAG(
    dag_id="mlops_diabetes_monitoring",
    description="Daily monitoring of the diabetes regressor: scoring, drift, delayed-label quality, shadow/canary",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "monitoring", "example", "regression"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day of the window to monitor (YYYY-MM-DD); empty = the run's logical date"),
        "covariate_shift": Param(0.0, type="number", minimum=0, maximum=3,
                                 description="Example data: shift of bmi, bp and s5 in standard deviations"),
        "concept_drift": Param(0.0, type="number", minimum=0, maximum=1,
                               description="Example data: change of the bmi-target relation (1 = reversed)"),
        "label_delay_days": Param(1, type="integer", minimum=1, maximum=30,
                                  description="Labels of a window arrive this many days later"),
    },
    doc_md=__doc__,
) as dag:
    model_monitoring(DIABETES, data_root=DATA_ROOT)
