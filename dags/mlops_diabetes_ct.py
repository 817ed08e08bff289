"""Continuous training of the regression example (diabetes): the churn CT loop, built from another ModelSpec.

``continuous_training`` of the ``DIABETES`` spec (``dags/model_specs.py``): scikit-learn's bundled diabetes data in
daily batches (``include/diabetes/data.py``), its GX suite, its Feast repository (connection ``feast_diabetes``),
its scikit-learn entrypoint and requirements, RMSE thresholds. Scheduled on
``mlops://monitoring/diabetes_regressor`` (emitted by ``mlops_diabetes_monitoring``); its files live under
``<data_root>/diabetes``. Parsing imports no heavy library and reads no connection or Variable.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Asset, Param
from mlops_airflow import storage
from mlops_airflow.pipeline import continuous_training, load_spec

DIABETES = load_spec(Path(__file__).with_name("model_specs.py"), "DIABETES")  # also mlops_diabetes_monitoring
DATA_ROOT = storage.join(storage.data_root(), "diabetes")  # a URI under [mlops] data_root

with DAG(
    dag_id="mlops_diabetes_ct",
    description="Continuous training of the diabetes regressor: DVC, GX, Feast, scikit-learn, MLflow, Evidently",
    schedule=[Asset(f"mlops://monitoring/{DIABETES.name}")],
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "continuous-training", "example", "regression"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day of the batch to land (YYYY-MM-DD), a complete day: up to yesterday "
                                 "(UTC); a later day is refused before anything is landed. Empty = the newest "
                                 "complete day at the run's logical date"),
        "covariate_shift": Param(0.0, type="number", minimum=0, maximum=3,
                                 description="Example data: shift of bmi, bp and s5 in standard deviations"),
        "concept_drift": Param(0.0, type="number", minimum=0, maximum=1,
                               description="Example data: change of the bmi-target relation (1 = reversed)"),
        "promote_to": Param("champion", type="string", enum=["champion", "canary"],
                            description="Where an approved challenger goes"),
        "training_window_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                                      description="Train on the last N days up to the landed day (empty = all)"),
        "cooldown_hours": Param(24, type="number", minimum=0, maximum=24 * 90,
                                description="Least time between two retrainings triggered by monitoring"),
        "min_improvement": Param(0.0, type="number", minimum=0,
                                 description="RMSE decrease over the champion a challenger needs (its paired-"
                                             "bootstrap 95% CI must also exclude 0)"),
    },
    doc_md=__doc__,
) as dag:
    continuous_training(DIABETES, data_root=DATA_ROOT)
