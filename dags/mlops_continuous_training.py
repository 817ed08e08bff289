"""Reference continuous-training DAG: version -> validate -> features -> train -> register -> monitor.

Built with the pack's one-call pipeline API: a ``ModelSpec`` of the churn classifier and ``continuous_training``
(``mlops_airflow.pipeline``), which builds land -> validate -> guard -> version -> materialise -> skew -> training
set -> train -> register -> drift -> evaluate -> approve -> promote -> summarize. Parsing imports no heavy library
and reads no connection or Variable: paths come from Airflow's configuration (``[mlops] data_root``), the training
backend from ``[mlops] training_backend``.

Scheduled on ``mlops://monitoring/churn_classifier``: a failing monitoring verdict (drift, concept drift) emits
that asset event with its reason, and this DAG retrains, behind ``RetrainGuardOperator`` (no retraining when the
batch's data gate failed, a cool-down between retrainings); the reason goes into the new model's
reproducibility record. Trigger it from the UI with the params below too; ``make demo`` runs it in its
simulated timeline (``scripts/scenario.py``) and ``local_stack.py demo --day`` once.

The batch comes from the synthetic generator in ``include/data`` (the demo's data; a team passes its own function
or a URI template as ``source``); the holdout is the next day's rows of another seed salt.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Asset, Param
from mlops_airflow.pipeline import continuous_training, load_spec

CHURN = load_spec(Path(__file__).with_name("model_specs.py"), "CHURN")  # also mlops_monitoring
RETRAIN_TRIGGER = Asset(f"mlops://monitoring/{CHURN.name}")  # emitted by failing verdicts (mlops_monitoring)

with DAG(
    dag_id="mlops_continuous_training",
    description="Continuous training of the churn classifier: DVC, GX, Feast, training, MLflow, Evidently",
    schedule=[RETRAIN_TRIGGER],
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "continuous-training", "reference"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day of the batch to land (YYYY-MM-DD), a complete day: up to yesterday "
                                 "(UTC); a later day is refused before anything is landed. Empty = the newest "
                                 "complete day at the run's logical date"),
        "covariate_shift": Param(0.0, type="number", minimum=0, maximum=2,
                                 description="Synthetic data: feature shift to inject (0 = none)"),
        "concept_drift": Param(0.0, type="number", minimum=0, maximum=1,
                               description="Synthetic data: change of the feature-label relation (0 = none)"),
        "min_val_auc": Param(0.70, type="number", minimum=0, maximum=1,
                             description="Absolute threshold a first champion must pass"),
        "epochs": Param(20, type="integer", minimum=1, maximum=500, description="Training epochs"),
        "promote_to": Param("champion", type="string", enum=["champion", "canary"],
                            description="Where an approved challenger goes: champion (all traffic) or canary (a "
                                        "share of traffic; mlops_monitoring promotes it to champion when it is "
                                        "significantly better on labelled data, or rolls it back)"),
        "training_window_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                                      description="Train on the last N days of the dataset up to the landed day "
                                                  "(empty = all history); recorded for reproduction"),
        "cooldown_hours": Param(24, type="number", minimum=0, maximum=24 * 90,
                                description="Least time between two retrainings triggered by monitoring (manual runs "
                                            "are not held back)"),
        "min_improvement": Param(0.0, type="number", minimum=0, maximum=1,
                                 description="AUC gain over the champion a challenger needs (its paired-bootstrap "
                                             "95% CI must also exclude 0) before it is proposed for promotion"),
    },
    doc_md=__doc__,
) as dag:
    continuous_training(CHURN)
