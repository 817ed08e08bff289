"""What the monitoring loop keeps between days: the per-day index of inference logs, the prediction-drift reference,
the window whose labels arrived, and the day's summary (run inside tasks; no heavy import at module level).

Everything is read and written through :mod:`mlops_airflow.storage`: ``index_dir`` and ``mon`` are URIs (or local
folders) under the model's artefact root, ``<root>/monitoring/index/<day>.json`` and
``<root>/monitoring/summaries/<day>.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from mlops_airflow import storage
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import MonitoringError

Location = str | os.PathLike[str]
log = logging.getLogger(__name__)


def record_window(landed: dict[str, Any], scored: dict[str, Any], index_dir: Location) -> dict[str, Any]:
    """Index the day's inference log (day -> log, labels, serving versions) at ``<index_dir>/<day>.json``."""
    entry = {"day": landed["day"], "inference_log": scored["uri"], "labels_path": landed["labels_path"],
             "labelled_path": landed["labelled_path"], "versions": scored["versions"], "rows": scored["rows"]}
    storage.write_json(storage.join(index_dir, f"{landed['day']}.json"), entry)
    return entry


def prediction_reference(landed: dict[str, Any], scored: dict[str, Any], index_dir: Location,
                         model_name: str) -> dict[str, Any]:
    """The inference log of the first window the current champion served (before today); none -> today's own."""
    champion = str(scored["versions"]["champion"])
    first: dict[str, Any] | None = None
    for uri in storage.listdir(index_dir, ".json"):  # sorted: <day>.json, oldest first
        if storage.name(uri).removesuffix(".json") >= landed["day"]:
            break
        entry = storage.read_json(uri)
        if entry.get("day", "") < landed["day"] and str(entry["versions"].get("champion")) == champion:
            first = {**entry, "index": uri}
            break
    if first is None:
        result = {"champion": champion, "reference_day": landed["day"], "reference_path": scored["uri"],
                  "own_reference": True}
    elif not storage.exists(first["inference_log"]):
        raise MonitoringError(
            f"{model_name} v{champion}: the inference log of its first served window {first['day']} "
            f"({first['inference_log']}, the prediction-drift reference) no longer exists. Restore it, or delete "
            f"{first['index']} so the next window v{champion} served becomes the reference, then re-run"
        )
    else:
        result = {"champion": champion, "reference_day": first["day"], "reference_path": first["inference_log"],
                  "own_reference": False}
    log_summary(log, "prediction-reference", champion=f"v{champion}", reference_day=result["reference_day"],
                own_reference=result["own_reference"], log=result["reference_path"])
    return result


def labelled_window(day: str, delay_days: int, index_dir: Location, model_name: str,
                    metric: str) -> dict[str, Any] | None:
    """The index entry of the window scored ``delay_days`` before ``day`` with the serving version's ``metric``
    (``reference_quality``; also under ``reference_auc`` for a classifier); None when no window was scored then."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    labelled_day = date.fromisoformat(day) - timedelta(days=delay_days)
    index = storage.join(index_dir, f"{labelled_day}.json")
    if not storage.exists(index):
        log_summary(log, "labelled-window", day=labelled_day, window="none",
                    reason=f"no window was scored then (labels arrive {delay_days} day(s) later); quality check "
                    "skipped")
        return None
    entry = storage.read_json(index)
    served = entry["versions"]["champion"]
    value = MlflowHook().version_run(model_name, served).data.metrics.get(metric)
    entry["reference_quality"] = value
    entry["reference_metric"] = metric
    if metric == "val_auc":
        entry["reference_auc"] = value
    log_summary(log, "labelled-window", day=labelled_day, served_by=f"v{served}", log=entry["inference_log"],
                **{metric: value})
    return entry


def write_monitoring_summary(pull: Callable[[str], Any], ti: Any, mon: Location, served: str,
                             spec: Any) -> dict[str, Any]:
    """The day in one document (``<mon>/summaries/<day>.json``, its URI under ``summary_uri``) and a short block of
    ``SUMMARY monitoring-*`` lines in the task log."""
    from mlops_airflow.task_types import default_quality_metric

    landed, champ, scored, drift_v = (pull(t) for t in ("land_window", "resolve_champion", "score_window",
                                                       "check_drift"))
    pred_v, pred_ref = pull("check_prediction_drift"), pull("prediction_reference")
    pred = pred_v["metrics"]["per_column"].get(served) or {}
    quality_v, shadow_v, entry = pull("check_quality"), pull("shadow_canary"), pull("labelled_window")
    promoted, rolled = pull("promote_challenger"), pull("rollback_canary")
    events = [v["retrain_event"] for v in (drift_v, quality_v) if v and v.get("retrain_event")]
    metric = default_quality_metric(spec.task_type)
    quality = None
    if quality_v is not None:
        value = quality_v["metrics"]["quality"].get(metric)
        quality = {
            "labelled_day": entry["day"], "served_by": entry["versions"]["champion"], "passed": quality_v["passed"],
            "concept_drift": quality_v["concept_drift"], "metric": metric, "value": value,
            "reference": entry.get("reference_quality"), "quality_drop": quality_v["quality_drop"],
            "report": quality_v.get("report_path"), "reasons": quality_v["reasons"],
            "served_versions": quality_v["metrics"].get("served_versions"),
            "serving_version": quality_v["metrics"].get("serving_version"),
            "retired": quality_v["metrics"].get("retired", False),
            "mean_confidence": (quality_v["metrics"].get("confidence") or {}).get("mean_confidence"),
        }
        if metric == "roc_auc":
            quality.update({"roc_auc": value, "reference_auc": entry.get("reference_auc")})
    summary = {
        "model_name": spec.name,
        "task_type": spec.task_type,
        "day": landed["day"],
        "champion": champ["version"],
        "scoring": {k: scored.get(k) for k in ("uri", "rows", "versions", "served_by", "mean_confidence",
                                               "low_confidence_share", "positive_rate")},
        "drift": {"passed": drift_v["passed"], "drift_share": drift_v["drift_share"],
                  "drifted_columns": drift_v["drifted_columns"], "report": drift_v.get("report_path"),
                  "reasons": drift_v["reasons"]},
        "prediction_drift": {"passed": pred_v["passed"], "column": served, "method": pred.get("method"),
                             "score": pred.get("score"), "threshold": pred.get("threshold"),
                             "reference_day": pred_ref["reference_day"], "own_reference": pred_ref["own_reference"],
                             "report": pred_v.get("report_path"), "reasons": pred_v["reasons"]},
        "quality": quality,
        "shadow_canary": None if shadow_v is None else {
            "recommendation": shadow_v["recommendation"], "comparisons": shadow_v["metrics"]["comparisons"]},
        "promotion": promoted, "rollback": rolled,
        "retrain_events": [{"kind": e["kind"], "reason": e["reason"]} for e in events],
        "dag_run": ti.run_id,
    }
    out = storage.join(mon, "summaries", f"{landed['day']}.json")
    summary["summary_uri"] = out
    storage.write_json(out, summary)
    log_summary(log, "monitoring", model=spec.name, day=summary["day"], champion=f"v{summary['champion']}",
                feature_drift=not drift_v["passed"], drift_share=drift_v["drift_share"],
                prediction_drift=not pred_v["passed"])
    if quality is not None:
        log_summary(log, "monitoring-quality", labelled_day=quality["labelled_day"],
                    served_by=f"v{quality['served_by']}", passed=quality["passed"], metric=metric,
                    value=quality["value"], reference=quality["reference"])
    if shadow_v is not None or promoted or rolled:
        log_summary(log, "monitoring-action", recommendation=(shadow_v or {}).get("recommendation"),
                    promoted=(promoted or {}).get("version"), rolled_back=(rolled or {}).get("rolled_back_version"))
    log_summary(log, "monitoring-events", retrain_events=summary["retrain_events"], json=out)
    return summary
