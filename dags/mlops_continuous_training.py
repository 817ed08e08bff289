"""Reference continuous-training DAG: version -> validate -> features -> train -> register -> monitor.

Thin composition of the pack's operators. Parsing imports no heavy library and reads no
connection or Variable: paths come from Airflow's configuration (``[mlops] data_root``), the
training backend from ``[mlops] training_backend``.

Scheduled on ``mlops://monitoring/churn_classifier``: a failing monitoring verdict (drift, concept drift) emits
that asset event with its reason, and this DAG retrains, behind ``RetrainGuardOperator`` (no retraining when the
batch's data gate failed, a cool-down between retrainings); the reason goes into the new model's
reproducibility record. Trigger it from the UI with the params below too; ``make demo`` runs it in its
simulated timeline (``scripts/scenario.py``) and ``local_stack.py demo --day`` once.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from airflow.configuration import conf
from airflow.sdk import DAG, Asset, Param, task
from mlops_airflow.operators.approval import approval_gate
from mlops_airflow.operators.data_validation import DataValidationGateOperator
from mlops_airflow.operators.drift import DataDriftOperator
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator
from mlops_airflow.operators.evaluation import EvaluateChallengerOperator
from mlops_airflow.operators.feast_features import (
    FeastMaterializationRecordOperator,
    FeastMaterializationWindowsOperator,
    FeastMaterializeOperator,
    FeastTrainingSetOperator,
    FeatureSkewCheckOperator,
)
from mlops_airflow.operators.promotion import PromoteModelOperator
from mlops_airflow.operators.registry import RegisterModelOperator
from mlops_airflow.operators.retrain_guard import RetrainGuardOperator
from mlops_airflow.operators.training import train_model_task

DATA_ROOT = conf.get("mlops", "data_root", fallback="/tmp/mlops-data")
INCLUDE = conf.get("mlops", "include_dir", fallback=None) or f"{conf.get('core', 'dags_folder')}/../include"
MODEL_NAME = "churn_classifier"
DATASET = Asset("dvc://data_repo/data/customer_events")
FEATURES = Asset("feast://churn/customer_activity")  # extra: the materialised windows
RETRAIN_TRIGGER = Asset(f"mlops://monitoring/{MODEL_NAME}")  # emitted by failing verdicts (mlops_monitoring)

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
                     description="Day of the batch to land (YYYY-MM-DD); empty = the run's logical date"),
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

    @task(retries=2)
    def land_batch(params: dict, logical_date=None) -> dict:
        """Land the day's batch (synthetic generator from include/data) into the landing folder.

        The day is ``params.day``, else the newest *complete* day at the run's logical date: a scheduled run's
        interval start, or, for a manual or asset-triggered run (logical date now, or none), yesterday - today's
        data has not all arrived, and materialising a window that ends in the future is refused.
        """
        from datetime import date, datetime
        from pathlib import Path

        from mlops_airflow.operators._common import load_module

        now = datetime.now(UTC)
        day = date.fromisoformat(params["day"]) if params.get("day") else (logical_date or now).date()
        if not params.get("day") and datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) > now:
            day -= timedelta(days=1)
        generator = load_module(Path(INCLUDE) / "data" / "generator.py", "mlops_generator")
        df = generator.generate_batch(day, covariate_shift=float(params["covariate_shift"]),
                                      concept_drift=float(params["concept_drift"]))
        out = generator.write_batch(df, Path(DATA_ROOT) / "landing" / f"{day.isoformat()}.parquet")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        window_days = params.get("training_window_days")
        return {"path": str(out), "day": day.isoformat(), "rows": len(df),
                "start": start.isoformat(), "end": end.isoformat(),
                "train_from": (end - timedelta(days=int(window_days))).isoformat() if window_days else None}

    landed = land_batch()

    validate = DataValidationGateOperator(
        task_id="validate_batch",
        data_path="{{ ti.xcom_pull(task_ids='land_batch')['path'] }}",
        suite_path=f"{INCLUDE}/gx/customer_events.json",
        quarantine_dir=f"{DATA_ROOT}/quarantine",
        results_dir=f"{DATA_ROOT}/validation",
        key_columns=["customer_id"],
    )

    # Guard rails: runs after the data gate (a failed gate fails the run; no verdict blocks), then the cool-down.
    # The decision (reason, trigger, simulated clock of `make demo` via params.day) goes into the new model's record.
    guard = RetrainGuardOperator(
        task_id="retrain_guard",
        model_name=MODEL_NAME,
        data_gate="{{ ti.xcom_pull(task_ids='validate_batch') }}",
        require_data_gate=True,
        cooldown="{{ params.cooldown_hours }}",
        as_of="{{ params.day ~ 'T23:59:59+00:00' if params.day else '' }}",
    )

    version = DvcVersionDatasetOperator(
        task_id="version_dataset",
        source_path="{{ ti.xcom_pull(task_ids='land_batch')['path'] }}",
        dataset_path="data/customer_events",
        file_name="{{ ti.xcom_pull(task_ids='land_batch')['day'] }}.parquet",
        outlets=[DATASET],
    )

    # Materialisation bound to the run's interval (the landed day) plus 6 h of late data, split into bounded
    # windows: one mapped task each (flat memory however long the interval; each retried on its own), then one
    # record of all windows (the Asset event extra and the reproducibility record).
    plan = FeastMaterializationWindowsOperator(
        task_id="plan_materialization",
        start="{{ ti.xcom_pull(task_ids='land_batch')['start'] }}",
        end="{{ ti.xcom_pull(task_ids='land_batch')['end'] }}",
        overlap=timedelta(hours=6),
        max_window=timedelta(hours=12),
    )
    windows = FeastMaterializeOperator.partial(
        task_id="materialize_window", max_active_tis_per_dagrun=2,
    ).expand(window=plan.output)
    materialize = FeastMaterializationRecordOperator(
        task_id="materialize_features",
        windows=windows.output,
        outlets=[FEATURES],
    )

    # Training-serving skew on a sample of the interval's customers: online value == offline point-in-time value.
    # Runs beside training (a few seconds); a skewed online store blocks registration.
    skew = FeatureSkewCheckOperator(
        task_id="check_feature_skew",
        feature_service="churn_model_v1",
        # Entities sampled from the landed (and materialised) batch: memory bounded by one day's rows, never by
        # the feature view's whole offline source.
        entity_df_path="{{ ti.xcom_pull(task_ids='land_batch')['path'] }}",
        as_of="{{ ti.xcom_pull(task_ids='land_batch')['end'] }}",
        lookback=timedelta(hours=30),
        sample_size=200,
        report_dir=f"{DATA_ROOT}/reports",
    )

    training_set = FeastTrainingSetOperator(
        task_id="build_training_set",
        dataset_version=version.output,
        feature_service="churn_model_v1",
        output_dir=f"{DATA_ROOT}/training_sets",
        track_with_dvc=True,  # also versioned in the data repository (training_sets/<service>/<hash>.parquet)
        # The training window (param training_window_days): rows of the last N days up to the landed day.
        entity_start="{{ ti.xcom_pull(task_ids='land_batch')['train_from'] }}",
        entity_end="{{ ti.xcom_pull(task_ids='land_batch')['end'] }}",
    )

    train = train_model_task(
        task_id="train_model",
        training_set=training_set.output,
        dataset_version=version.output,
        experiment_name=MODEL_NAME,
        training_config={"epochs": "{{ params.epochs }}"},
        execution_timeout=timedelta(hours=2),
    )

    register = RegisterModelOperator(
        task_id="register_model",
        model_name=MODEL_NAME,
        training=train.output,
        training_set=training_set.output,
        dataset_version=version.output,
        materialization=materialize.output,
        min_metrics={"val_auc": "{{ params.min_val_auc }}"},
        retrain=guard.output,
    )

    drift = DataDriftOperator(
        task_id="check_drift",
        reference_path="{{ ti.xcom_pull(task_ids='build_training_set')['uri'] }}",
        current_path="{{ ti.xcom_pull(task_ids='land_batch')['path'] }}",
        columns=["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"],
        report_dir=f"{DATA_ROOT}/reports",
        model_name=MODEL_NAME,
        emit_retrain_event=False,  # the batch vs its own training set: retraining is mlops_monitoring's call
    )

    @task.short_circuit(retries=2, ignore_downstream_trigger_rules=False)
    def has_challenger(ti=None) -> bool:
        """Evaluate -> approve -> promote only when a champion existed (the first-model flow is unchanged)."""
        return "challenger" in (ti.xcom_pull(task_ids="register_model") or {}).get("aliases", [])

    @task(retries=2)
    def holdout_batch(params: dict, ti=None) -> dict:
        """A fresh labelled holdout neither model trained on: the next day's customers (another seed salt)."""
        from datetime import date
        from pathlib import Path

        from mlops_airflow.operators._common import load_module

        day = date.fromisoformat(ti.xcom_pull(task_ids="land_batch")["day"]) + timedelta(days=1)
        generator = load_module(Path(INCLUDE) / "data" / "generator.py", "mlops_generator")
        df = generator.generate_batch(day, n_customers=2000, salt="holdout",
                                      covariate_shift=float(params["covariate_shift"]),
                                      concept_drift=float(params["concept_drift"]))
        out = generator.write_batch(df, Path(DATA_ROOT) / "holdout" / f"{day.isoformat()}.parquet")
        return {"path": str(out), "rows": len(df), "day": day.isoformat()}

    evaluate = EvaluateChallengerOperator(
        task_id="evaluate_challenger",
        model_name=MODEL_NAME,
        challenger=register.output,
        holdout_path="{{ ti.xcom_pull(task_ids='holdout_batch')['path'] }}",
        min_metrics={"auc": "{{ params.min_val_auc }}"},
        min_improvement="{{ params.min_improvement }}",
        n_boot=1000,
        output_dir=f"{DATA_ROOT}/scores",
    )

    approve = approval_gate(  # [mlops] approval_policy: hitl (default) | auto (the local demo)
        task_id="approve_promotion",
        model_name=MODEL_NAME,
        version=register.output,
        verdict=evaluate.output,
        dataset_version=version.output,
        drift=drift.output,
        alias="{{ params.promote_to }}",
    )

    promote = PromoteModelOperator(
        task_id="promote_model",
        model_name=MODEL_NAME,
        version=register.output,
        approval=approve.output,
        verdict=evaluate.output,
        alias="{{ params.promote_to }}",  # champion, or canary (mlops_monitoring decides on labelled traffic)
    )

    @task(retries=2, trigger_rule="none_failed")
    def summarize(ti=None) -> dict:
        """One summary of the run for people and for `make demo` (also written as JSON)."""
        import json
        from pathlib import Path

        pull = lambda task_id: ti.xcom_pull(task_ids=task_id)  # noqa: E731
        out = Path(DATA_ROOT) / "runs" / "latest_summary.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        decision = pull("retrain_guard") or ti.xcom_pull(task_ids="retrain_guard", key="decision") or {}
        retrain = {k: decision.get(k) for k in ("proceed", "reason", "triggered_by", "blocked_by", "decided_at")}
        if not decision.get("proceed"):  # the guard blocked retraining: nothing downstream ran
            blocked = {"retrain": retrain, "dag_run": ti.run_id, "blocked": True}
            out.write_text(json.dumps(blocked, indent=2))
            print("SUMMARY ct-run blocked", json.dumps(blocked))
            return blocked
        ver, gate, tset, trained, reg, drift_v = (pull(t) for t in (
            "version_dataset", "validate_batch", "build_training_set", "train_model", "register_model", "check_drift"))
        verdict, promoted, skew_v, windows = (pull(t) for t in (
            "evaluate_challenger", "promote_model", "check_feature_skew", "materialize_features"))
        summary = {
            "dataset_version": {k: ver[k] for k in ("path", "rev", "md5", "rows")},
            "validation": {"passed": gate["passed"], "evidence": gate.get("evidence_uri")},
            "materialization": None if windows is None else {
                "start": windows.get("start"), "end": windows.get("end"), "windows": len(windows.get("windows") or []),
                "entities_written": windows.get("entities_written"), "feature_views": windows.get("feature_views")},
            "feature_skew": None if skew_v is None else {
                "passed": skew_v["passed"], "max_mismatch_rate": skew_v["metrics"].get("max_mismatch_rate"),
                "compared": skew_v["metrics"].get("compared"), "evidence": skew_v.get("evidence_uri")},
            "training_set": {"hash": tset["hash"], "rows": tset["rows"], "uri": tset["uri"],
                             "entity_window": tset.get("entity_window"),
                             "dvc": None if not tset.get("dvc") else
                             f"{tset['dvc']['path']}@{str(tset['dvc']['rev'])[:12]}"},
            "mlflow_run": {"run_id": trained["run_id"], "metrics": trained["metrics"], "url": trained["run_url"]},
            "model": {"name": reg["model_name"], "version": reg["version"], "aliases": reg["aliases"],
                      "url": reg["url"]},
            "evaluation": None if verdict is None else {
                "passed": verdict["passed"], "reasons": verdict["reasons"], "champion": verdict["champion_version"],
                "delta": verdict["metrics"].get("delta"), "ci": verdict["metrics"].get("ci"),
                "evidence": verdict["evidence_uri"]},
            "promotion": None if promoted is None else {k: promoted[k] for k in (
                "alias", "version", "previous_version", "changed", "approved_by", "ledger_seq")},
            "drift": {"passed": drift_v["passed"], "drift_share": drift_v["drift_share"],
                      "drifted_columns": drift_v["drifted_columns"], "report": drift_v.get("evidence_uri"),
                      "report_path": drift_v.get("report_path")},
            "retrain": retrain,
            "dag_run": ti.run_id,
        }
        out.write_text(json.dumps(summary, indent=2))
        print("SUMMARY ct-run", json.dumps(summary))
        return summary

    landed >> validate >> guard >> version >> plan
    materialize >> training_set >> train >> register >> drift
    materialize >> skew >> register
    drift >> has_challenger() >> holdout_batch() >> evaluate >> approve >> promote
    [drift, promote] >> summarize()
