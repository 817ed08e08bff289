"""Promotion tags on a model version (``mlops.promotion.*``): written with every alias move, read back.

A move writes its *intent* on the version before it moves the alias (``mlops.promotion.<alias>`` = the entry
as JSON, plus flat tags a person reads in the MLflow UI: who approved, when, the evidence URI, the previous
holder). A move that died after the alias moved but before its ledger append is recorded late from that
intent. Older first-champion promotions left only the flat tags; :func:`promotion_from_version_tags` reads
them for the history. No Airflow operator here.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "mlops.promotion."


def write_intent(client: Any, model_name: str, version: str, entry: dict[str, Any]) -> None:
    """The move about to be made, on the version (before the alias moves)."""
    airflow = entry["airflow"]
    tags = {
        f"{PREFIX}{entry['alias']}": json.dumps(entry, sort_keys=True, default=str),
        f"{PREFIX}alias": entry["alias"],
        f"{PREFIX}action": entry["action"],
        f"{PREFIX}at": entry["at"],
        f"{PREFIX}approved_by": str(entry["approved_by"]),
        f"{PREFIX}approved_at": str(entry["approved_at"]),
        f"{PREFIX}previous": entry["previous_version"] or "none",
        f"{PREFIX}evidence_uri": entry["evidence_uri"] or "none",
        f"{PREFIX}dag_run": f"{airflow['dag_id']}/{airflow['run_id']}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def write_recorded(client: Any, model_name: str, version: str, entry: dict[str, Any]) -> None:
    """The move as recorded in the ledger (with its ``seq``), on the version (after the append)."""
    client.set_model_version_tag(
        model_name, version, f"{PREFIX}{entry['alias']}", json.dumps(entry, sort_keys=True, default=str)
    )
    client.set_model_version_tag(model_name, version, f"{PREFIX}ledger_seq", str(entry["seq"]))


def write_rolled_back(
    client: Any, model_name: str, version: str, alias: str, entry: dict[str, Any], reason: str
) -> None:
    """``alias`` was taken away from the version (ledger entry ``entry``)."""
    client.set_model_version_tag(
        model_name,
        version,
        f"{PREFIX}{alias}.rolled_back",
        json.dumps({"seq": entry["seq"], "at": entry["at"], "reason": reason}),
    )


def read_intent(client: Any, model_name: str, version: str, alias: str) -> dict[str, Any] | None:
    """The ``mlops.promotion.<alias>`` entry on the version, or None (absent, unreadable, no such version)."""
    try:
        raw = client.get_model_version(model_name, version).tags.get(f"{PREFIX}{alias}")
        return json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 - a missing/garbled intent only means "unknown mover"
        return None


def promotion_from_version_tags(version: str, tags: dict[str, str]) -> dict[str, Any] | None:
    """The last move recorded in a version's flat tags, as a history row (no ``seq``); None when there is none."""
    alias = tags.get(f"{PREFIX}alias")
    if not alias:
        return None
    previous = tags.get(f"{PREFIX}previous")
    evidence = tags.get(f"{PREFIX}evidence_uri") or tags.get(f"{PREFIX}evidence")
    return {
        "at": tags.get(f"{PREFIX}at"),
        "alias": alias,
        "version": str(version),
        "previous_version": None if previous in (None, "", "none") else previous,
        "action": tags.get(f"{PREFIX}action") or "promote",
        "approved_by": tags.get(f"{PREFIX}approved_by"),
        "evidence_uri": None if evidence in (None, "", "none") else evidence,
        "dag_run": tags.get(f"{PREFIX}dag_run"),
    }
