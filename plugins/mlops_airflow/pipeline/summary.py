"""The run summaries the factories' ``summarize`` tasks write (JSON for the scenario runner, a SUMMARY log line).

``pull(task)`` returns a task's XCom (None when the task was skipped or is not part of the loop).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Pull = Callable[[str], Any]


def _write(out: Path, summary: dict[str, Any], tag: str) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"SUMMARY {tag}", json.dumps(summary, default=str))
    return summary


def write_ct_summary(pull: Pull, ti: Any, root: Path, spec: Any) -> dict[str, Any]:
    """The CT run in one document: data version, gates, training set, run, model, evaluation, promotion, drift."""
    out = root / "runs" / "latest_summary.json"
    decision = pull("retrain_guard") or ti.xcom_pull(task_ids=_sibling(ti, "retrain_guard"), key="decision") or {}
    retrain = {k: decision.get(k) for k in ("proceed", "reason", "triggered_by", "blocked_by", "decided_at")}
    if not decision.get("proceed"):  # the guard blocked retraining: nothing downstream ran
        return _write(out, {"model_name": spec.name, "retrain": retrain, "dag_run": ti.run_id, "blocked": True},
                      "ct-run blocked")
    ver, gate, tset, trained, reg, drift_v = (pull(t) for t in (
        "version_dataset", "validate_batch", "build_training_set", "train_model", "register_model", "check_drift"))
    verdict, promoted, skew_v, windows = (pull(t) for t in (
        "evaluate_challenger", "promote_model", "check_feature_skew", "materialize_features"))
    summary = {
        "model_name": spec.name,
        "task_type": spec.task_type,
        "primary_metric": spec.primary,
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
    return _write(out, summary, "ct-run")


def _sibling(ti: Any, task_id: str) -> str:
    """``task_id`` in the same task group as ``ti`` (a prefixed group: ``<group>.<task_id>``)."""
    group, _, _ = str(getattr(ti, "task_id", "")).rpartition(".")
    return f"{group}.{task_id}" if group else task_id
