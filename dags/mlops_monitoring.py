"""Reference monitoring DAG: score a daily window, check drift and delayed-label quality, compare shadow/canary.

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

from airflow.configuration import conf
from airflow.sdk import DAG, Param, task
from mlops_airflow.operators.approval import approval_gate
from mlops_airflow.operators.drift import DataDriftOperator
from mlops_airflow.operators.promotion import PromoteModelOperator, RollbackCanaryOperator
from mlops_airflow.operators.quality import QualityCheckOperator
from mlops_airflow.operators.scoring import BatchScoringOperator, ShadowCanaryAnalysisOperator

DATA_ROOT = conf.get("mlops", "data_root", fallback="/tmp/mlops-data")
INCLUDE = conf.get("mlops", "include_dir", fallback=None) or f"{conf.get('core', 'dags_folder')}/../include"
MODEL_NAME = "churn_classifier"
KEYS = ["customer_id", "event_timestamp"]

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

    @task(retries=2)
    def land_window(params: dict, logical_date=None) -> dict:
        """The day's window (features; what is scored) and its labels (what arrives later), written once."""
        from datetime import date
        from pathlib import Path

        from mlops_airflow.operators._common import load_module

        day = date.fromisoformat(params["day"]) if params.get("day") else (
            (logical_date or datetime.now(UTC)).date())
        generator = load_module(Path(INCLUDE) / "data" / "generator.py", "mlops_generator")
        df = generator.generate_batch(day, covariate_shift=float(params["covariate_shift"]),
                                      concept_drift=float(params["concept_drift"]))
        root = Path(DATA_ROOT) / "monitoring"
        window = generator.write_batch(df.drop(columns=[generator.LABEL]), root / "windows" / f"{day}.parquet")
        labels = generator.write_batch(df[[*KEYS, generator.LABEL]], root / "labels" / f"{day}.parquet")
        labelled = generator.write_batch(df, root / "labelled" / f"{day}.parquet")  # mlops_rollback's re-validation
        print(f"SUMMARY land-window day={day} rows={len(df)} window={window} labels={labels}")
        return {"day": day.isoformat(), "path": str(window), "labels_path": str(labels),
                "labelled_path": str(labelled), "rows": len(df)}

    @task(retries=2)
    def resolve_champion() -> dict:
        """The champion's version, training set (drift reference), features and validation AUC, from its record."""
        from pathlib import Path

        from mlflow.exceptions import MlflowException
        from mlops_airflow.exceptions import MonitoringError
        from mlops_airflow.hooks.mlflow_registry import MlflowHook
        from mlops_airflow.record import load_record

        hook = MlflowHook()
        hook.ensure_reachable()
        client = hook.get_client()
        try:
            mv = client.get_model_version_by_alias(MODEL_NAME, "champion")
        except MlflowException as err:
            raise MonitoringError(
                f"{MODEL_NAME} has no champion ({type(err).__name__}): nothing serves, so nothing to monitor. Run "
                "mlops_continuous_training to register and promote a first model"
            ) from None
        record = load_record(hook, client, MODEL_NAME, mv.version)
        training_set = record.get("training_set") or {}
        reference = training_set.get("uri")
        if not reference or not Path(reference).exists():
            raise MonitoringError(
                f"{MODEL_NAME} v{mv.version}: its training set {reference!r} (the drift reference, from the "
                "reproducibility record) no longer exists; rebuild it with the mlops_reproduce DAG, or retrain"
            )
        val_auc = client.get_run(mv.run_id).data.metrics.get("val_auc")
        result = {"version": str(mv.version), "reference_path": reference, "features": training_set.get("features"),
                  "val_auc": val_auc, "training_set_hash": training_set.get("hash")}
        print(f"SUMMARY resolve-champion model={MODEL_NAME} champion=v{mv.version} reference={reference} "
              f"val_auc={val_auc}")
        return result

    window = land_window()
    champion = resolve_champion()

    score = BatchScoringOperator(
        task_id="score_window",
        model_name=MODEL_NAME,
        input_path="{{ ti.xcom_pull(task_ids='land_window')['path'] }}",
        output_dir=f"{DATA_ROOT}/inference_log",
        canary_share=0.1,
    )

    drift = DataDriftOperator(
        task_id="check_drift",
        reference_path="{{ ti.xcom_pull(task_ids='resolve_champion')['reference_path'] }}",
        current_path="{{ ti.xcom_pull(task_ids='land_window')['path'] }}",
        columns=["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"],
        report_dir=f"{DATA_ROOT}/reports",
        model_name=MODEL_NAME,
    )

    @task(retries=2)
    def prediction_reference(ti=None) -> dict:
        """The prediction-drift reference: the inference log of the first window the current champion served.

        Found in the per-day index ``record_window`` writes (``versions.champion``, ``inference_log``) for days
        before today; none (the champion's first day) -> today's log is its own reference (no drift).
        """
        import json
        from pathlib import Path

        from mlops_airflow.exceptions import MonitoringError

        landed, scored = ti.xcom_pull(task_ids="land_window"), ti.xcom_pull(task_ids="score_window")
        champion = str(scored["versions"]["champion"])
        index_dir = Path(DATA_ROOT) / "monitoring" / "index"
        first: dict | None = None
        for path in sorted(index_dir.glob("*.json")) if index_dir.exists() else []:
            entry = json.loads(path.read_text())
            if entry.get("day", "") < landed["day"] and str(entry["versions"].get("champion")) == champion:
                first = {**entry, "index": str(path)}
                break
        if first is None:
            result = {"champion": champion, "reference_day": landed["day"], "reference_path": scored["uri"],
                      "own_reference": True}
        elif not Path(first["inference_log"]).exists():
            raise MonitoringError(
                f"{MODEL_NAME} v{champion}: the inference log of its first served window {first['day']} "
                f"({first['inference_log']}, the prediction-drift reference) no longer exists. Restore it, or delete "
                f"{first['index']} so the next window v{champion} served becomes the reference, then re-run"
            )
        else:
            result = {"champion": champion, "reference_day": first["day"], "reference_path": first["inference_log"],
                      "own_reference": False}
        print(f"SUMMARY prediction-reference champion=v{champion} reference_day={result['reference_day']} "
              f"own_reference={result['own_reference']} log={result['reference_path']}")
        return result

    pred_reference = prediction_reference()

    prediction_drift = DataDriftOperator(
        task_id="check_prediction_drift",
        reference_path="{{ ti.xcom_pull(task_ids='prediction_reference')['reference_path'] }}",
        current_path="{{ ti.xcom_pull(task_ids='score_window')['uri'] }}",
        columns=["proba"],  # the served probability (the champion's; a canary's on its share of rows)
        label_column=None,
        report_dir=f"{DATA_ROOT}/reports",
        model_name=MODEL_NAME,
        # Its own experiment: runs are tagged mlops.kind=data_drift like check_drift's, and the models page shows
        # the last such run of mlops-monitoring, which must stay the feature-drift verdict.
        experiment_name="mlops-monitoring-predictions",
        emit_retrain_event=False,  # informative for on-call; feature drift and quality decide retraining
    )

    @task(retries=2)
    def record_window(ti=None) -> dict:
        """Index the day's inference log (day -> log, serving versions), so the day its labels arrive finds it."""
        import json
        from pathlib import Path

        landed, scored = ti.xcom_pull(task_ids="land_window"), ti.xcom_pull(task_ids="score_window")
        entry = {"day": landed["day"], "inference_log": scored["uri"], "labels_path": landed["labels_path"],
                 "labelled_path": landed["labelled_path"], "versions": scored["versions"], "rows": scored["rows"]}
        out = Path(DATA_ROOT) / "monitoring" / "index" / f"{landed['day']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(entry, indent=2, sort_keys=True))
        return entry

    @task.short_circuit(retries=2, ignore_downstream_trigger_rules=False)
    def labelled_window(params: dict, ti=None) -> dict | None:
        """The window whose labels arrived today, with the validation AUC of the model that served it.

        Nothing (the quality branch is skipped) when no window was scored ``label_delay_days`` ago.
        """
        import json
        from datetime import date
        from pathlib import Path

        from mlops_airflow.hooks.mlflow_registry import MlflowHook

        day = date.fromisoformat(ti.xcom_pull(task_ids="land_window")["day"])
        labelled_day = day - timedelta(days=int(params["label_delay_days"]))
        index = Path(DATA_ROOT) / "monitoring" / "index" / f"{labelled_day}.json"
        if not index.exists():
            print(f"SUMMARY labelled-window none: no window was scored on {labelled_day} (labels arrive "
                  f"{params['label_delay_days']} day(s) later); quality check skipped")
            return None
        entry = json.loads(index.read_text())
        client = MlflowHook().get_client()
        served = entry["versions"]["champion"]
        auc = client.get_run(client.get_model_version(MODEL_NAME, served).run_id).data.metrics.get("val_auc")
        entry["reference_auc"] = auc
        print(f"SUMMARY labelled-window day={labelled_day} served_by=v{served} reference_auc={auc} "
              f"log={entry['inference_log']}")
        return entry

    labelled = labelled_window()

    quality = QualityCheckOperator(
        task_id="check_quality",
        inference_log_path="{{ ti.xcom_pull(task_ids='labelled_window')['inference_log'] }}",
        labels_path="{{ ti.xcom_pull(task_ids='labelled_window')['labels_path'] }}",
        report_dir=f"{DATA_ROOT}/reports",
        model_name=MODEL_NAME,
        features=["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"],
        reference_quality="{{ ti.xcom_pull(task_ids='labelled_window')['reference_auc'] }}",
        quality_metric="roc_auc",
        max_quality_drop=0.05,  # concept drift: ROC AUC more than 0.05 below the serving model's validation AUC
        # The champion now: labels of a window a since-replaced version served are reported, but raise no
        # retraining event for the model that serves today.
        serving_version="{{ ti.xcom_pull(task_ids='score_window')['versions']['champion'] }}",
    )

    shadow = ShadowCanaryAnalysisOperator(
        task_id="shadow_canary",
        inference_log="{{ ti.xcom_pull(task_ids='labelled_window')['inference_log'] }}",
        labels_path="{{ ti.xcom_pull(task_ids='labelled_window')['labels_path'] }}",
        evidence_dir=f"{DATA_ROOT}/reports",
    )

    @task.branch(retries=2)
    def act_on_recommendation(ti=None) -> str:
        """promote -> the significantly better shadow/challenger goes through approval and promotion to champion;
        rollback -> the significantly worse canary loses its alias (its traffic goes back to the champion);
        hold -> nothing."""
        verdict = ti.xcom_pull(task_ids="shadow_canary") or {}
        entry = ti.xcom_pull(task_ids="labelled_window") or {}
        recommendation = verdict.get("recommendation", "hold")
        if recommendation == "promote" and verdict.get("promote_alias") in (entry.get("versions") or {}):
            return "challenger_version"
        if recommendation == "rollback":
            return "rollback_canary"
        return "hold"

    @task(retries=2)
    def challenger_version(ti=None) -> dict:
        """The shadow/challenger the analysis found better, as a promotion verdict (its McNemar evidence)."""
        entry, verdict = ti.xcom_pull(task_ids="labelled_window"), ti.xcom_pull(task_ids="shadow_canary")
        alias = verdict["promote_alias"]
        return {"version": entry["versions"][alias], "alias": alias, "passed": True, "reasons": [],
                "evidence_uri": verdict["evidence_uri"], "metrics": verdict["metrics"]}

    decision = act_on_recommendation()
    candidate = challenger_version()
    approve_challenger = approval_gate(
        task_id="approve_challenger", model_name=MODEL_NAME, version=candidate, verdict=candidate,
    )
    promote = PromoteModelOperator(
        task_id="promote_challenger", model_name=MODEL_NAME, version=candidate, approval=approve_challenger.output,
        verdict=candidate, clear_aliases=("challenger", "shadow", "canary"),
    )
    # A significantly worse canary is rolled back at once (reducing exposure needs no approval; ledger entry).
    # Rolling back the champion itself is the mlops_rollback DAG's job (validated, behind the approval gate).
    rollback = RollbackCanaryOperator(
        task_id="rollback_canary", model_name=MODEL_NAME, verdict="{{ ti.xcom_pull(task_ids='shadow_canary') }}",
    )

    @task(retries=2)
    def hold() -> str:
        return "hold: no significant difference, or nothing to compare"

    @task(retries=2, trigger_rule="none_failed")
    def summarize(ti=None) -> dict:
        """One line per day for people and for the scenario timeline (also written as JSON)."""
        import json
        from pathlib import Path

        pull = lambda task_id: ti.xcom_pull(task_ids=task_id)  # noqa: E731
        landed, champ, scored, drift_v = (pull(t) for t in ("land_window", "resolve_champion", "score_window",
                                                           "check_drift"))
        pred_v, pred_ref = pull("check_prediction_drift"), pull("prediction_reference")
        proba = pred_v["metrics"]["per_column"].get("proba") or {}
        quality_v, shadow_v, entry = pull("check_quality"), pull("shadow_canary"), pull("labelled_window")
        promoted, rolled = pull("promote_challenger"), pull("rollback_canary")
        events = [v["retrain_event"] for v in (drift_v, quality_v) if v and v.get("retrain_event")]
        summary = {
            "day": landed["day"],
            "champion": champ["version"],
            "scoring": {k: scored[k] for k in ("uri", "rows", "versions", "served_by", "mean_confidence",
                                               "low_confidence_share", "positive_rate")},
            "drift": {"passed": drift_v["passed"], "drift_share": drift_v["drift_share"],
                      "drifted_columns": drift_v["drifted_columns"], "report": drift_v.get("report_path"),
                      "reasons": drift_v["reasons"]},
            "prediction_drift": {"passed": pred_v["passed"], "column": "proba", "method": proba.get("method"),
                                 "score": proba.get("score"), "threshold": proba.get("threshold"),
                                 "reference_day": pred_ref["reference_day"],
                                 "own_reference": pred_ref["own_reference"], "report": pred_v.get("report_path"),
                                 "reasons": pred_v["reasons"]},
            "quality": None if quality_v is None else {
                "labelled_day": entry["day"], "served_by": entry["versions"]["champion"],
                "passed": quality_v["passed"], "concept_drift": quality_v["concept_drift"],
                "roc_auc": quality_v["metrics"]["quality"].get("roc_auc"),
                "reference_auc": entry.get("reference_auc"), "quality_drop": quality_v["quality_drop"],
                "mean_confidence": quality_v["metrics"]["confidence"]["mean_confidence"],
                "report": quality_v.get("report_path"), "reasons": quality_v["reasons"],
                "served_versions": quality_v["metrics"].get("served_versions"),
                "serving_version": quality_v["metrics"].get("serving_version"),
                "retired": quality_v["metrics"].get("retired", False)},
            "shadow_canary": None if shadow_v is None else {
                "recommendation": shadow_v["recommendation"], "comparisons": shadow_v["metrics"]["comparisons"]},
            "promotion": promoted, "rollback": rolled,
            "retrain_events": [{"kind": e["kind"], "reason": e["reason"]} for e in events],
            "dag_run": ti.run_id,
        }
        out = Path(DATA_ROOT) / "monitoring" / "summaries" / f"{landed['day']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, default=str))
        print("SUMMARY monitoring", json.dumps({"day": summary["day"], "champion": summary["champion"],
                                                "feature_drift": not drift_v["passed"],
                                                "prediction_drift": not pred_v["passed"],
                                                "retrain_events": summary["retrain_events"]}))
        return summary

    window >> score
    champion >> score >> drift
    score >> pred_reference >> prediction_drift
    score >> record_window() >> labelled
    window >> labelled >> [quality, shadow]
    shadow >> decision >> [candidate, rollback, hold()]
    candidate >> approve_challenger >> promote
    [drift, prediction_drift, quality, promote, rollback] >> summarize()
