"""Alias moves of a registered model, under the promotion lock and recorded in the ledger.

Every alias move (``champion``, ``challenger``, ``canary``, ``shadow``; never the deprecated stages)
goes through :func:`move_alias` (or :func:`retire_alias`, which takes an alias away), which

1. takes the model's promotion lock (:class:`~mlops_airflow.registry.lock.PromotionLock`);
2. reconciles the ledger with the alias (a move done outside the ledger, in the UI or by a task that
   died half-way, is recorded first, from the version's ``mlops.promotion.<alias>`` intent tag when it
   has one);
3. writes the move on the version (:mod:`.tags`: who approved, when, evidence URI, previous holder), moves
   the alias with ``set_registered_model_alias`` (atomic: there is never a moment without a champion),
   appends the ledger entry (:mod:`.ledger`) and re-reads the alias (compare-and-set check).

Promoting the version that already holds the alias is a no-op (no second entry); a retry of a task
whose move was already recorded is a no-op too, even if another promotion happened since.
No Airflow operator here: the operators call these functions and emit the Asset events.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._common import run_identity
from mlops_airflow.registry import tags
from mlops_airflow.registry.ledger import append_entry, last_entry, ledger_from_tags, ledger_head
from mlops_airflow.registry.lock import PromotionLock, lock_owner
from mlops_airflow.registry.versions import now_iso, registered_model

if TYPE_CHECKING:
    import logging

ALIASES = ("champion", "challenger", "canary", "shadow")
_AIRFLOW_KEYS = ("dag_id", "run_id", "task_id", "try_number")


def _entry_matches_task(entry: dict[str, Any], ident: dict[str, str]) -> bool:
    airflow = entry.get("airflow") or {}
    return all(airflow.get(k) == ident.get(k) for k in ("dag_id", "run_id", "task_id"))


def compact_verdict(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an evaluation verdict a ledger entry keeps."""
    if not verdict:
        return None
    metrics = verdict.get("metrics") or {}
    return {
        "passed": verdict.get("passed"),
        "challenger": metrics.get("challenger"),
        "champion_version": verdict.get("champion_version"),
        "delta": metrics.get("delta"),
        "ci": metrics.get("ci"),
        "mcnemar_p": metrics.get("mcnemar_p"),
    }


def move_alias(
    client: Any,
    *,
    model_name: str,
    alias: str,
    version: str,
    approval: dict[str, Any],
    context: Any,
    evidence_uri: str | None = None,
    verdict: dict[str, Any] | None = None,
    action: str = "promote",
    clear_aliases: Sequence[str] = (),
    lock_timeout_s: float = 120,
    log: logging.Logger | None = None,
    only_if_unset: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Move ``alias`` of ``model_name`` to ``version`` and record it. Returns (ledger entry, changed).

    ``only_if_unset``: move only when no version holds the alias (a first champion racing another).
    """
    ident = run_identity(context)
    with PromotionLock(client, model_name, lock_owner(ident), timeout_s=lock_timeout_s, log=log):
        rm = registered_model(client, model_name)
        ledger = ledger_from_tags(rm.tags)
        head = ledger_head(rm.tags, ledger)
        current = rm.aliases.get(alias)
        current = str(current) if current is not None else None
        last = last_entry(ledger, alias)

        # 1. Reconcile: the alias moved without a ledger entry (UI, API, or a task that died mid-move).
        if current is not None and (last is None or str(last.get("version")) != current):
            intent = tags.read_intent(client, model_name, current, alias)
            known_ids = {e.get("id") for e in ledger}
            if intent and intent.get("id") not in known_ids:
                observed = {
                    **intent,
                    "previous_version": last.get("version") if last else None,
                    "note": "recorded late: the move happened, its ledger append did not",
                }
            else:
                observed = {
                    "id": uuid.uuid4().hex[:12],
                    "alias": alias,
                    "version": current,
                    "action": "observed",
                    "previous_version": last.get("version") if last else None,
                    "at": now_iso(),
                    "approved_by": "unknown: the alias was moved outside the ledger",
                    "airflow": {},
                }
            last = append_entry(client, model_name, head, observed)
            head = last["seq"]
            ledger.append(last)
            if log:
                log.warning(
                    "Ledger of %s reconciled: %s=v%s recorded as entry %s (%s)",
                    model_name,
                    alias,
                    current,
                    last["seq"],
                    last.get("note") or last["approved_by"],
                )

        # 2. Idempotency: nothing to do when the version already holds the alias ...
        if current == str(version):
            if log:
                log.info(
                    "%s@%s is already v%s: nothing to move (ledger entry %s)",
                    model_name,
                    alias,
                    version,
                    last.get("seq") if last else None,
                )
            return last or {}, False
        if only_if_unset and current is not None:
            if log:
                log.warning(
                    "%s@%s was set to v%s meanwhile: v%s is not made %s", model_name, alias, current, version, alias
                )
            return last or {}, False
        # ... or when this task already moved it earlier (a retry after another promotion superseded it).
        done = [
            e
            for e in ledger
            if e.get("alias") == alias and str(e.get("version")) == str(version) and _entry_matches_task(e, ident)
        ]
        if done:
            if log:
                log.warning(
                    "%s@%s -> v%s was already done by this task (ledger entry %s); since then the alias "
                    "moved to v%s. Not moving it back.",
                    model_name,
                    alias,
                    version,
                    done[-1]["seq"],
                    current,
                )
            return done[-1], False

        # 3. The move: intent on the version, atomic alias move, ledger append, compare-and-set check.
        entry = {
            "id": uuid.uuid4().hex[:12],
            "model": model_name,
            "alias": alias,
            "version": str(version),
            "previous_version": current,
            "action": action,
            "at": now_iso(),
            "approved_by": approval.get("approved_by"),
            "approved_at": approval.get("approved_at"),
            "approval_policy": approval.get("policy"),
            "evidence_uri": evidence_uri,
            "verdict": compact_verdict(verdict),
            "airflow": {k: ident[k] for k in _AIRFLOW_KEYS},
        }
        tags.write_intent(client, model_name, str(version), entry)
        client.set_registered_model_alias(model_name, alias, str(version))
        entry = append_entry(client, model_name, head, entry)
        tags.write_recorded(client, model_name, str(version), entry)
        cleared = []
        for other in clear_aliases:
            if other != alias and str(client.get_registered_model(model_name).aliases.get(other)) == str(version):
                client.delete_registered_model_alias(model_name, other)
                cleared.append(other)
                append_entry(
                    client,
                    model_name,
                    entry["seq"],
                    {
                        "id": uuid.uuid4().hex[:12],
                        "alias": other,
                        "version": str(version),
                        "action": "cleared",
                        "at": now_iso(),
                        "note": f"v{version} became {alias}",
                        "airflow": entry["airflow"],
                    },
                )
        after = client.get_registered_model(model_name).aliases.get(alias)
        if str(after) != str(version):
            raise RegistryError(
                f"{model_name}@{alias} moved to v{after} while this task moved it to v{version} (ledger entry "
                f"{entry['seq']}): someone moved it outside the promotion lock. The next promotion reconciles the "
                "ledger; check who moved it in the MLflow UI"
            )
        if cleared:
            entry["cleared_aliases"] = cleared
        return entry, True


def retire_alias(
    client: Any,
    *,
    model_name: str,
    alias: str,
    context: Any,
    evidence_uri: str | None,
    reason: str,
    lock_timeout_s: float = 120,
    log: logging.Logger | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """Take ``alias`` away from its version (a canary rolled back), under the promotion lock, with a ledger entry.

    Idempotent: when no version holds the alias any more, nothing happens (a retry, or someone removed it).
    Returns (ledger entry or None, changed).
    """
    ident = run_identity(context)
    with PromotionLock(client, model_name, lock_owner(ident), timeout_s=lock_timeout_s, log=log):
        rm = registered_model(client, model_name)
        current = rm.aliases.get(alias)
        if current is None:
            if log:
                log.info("%s@%s is not set: nothing to roll back", model_name, alias)
            return None, False
        head = ledger_head(rm.tags, ledger_from_tags(rm.tags))
        client.delete_registered_model_alias(model_name, alias)
        entry = append_entry(
            client,
            model_name,
            head,
            {
                "id": uuid.uuid4().hex[:12],
                "model": model_name,
                "alias": alias,
                "version": None,
                "previous_version": str(current),
                "action": "rollback",
                "at": now_iso(),
                "approved_by": "policy: automatic rollback of a significantly worse canary (no approval needed to "
                "reduce exposure)",
                "approved_at": None,
                "approval_policy": "auto-rollback",
                "evidence_uri": evidence_uri,
                "verdict": {"passed": False, "reasons": [reason]},
                "airflow": {k: ident[k] for k in _AIRFLOW_KEYS},
            },
        )
        tags.write_rolled_back(client, model_name, str(current), alias, entry, reason)
        return entry, True
