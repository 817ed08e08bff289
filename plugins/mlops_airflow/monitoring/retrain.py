"""Continuous-training guard rails and the retraining trigger's asset-event payload.

A failing drift or quality verdict emits an asset event on ``mlops://monitoring/<model>`` whose extra is
``retrain_event_extra(...)``; the retraining DAG is scheduled on that asset and starts with
``RetrainGuardOperator``, which calls ``decide_retrain``: no retraining when the latest data gate failed, none
within ``cooldown`` of the last retraining, and the trigger's reason handed on (XCom) for the new model's
reproducibility record.

Pure functions, no Airflow or MLflow import: the operator gathers the inputs and tests call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: Registered-model tag that, when set, wins over the newest version's creation time as "last retraining".
LAST_RETRAIN_TAG = "mlops.last_retrain_at"
#: Asset-event extra keys (the retraining trigger's contract).
EXTRA_KEYS = ("reason", "kind", "drifted_columns", "drift_share", "quality_drop", "verdict_uri")


def retrain_alias_name(asset_uri: str) -> str:
    """The ``AssetAlias`` a monitoring task declares as outlet and emits ``asset_uri`` through.

    A plain ``Asset`` outlet gets an event on *every* successful run (Airflow 3 registers outlets on success),
    which would retrain daily; through an alias an event exists only when the task adds one (a failing verdict).
    """
    return f"mlops-retrain::{asset_uri}"


def retrain_event_extra(
    *,
    kind: str,
    reason: str,
    verdict_uri: str | None,
    drifted_columns: Iterable[str] = (),
    drift_share: float | None = None,
    quality_drop: float | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The asset event's extra: small, JSON-only, the keys in ``EXTRA_KEYS`` always present."""
    extra: dict[str, Any] = {
        "reason": reason,
        "kind": kind,
        "drifted_columns": list(drifted_columns),
        "drift_share": None if drift_share is None else round(float(drift_share), 6),
        "quality_drop": None if quality_drop is None else round(float(quality_drop), 6),
        "verdict_uri": verdict_uri,
    }
    extra.update({k: v for k, v in more.items() if v is not None})
    return json.loads(json.dumps(extra, default=str))


def parse_time(value: Any) -> datetime | None:
    """A timezone-aware datetime from a datetime, ISO text or epoch milliseconds (MLflow); None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000.0, tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_gate_verdict(value: Any) -> dict[str, Any] | None:
    """A data-gate verdict from a dict (XCom), its JSON/Python-repr text, or a path or URI (``file://``,
    ``s3://``) of a JSON file, read through ``mlops_airflow.storage``.

    ``None``/empty means "no verdict found". Raises ``ValueError`` on anything else (never guesses).
    """
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, Mapping):
        return dict(value)
    text = str(value).strip()
    if text.startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            import ast

            parsed = ast.literal_eval(text)  # Jinja renders a dict as its Python repr
        if isinstance(parsed, dict):
            return parsed
        raise ValueError(f"data gate verdict must be a JSON object, got {type(parsed).__name__}")
    from mlops_airflow import storage  # a path, file:// or object-store URI (the validation result's)

    try:
        parsed = json.loads(storage.read_bytes(text))
    except FileNotFoundError:
        raise ValueError(f"data gate verdict file {text!r} does not exist") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"data gate verdict file {text!r} holds {type(parsed).__name__}, not a JSON object")
    return parsed


def trigger_from_events(events: Any) -> dict[str, Any]:
    """``{reason, triggered_by, asset_extra, events}`` from Airflow 3's ``context["triggering_asset_events"]``.

    Accepts the real ``TriggeringAssetEventsAccessor`` (a mapping asset -> events, each with ``extra``,
    ``asset.uri``, ``source_dag_id``, ``source_run_id``, ``source_task_id``, ``timestamp``) or any mapping of
    that shape. The newest event names the reason; every event is listed (small: uri, source, time, reason).
    """
    found: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for key, evs in dict(events or {}).items():
        for ev in evs or ():
            get = ev.get if isinstance(ev, Mapping) else lambda k, _ev=ev: getattr(_ev, k, None)
            asset = get("asset")
            uri = (asset.get("uri") if isinstance(asset, Mapping) else getattr(asset, "uri", None)) or getattr(
                key, "uri", str(key)
            )
            when = parse_time(get("timestamp"))
            item = {
                "asset_uri": uri,
                "source_dag_id": get("source_dag_id"),
                "source_run_id": get("source_run_id"),
                "source_task_id": get("source_task_id"),
                "timestamp": when.isoformat() if when else None,
                "extra": dict(get("extra") or {}),
            }
            ident = (uri, item["source_dag_id"], item["source_run_id"], item["source_task_id"], item["timestamp"])
            if ident not in seen:  # an event reached through an alias is listed under both keys
                seen.add(ident)
                found.append(item)
    if not found:
        return {
            "reason": "manual trigger (no triggering asset event)",
            "triggered_by": "manual",
            "asset_extra": {},
            "events": [],
        }
    found.sort(key=lambda e: e["timestamp"] or "")
    newest = found[-1]
    source = "/".join(str(p) for p in (newest["source_dag_id"], newest["source_run_id"], newest["source_task_id"]) if p)
    reason = newest["extra"].get("reason") or f"asset event on {newest['asset_uri']}"
    return {
        "reason": str(reason),
        "triggered_by": f"asset {newest['asset_uri']}" + (f" from {source}" if source else ""),
        "asset_extra": newest["extra"],
        "events": [{k: v for k, v in e.items() if k != "extra"} | {"reason": e["extra"].get("reason")} for e in found],
    }


def decide_retrain(
    *,
    model_name: str,
    trigger: Mapping[str, Any],
    gate: Mapping[str, Any] | None,
    last_retrain_at: datetime | None,
    now: datetime,
    cooldown: timedelta,
    require_gate: bool = False,
    cooldown_applies_to_manual: bool = False,
    last_retrain_source: str = "",
) -> dict[str, Any]:
    """Whether to retrain now, and why not.

    :return: ``{"proceed", "blocked_by": [reasons], "model_name", "reason", "triggered_by", "asset_extra",
        "events", "last_retrain_at", "cooldown_s", "next_allowed_at", "data_gate"}`` (JSON-ready).
    """
    blocked: list[str] = []
    gate_info: dict[str, Any] | None = None
    if gate is None:
        if require_gate:
            blocked.append(
                "no data-gate verdict found (require_data_gate=True): run the validation gate on the latest "
                "batch first, or pass its verdict as data_gate"
            )
    else:
        passed = gate.get("passed")
        gate_info = {
            "passed": passed,
            "evidence_uri": gate.get("evidence_uri"),
            "reasons": list(gate.get("reasons") or [])[:5],
        }
        if passed is not True:
            why = "; ".join(str(r) for r in (gate.get("reasons") or [])[:3]) or "no reasons given"
            blocked.append(
                f"the latest data gate failed ({why}; evidence {gate.get('evidence_uri')}): retraining on data "
                "that failed validation would bake the problem into the model; fix the batch, re-run the gate"
            )
    manual = trigger.get("triggered_by") == "manual"
    next_allowed = None
    if last_retrain_at is not None and (cooldown_applies_to_manual or not manual):
        next_allowed = last_retrain_at + cooldown
        if now < next_allowed:
            wait = next_allowed - now
            blocked.append(
                f"cool-down: {model_name} was last retrained at {last_retrain_at.isoformat()} "
                f"({last_retrain_source or 'registry'}), cool-down {_human(cooldown)}; next retraining allowed at "
                f"{next_allowed.isoformat()} (in {_human(wait)})"
            )
    return {
        "proceed": not blocked,
        "blocked_by": blocked,
        "model_name": model_name,
        "reason": trigger.get("reason"),
        "triggered_by": trigger.get("triggered_by"),
        "asset_extra": dict(trigger.get("asset_extra") or {}),
        "events": list(trigger.get("events") or []),
        "last_retrain_at": last_retrain_at.isoformat() if last_retrain_at else None,
        "last_retrain_source": last_retrain_source or None,
        "cooldown_s": int(cooldown.total_seconds()),
        "next_allowed_at": next_allowed.isoformat() if next_allowed else None,
        "data_gate": gate_info,
        "decided_at": now.isoformat(),
    }


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}min"
    return f"{seconds}s"
