"""The CT loop with a person approving promotions: the churn classifier's loop behind Airflow's human-in-the-loop gate.

The same ``continuous_training`` as ``mlops_continuous_training``, built from a copy of the bundled ``CHURN`` spec
(``dags/model_specs.py``) under its own registered model (``churn_classifier_hitl``) and data folder
(``<data_root>/hitl``), with ``approval_policy="hitl"`` whatever ``[mlops] approval_policy`` says (the local demo
sets ``auto``). When a challenger passes its holdout evaluation, ``approve_promotion`` waits on the **Required
Actions** page (the run's task, tab *Required Actions*) with the evidence: holdout metrics of challenger and
champion, the paired-bootstrap CI of the improvement, the data version, drift, and links to the MLflow pages
(model versions, runs, evaluation evidence, drift report). Approve promotes; Reject needs a reason, which goes into
the promotion ledger and onto the models page (*MLOps models*); no answer within ``[mlops] approval_timeout_hours``
rejects. ``[mlops] approvers`` names who may answer (empty: anyone with access to the DAG).

No schedule: trigger it with a day (a first run trains the first champion, no approval needed), then a later day
(e.g. with ``concept_drift``) to get a challenger and an approval request. Parsing imports no heavy library and
reads no connection or Variable.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param
from mlops_airflow import storage
from mlops_airflow.pipeline import continuous_training, load_spec

CHURN = load_spec(Path(__file__).with_name("model_specs.py"), "CHURN")
SPEC = dataclasses.replace(CHURN, name=f"{CHURN.name}_hitl", approval_policy="hitl")
DATA_ROOT = storage.join(storage.data_root(), "hitl")

with DAG(
    dag_id="mlops_continuous_training_hitl",
    description="Continuous training of the churn classifier with a person approving each promotion (Airflow HITL)",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "continuous-training", "example", "human-in-the-loop"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day of the batch to land (YYYY-MM-DD); empty = the run's logical date"),
        "covariate_shift": Param(0.0, type="number", minimum=0, maximum=2,
                                 description="Synthetic data: feature shift to inject (0 = none)"),
        "concept_drift": Param(0.0, type="number", minimum=0, maximum=1,
                               description="Synthetic data: change of the feature-label relation (0 = none)"),
        "min_val_auc": Param(0.70, type="number", minimum=0, maximum=1,
                             description="Absolute threshold a first champion (and a challenger's holdout) must pass"),
        "epochs": Param(20, type="integer", minimum=1, maximum=500, description="Training epochs"),
        "promote_to": Param("champion", type="string", enum=["champion", "canary"],
                            description="Where an approved challenger goes: champion or canary"),
        "training_window_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                                      description="Train on the last N days up to the landed day (empty = all)"),
        "cooldown_hours": Param(24, type="number", minimum=0, maximum=24 * 90,
                                description="Least time between two retrainings triggered by monitoring"),
        "min_improvement": Param(0.0, type="number", minimum=0, maximum=1,
                                 description="AUC gain over the champion a challenger needs (its paired-bootstrap "
                                             "95% CI must also exclude 0) before a person is asked to approve it"),
    },
    doc_md=__doc__,
) as dag:
    continuous_training(SPEC, data_root=DATA_ROOT)
