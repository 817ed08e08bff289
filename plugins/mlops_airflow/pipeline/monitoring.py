"""``model_monitoring(spec)``: the daily monitoring loop of one model as a task group.

land window -> resolve champion -> score (champion, canary share, shadow/challenger) -> feature drift and
prediction drift -> index the window -> the window whose labels arrived -> quality (concept drift) and
shadow/canary analysis -> act on the recommendation (promote through the approval gate, roll back a canary, or
hold) -> summarize. A failing drift or quality verdict emits ``mlops://monitoring/<name>``, the asset a CT DAG
built with ``continuous_training`` is scheduled on.

The window comes from ``ModelSpec.source`` (its labels, written apart, *arrive* ``label_delay_days`` later: DAG
param, default 1). Task ids are the reference DAG's (prefixed with ``group_id`` when given). Parsing imports no
heavy library and reads no connection.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import TaskGroup, task

from mlops_airflow.pipeline.ct import _data_root, _root
from mlops_airflow.pipeline.spec import ModelSpec
from mlops_airflow.task_types import default_quality_metric, is_classification

log = logging.getLogger(__name__)


def reference_metric(task_type: str) -> str:
    """The training-run metric the quality check compares with: ``val_auc`` / ``val_rmse``."""
    return "val_auc" if is_classification(task_type) else "val_rmse"


def model_monitoring(spec: ModelSpec, *, group_id: str | None = None, data_root: str | None = None) -> TaskGroup:
    """Build the monitoring loop of ``spec`` in the current DAG (see the module docstring); returns its group.

    :param spec: the model.
    :param group_id: task-group id; given, task ids are prefixed with it.
    :param data_root: the model's artefact root, a URI or local folder (the same as its CT loop's); default
        ``[mlops] data_root``. Windows, labels, the day index and summaries live under ``<root>/monitoring``.
    """
    from mlops_airflow.operators.approval import approval_gate
    from mlops_airflow.operators.drift import DataDriftOperator
    from mlops_airflow.operators.promotion import PromoteModelOperator, RollbackCanaryOperator
    from mlops_airflow.operators.quality import QualityCheckOperator
    from mlops_airflow.operators.scoring import BatchScoringOperator, ShadowCanaryAnalysisOperator
    from mlops_airflow.storage import join

    root = _data_root(data_root)
    mon = join(root, "monitoring")
    prefix = f"{group_id}." if group_id else ""
    base_dir = _root(".")
    served = "proba" if is_classification(spec.task_type) else "prediction"
    ref_metric = reference_metric(spec.task_type)

    def pull(task_id: str, expr: str = "") -> str:
        return f"{{{{ ti.xcom_pull(task_ids='{prefix}{task_id}'){expr} }}}}"

    def xcom(ti: Any, task_id: str) -> Any:
        return ti.xcom_pull(task_ids=f"{prefix}{task_id}")

    with TaskGroup(group_id=group_id or "model_monitoring", prefix_group_id=bool(group_id),
                   tooltip=f"monitoring of {spec.name}") as group:

        @task(task_id="land_window", retries=2)
        def land_window(source_params: dict, params: dict | None = None, logical_date: Any = None) -> dict:
            """The day's window (inputs: what is scored) and its labels (what arrives later), written once."""
            from datetime import UTC, datetime

            from mlops_airflow import storage
            from mlops_airflow._summary import log_summary
            from mlops_airflow.pipeline.days import check_day
            from mlops_airflow.pipeline.sources import land

            params = params or {}
            # A day in the future (or not a date) fails here, before anything is landed; today's window is allowed.
            day = check_day(params, complete=False) or (logical_date or datetime.now(UTC)).date()
            full = land(spec.source, day, join(mon, "labelled"), params=source_params, base_dir=base_dir,
                        required=spec.required_columns())
            df = storage.read_table(full["path"])
            window = storage.write_table(join(mon, "windows", f"{day}.parquet"), df.drop(columns=[spec.label]))
            labels = storage.write_table(join(mon, "labels", f"{day}.parquet"), df[[*spec.keys, spec.label]])
            log_summary(log, "land-window", model=spec.name, day=day, rows=len(df), window=window, labels=labels)
            return {"day": day.isoformat(), "path": window, "labels_path": labels, "labelled_path": full["path"],
                    "rows": len(df)}

        @task(task_id="resolve_champion", retries=2)
        def resolve_champion() -> dict:
            """The champion's version, training set (drift reference), features and validation metric."""

            from mlops_airflow import storage
            from mlops_airflow._summary import log_summary
            from mlops_airflow.exceptions import MonitoringError
            from mlops_airflow.hooks.mlflow_registry import MlflowHook
            from mlops_airflow.record import load_record

            hook = MlflowHook()
            hook.ensure_reachable()
            mv = hook.get_version_by_alias(spec.name, "champion")
            if mv is None:
                raise MonitoringError(
                    f"{spec.name} has no champion: nothing serves, so nothing to monitor. "
                    "Run its continuous-training DAG to register and promote a first model"
                )
            training_set = load_record(hook, spec.name, mv.version).get("training_set") or {}
            reference = training_set.get("uri")
            if not reference or not storage.exists(reference):
                raise MonitoringError(
                    f"{spec.name} v{mv.version}: its training set {reference!r} (the drift reference, from the "
                    "reproducibility record) no longer exists; rebuild it with the mlops_reproduce DAG, or retrain"
                )
            value = hook.get_run(mv.run_id).data.metrics.get(ref_metric)
            log_summary(log, "resolve-champion", model=spec.name, champion=f"v{mv.version}", reference=reference,
                        **{ref_metric: value})
            return {"version": str(mv.version), "reference_path": reference, "features": training_set.get("features"),
                    ref_metric: value, "reference_metric": ref_metric, "training_set_hash": training_set.get("hash")}

        window, champion = land_window(dict(spec.source_params)), resolve_champion()
        score = BatchScoringOperator(
            task_id="score_window", model_name=spec.name, input_path=pull("land_window", "['path']"),
            output_dir=join(root, "inference_log"), canary_share=spec.canary_share,
            entity_column=list(spec.entity_columns), timestamp_column=spec.timestamp_column,
            label_columns=[spec.label], task_type=spec.task_type,
        )
        columns = list(spec.monitored_columns or spec.features or ()) or None
        drift = DataDriftOperator(
            task_id="check_drift", reference_path=pull("resolve_champion", "['reference_path']"),
            current_path=pull("land_window", "['path']"), columns=columns, exclude_columns=spec.keys,
            label_column=spec.label, report_dir=join(root, "reports"), model_name=spec.name,
            drift_share_threshold=spec.drift_share_threshold,
        )

        @task(task_id="prediction_reference", retries=2)
        def prediction_reference(ti: Any = None) -> dict:
            """The prediction-drift reference: the inference log of the first window the champion served."""
            from mlops_airflow.pipeline.windows import prediction_reference as find

            return find(xcom(ti, "land_window"), xcom(ti, "score_window"), join(mon, "index"), spec.name)

        prediction_drift = DataDriftOperator(
            task_id="check_prediction_drift", reference_path=pull("prediction_reference", "['reference_path']"),
            current_path=pull("score_window", "['uri']"), columns=[served], label_column=None,
            report_dir=join(root, "reports"), model_name=spec.name,
            # Its own experiment, so the models page keeps showing the feature-drift verdict of mlops-monitoring.
            experiment_name="mlops-monitoring-predictions", emit_retrain_event=False,  # informative for on-call
        )

        @task(task_id="record_window", retries=2)
        def record_window(ti: Any = None) -> dict:
            """Index the day's inference log (day -> log, serving versions), so the day its labels arrive finds it."""
            from mlops_airflow.pipeline.windows import record_window as record

            return record(xcom(ti, "land_window"), xcom(ti, "score_window"), join(mon, "index"))

        @task.short_circuit(task_id="labelled_window", retries=2, ignore_downstream_trigger_rules=False)
        def labelled_window(params: dict | None = None, ti: Any = None) -> dict | None:
            """The window whose labels arrived today, with the validation metric of the model that served it."""
            from mlops_airflow.pipeline.windows import labelled_window as find

            delay = int((params or {}).get("label_delay_days") or 1)
            return find(xcom(ti, "land_window")["day"], delay, join(mon, "index"), spec.name, ref_metric)

        labelled = labelled_window()
        quality = QualityCheckOperator(
            task_id="check_quality", inference_log_path=pull("labelled_window", "['inference_log']"),
            labels_path=pull("labelled_window", "['labels_path']"), report_dir=join(root, "reports"),
            model_name=spec.name, features=columns, join_keys=spec.keys, label_column=spec.label,
            reference_quality=pull("labelled_window", "['reference_quality']"),
            quality_metric=default_quality_metric(spec.task_type), max_quality_drop=spec.max_quality_drop,
            # The champion now: labels of a window a since-replaced version served raise no retraining event.
            serving_version=pull("score_window", "['versions']['champion']"), task_type=spec.task_type,
        )
        shadow = ShadowCanaryAnalysisOperator(
            task_id="shadow_canary", inference_log=pull("labelled_window", "['inference_log']"),
            labels_path=pull("labelled_window", "['labels_path']"), evidence_dir=join(root, "reports"),
            label_column=spec.label, keys=spec.keys, task_type=spec.task_type,
        )

        @task.branch(task_id="act_on_recommendation", retries=2)
        def act_on_recommendation(ti: Any = None) -> str:
            """promote -> the better shadow/challenger goes through approval and promotion; rollback -> the worse
            canary loses its alias; hold -> nothing."""
            verdict, entry = xcom(ti, "shadow_canary") or {}, xcom(ti, "labelled_window") or {}
            recommendation = verdict.get("recommendation", "hold")
            if recommendation == "promote" and verdict.get("promote_alias") in (entry.get("versions") or {}):
                return f"{prefix}challenger_version"
            return f"{prefix}rollback_canary" if recommendation == "rollback" else f"{prefix}hold"

        @task(task_id="challenger_version", retries=2)
        def challenger_version(ti: Any = None) -> dict:
            """The shadow/challenger the analysis found better, as a promotion verdict (its evidence)."""
            entry, verdict = xcom(ti, "labelled_window"), xcom(ti, "shadow_canary")
            alias = verdict["promote_alias"]
            return {"version": entry["versions"][alias], "alias": alias, "passed": True, "reasons": [],
                    "evidence_uri": verdict["evidence_uri"], "metrics": verdict["metrics"]}

        decision, candidate = act_on_recommendation(), challenger_version()
        approve = approval_gate(task_id="approve_challenger", model_name=spec.name, version=candidate,
                                verdict=candidate, policy=spec.approval_policy)
        promote = PromoteModelOperator(
            task_id="promote_challenger", model_name=spec.name, version=candidate, approval=approve.output,
            verdict=candidate, clear_aliases=("challenger", "shadow", "canary"),
        )
        # A significantly worse canary is rolled back at once (less exposure needs no approval; ledger entry).
        rollback = RollbackCanaryOperator(task_id="rollback_canary", model_name=spec.name,
                                          verdict=pull("shadow_canary"))

        @task(task_id="hold", retries=2)
        def hold() -> str:
            return "hold: no significant difference, or nothing to compare"

        @task(task_id="summarize", retries=2, trigger_rule="none_failed")
        def summarize(ti: Any = None) -> dict:
            """One line per day for people and for the scenario timeline (also written as JSON)."""
            from mlops_airflow.pipeline.windows import write_monitoring_summary

            return write_monitoring_summary(lambda t: xcom(ti, t), ti, mon, served, spec)

        window >> score
        champion >> score >> drift
        score >> prediction_reference() >> prediction_drift
        score >> record_window() >> labelled
        window >> labelled >> [quality, shadow]
        shadow >> decision >> [candidate, rollback, hold()]
        candidate >> approve >> promote
        [drift, prediction_drift, quality, promote, rollback] >> summarize()
    return group

