"""Reference monitoring DAG: score a daily window, check drift and delayed-label quality, compare shadow/canary.

Built with ``model_monitoring`` (``mlops_airflow.pipeline``) from the churn classifier's ``ModelSpec`` (the one the
CT DAG uses).

For each daily window of ``churn_classifier``:

1. ``land_window``: the day's batch (synthetic generator from include/data, with the scenario's covariate shift
   and concept drift knobs) and its labels, which only *arrive* ``label_delay_days`` later;
2. ``resolve_champion``: the champion's version and, from its reproducibility record, its training set (the
   drift reference) and features;
3. ``score_window``: champion (+ canary share, + shadow/challenger on every row) into the versioned inference log;
4. ``check_drift``: per-feature drift of the window against the champion's training set;
   ``check_prediction_drift``: drift of the champion's served ``proba`` against the first window that champion
   served (``prediction_reference``, from the per-day index; on its first day the window is its own reference,
   so no drift). Informative for on-call only: it emits no retraining event, and logs to its own MLflow
   experiment (``mlops-monitoring-predictions``) so the models page keeps showing the feature-drift verdict;
5. ``labelled_window``: the window whose labels arrived today (``label_delay_days`` ago) and its inference log;
   ``check_quality`` joins them (concept drift = quality drop against the serving model's validation AUC,
   confidence, business outcome; labels of traffic served by a version that is no longer champion are reported
   but emit no retraining event); ``shadow_canary`` compares the served model with shadow/challenger/canary on
   the same labelled rows (McNemar; the canary against the champion on its own rows: Fisher's exact test), and
   ``act_on_recommendation`` routes its verdict: promote the better shadow/challenger (approval gate, ledger),
   roll back a worse canary (its alias removed, ledger), or hold;
6. a failing drift or quality verdict emits an event on ``mlops://monitoring/churn_classifier`` (with its
   reason), the asset ``mlops_continuous_training`` is scheduled on.

Parsing imports no heavy library and reads no connection or Variable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param
from mlops_airflow.pipeline import load_spec, model_monitoring

CHURN = load_spec(Path(__file__).with_name("model_specs.py"), "CHURN")  # also mlops_continuous_training

with DAG(
    dag_id="mlops_monitoring",
    description="Daily monitoring of the churn classifier: scoring, drift, delayed-label quality, shadow/canary",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["mlops", "monitoring", "reference"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "day": Param(None, type=["null", "string"], format="date",
                     description="Day of the window to monitor (YYYY-MM-DD); empty = the run's logical date"),
        "covariate_shift": Param(0.0, type="number", minimum=0, maximum=2,
                                 description="Synthetic data: feature shift of the window (0 = none)"),
        "concept_drift": Param(0.0, type="number", minimum=0, maximum=1,
                               description="Synthetic data: change of the feature-label relation (0 = none)"),
        "label_delay_days": Param(1, type="integer", minimum=1, maximum=30,
                                  description="Labels of a window arrive this many days later"),
    },
    doc_md=__doc__,
) as dag:
    model_monitoring(CHURN)
