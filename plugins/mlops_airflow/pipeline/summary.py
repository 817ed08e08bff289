"""The run summary the CT factory's ``summarize`` task writes: a short readable block in the task log, the full JSON
as an artefact.

The block (a few lines) opens with the run's outcome, e.g. ``REFUSED: challenger v4 not promoted: <reason>`` or
``PROMOTED: v4 -> champion (was v3)``, then ``SUMMARY ct-*`` lines (``mlops_airflow._summary``): model and day,
data version and training set, the new version and its aliases, the evaluation verdict, the promotion, drift,
and the URI of the full JSON. The JSON is written through :mod:`mlops_airflow.storage` to
``<root>/summaries/<model>/<dag run>.json`` (one per run, kept) and ``<root>/runs/latest_summary.json`` (the latest
run's, read by ``scripts/local_stack.py`` and the scenario runner); the task's XCom is the summary with
``summary_uri`` and ``outcome`` (``{status, headline}``).

``pull(task)`` returns a task's XCom (None when the task was skipped or is not part of the loop).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from mlops_airflow import storage
from mlops_airflow._summary import log_summary

Pull = Callable[[str], Any]
log = logging.getLogger(__name__)

# Outcomes a person must look at: logged at WARNING, so they stand out in a green run's log.
NOTABLE = frozenset({"refused", "not_promoted", "blocked"})


def summary_uris(root: str, model_name: str, run_id: str) -> tuple[str, str]:
    """``(<root>/summaries/<model>/<run>.json, <root>/runs/latest_summary.json)``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(run_id or "run")).strip("_") or "run"
    return (storage.join(root, "summaries", model_name, f"{safe}.json"),
            storage.join(root, "runs", "latest_summary.json"))


def _threshold_reasons(metrics: dict[str, Any], spec: Any) -> list[str]:
    """Why validation ``metrics`` miss the spec's absolute thresholds (a first model that stays unaliased)."""
    minimums, maximums = spec.training_thresholds()
    reasons = [f"{k}={metrics.get(k)} below the minimum {v}" for k, v in (minimums or {}).items()
               if metrics.get(k) is None or float(metrics[k]) < float(v)]
    reasons += [f"{k}={metrics.get(k)} above the maximum {v}" for k, v in (maximums or {}).items()
                if metrics.get(k) is None or float(metrics[k]) > float(v)]
    return reasons or ["no absolute thresholds configured (ModelSpec.min_metrics/max_metrics)"]


def ct_outcome(summary: dict[str, Any], spec: Any, approval: dict[str, Any] | None = None) -> dict[str, str]:
    """``{status, headline}`` of a CT run: blocked, refused, not_promoted, promoted, champion or challenger."""
    name = summary["model_name"]
    if summary.get("blocked"):
        retrain = summary.get("retrain") or {}
        why = "; ".join(retrain.get("blocked_by") or []) or "the retrain guard did not let it proceed"
        return {"status": "blocked", "headline": f"BLOCKED: {name} not retrained: {why} (asked for: "
                                                 f"{retrain.get('reason')})"}
    model, verdict, promoted = summary["model"], summary.get("evaluation"), summary.get("promotion")
    version, aliases = f"v{model['version']}", list(model.get("aliases") or [])
    if promoted is not None:
        alias, prev = promoted.get("alias") or "champion", promoted.get("previous_version")
        if not promoted.get("changed"):
            return {"status": "promoted", "headline": f"PROMOTED: {version} already holds {alias} (nothing moved)"}
        was = f" (was v{prev})" if prev else ""
        return {"status": "promoted", "headline": f"PROMOTED: {version} -> {alias}{was}, approved by "
                                                  f"{promoted.get('approved_by')}"}
    if verdict is not None and not verdict.get("passed"):
        reason = "; ".join(verdict.get("reasons") or []) or "the evaluation did not pass"
        return {"status": "refused", "headline": f"REFUSED: challenger {version} not promoted: {reason}"}
    if verdict is not None:
        chosen = (approval or {}).get("chosen_options") or []
        why = "approval was skipped or not given (see approve_promotion's log)"
        if chosen:
            given = ((approval or {}).get("params_input") or {}).get("reason")
            why = f"approval answered {chosen[0]!r}" + (f": {given}" if given else "")
        return {"status": "not_promoted",
                "headline": f"NOT PROMOTED: challenger {version} passed evaluation, but {why}"}
    if "champion" in aliases:
        return {"status": "champion", "headline": f"CHAMPION: {version} is {name}'s champion"}
    if aliases:
        why = "no ModelSpec.holdout to evaluate it on" if spec.holdout is None else "it was not evaluated"
        return {"status": "challenger", "headline": f"CHALLENGER: {version} registered as {aliases}; {why}; the "
                                                    "champion is unchanged"}
    reasons = _threshold_reasons((summary.get("mlflow_run") or {}).get("metrics") or {}, spec)
    return {"status": "refused", "headline": f"REFUSED: {version} not made champion (no champion yet): "
                                             f"{'; '.join(reasons)}"}


def log_ct_block(summary: dict[str, Any]) -> None:
    """The readable block: the outcome, then one ``SUMMARY ct-*`` line per stage that ran."""
    outcome = summary["outcome"]
    level = logging.WARNING if outcome["status"] in NOTABLE else logging.INFO
    log.log(level, "%s", outcome["headline"])
    log_summary(log, "ct-run", level, model=summary["model_name"], day=summary.get("day"),
                status=outcome["status"], dag_run=summary.get("dag_run"))
    if summary.get("blocked"):
        log_summary(log, "ct-summary", json=summary.get("summary_uri"))
        return
    data, tset, model = summary["dataset_version"], summary["training_set"], summary["model"]
    gate = summary.get("validation")
    log_summary(log, "ct-data", version=data.get("rev"), rows=data.get("rows"),
                validation=None if gate is None else ("passed" if gate["passed"] else "failed"),
                training_set=str(tset.get("hash"))[:16], training_rows=tset.get("rows"))
    log_summary(log, "ct-model", version=f"v{model['version']}", aliases=model.get("aliases"),
                metrics=(summary.get("mlflow_run") or {}).get("metrics"))
    verdict = summary.get("evaluation")
    if verdict is not None:
        log_summary(log, "ct-evaluation", passed=verdict["passed"], champion=verdict.get("champion"),
                    delta=verdict.get("delta"), reasons=verdict.get("reasons"))
    promoted = summary.get("promotion")
    if promoted is not None:
        log_summary(log, "ct-promotion", alias=promoted.get("alias"), version=promoted.get("version"),
                    previous=promoted.get("previous_version"), changed=promoted.get("changed"),
                    approved_by=promoted.get("approved_by"))
    drift = summary["drift"]
    log_summary(log, "ct-drift", passed=drift["passed"], drift_share=drift["drift_share"],
                drifted=drift["drifted_columns"])
    log_summary(log, "ct-summary", json=summary.get("summary_uri"))


def _write(root: str, summary: dict[str, Any], spec: Any, approval: dict[str, Any] | None) -> dict[str, Any]:
    summary["outcome"] = ct_outcome(summary, spec, approval)
    uri, latest = summary_uris(root, spec.name, summary.get("dag_run") or "")
    summary["summary_uri"] = uri
    storage.write_json(uri, summary)
    storage.write_json(latest, summary)
    log_ct_block(summary)
    return summary


def write_ct_summary(pull: Pull, ti: Any, root: str, spec: Any) -> dict[str, Any]:
    """The CT run in one document: data version, gates, training set, run, model, evaluation, promotion, drift.

    :param root: the model's artefact root (URI or local folder).
    """
    root = storage.to_uri(root)
    landed = pull("land_batch") or {}
    decision = pull("retrain_guard") or ti.xcom_pull(task_ids=_sibling(ti, "retrain_guard"), key="decision") or {}
    retrain = {k: decision.get(k) for k in ("proceed", "reason", "triggered_by", "blocked_by", "decided_at")}
    if not decision.get("proceed"):  # the guard blocked retraining: nothing downstream ran
        return _write(root, {"model_name": spec.name, "day": landed.get("day"), "retrain": retrain,
                             "dag_run": ti.run_id, "blocked": True}, spec, None)
    ver, gate, tset, trained, reg, drift_v = (pull(t) for t in (
        "version_dataset", "validate_batch", "build_training_set", "train_model", "register_model", "check_drift"))
    verdict, approval, promoted, skew_v, windows = (pull(t) for t in (
        "evaluate_challenger", "approve_promotion", "promote_model", "check_feature_skew", "materialize_features"))
    summary = {
        "model_name": spec.name,
        "task_type": spec.task_type,
        "primary_metric": spec.primary,
        "day": landed.get("day"),
        "landed": {k: landed.get(k) for k in ("path", "uri", "rows")},
        "dataset_version": {k: ver.get(k) for k in ("path", "rev", "md5", "rows")},
        "validation": None if gate is None else {"passed": gate["passed"], "evidence": gate.get("evidence_uri")},
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
        "mlflow_run": {"run_id": trained["run_id"], "metrics": trained["metrics"], "url": trained.get("run_url"),
                       "entrypoint": trained.get("entrypoint"), "entrypoint_sha256": trained.get("entrypoint_sha256")},
        "model": {"name": reg["model_name"], "version": reg["version"], "aliases": reg["aliases"],
                  "url": reg.get("url")},
        "evaluation": None if verdict is None else {
            "passed": verdict["passed"], "reasons": verdict["reasons"], "champion": verdict.get("champion_version"),
            "delta": verdict["metrics"].get("delta"), "ci": verdict["metrics"].get("ci"),
            "evidence": verdict.get("evidence_uri")},
        "promotion": None if promoted is None else {k: promoted.get(k) for k in (
            "alias", "version", "previous_version", "changed", "approved_by", "ledger_seq")},
        "drift": {"passed": drift_v["passed"], "drift_share": drift_v["drift_share"],
                  "drifted_columns": drift_v["drifted_columns"], "report": drift_v.get("evidence_uri"),
                  "report_path": drift_v.get("report_path")},
        "retrain": retrain,
        "dag_run": ti.run_id,
    }
    return _write(root, summary, spec, approval if isinstance(approval, dict) else None)


def _sibling(ti: Any, task_id: str) -> str:
    """``task_id`` in the same task group as ``ti`` (a prefixed group: ``<group>.<task_id>``)."""
    group, _, _ = str(getattr(ti, "task_id", "")).rpartition(".")
    return f"{group}.{task_id}" if group else task_id
