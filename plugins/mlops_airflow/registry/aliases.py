"""Alias moves of a registered model, under the promotion lock and recorded in the ledger.

Every alias move (``champion``, ``challenger``, ``canary``, ``shadow``; never the deprecated stages)
goes through :func:`move_alias` (or :func:`retire_alias`, which takes an alias away), which

1. takes the model's promotion lock (:class:`~mlops_airflow.registry.lock.PromotionLock`, a renewed lease);
2. completes or drops the *pending intent* a dead holder left (:func:`recover_pending`): when the alias
   shows the intended version the move happened, so its entry is appended (once: an entry with the
   intent's id is never appended twice) and its version tags and alias clearing are finished; when it
   does not, the holder died before the move and the intent is dropped (no entry: nothing moved);
3. reconciles the ledger with the alias (a move done outside the ledger, in the UI or by an old release's
   task that died half-way, is recorded first, from the version's ``mlops.promotion.<alias>`` tag when it
   has one);
4. writes the pending intent (``mlops.ledger.pending``: the entry with its planned ``seq``, the holder, the
   aliases it will clear), checks the lease (fence), moves the alias with ``set_registered_model_alias``
   (atomic: there is never a moment without a champion), appends the ledger entry, writes the move on the
   version (:mod:`.tags`), clears the other aliases, removes the pending intent, and re-reads the alias
   (compare-and-set check).

Why an alias never moves twice for one promotion: only the lease holder moves it, after the fence; a
killed holder's move is *completed* from its intent by the next holder, never redone; and a retry of a
task whose move is in the ledger (its dag/run/task) moves nothing, even if another promotion happened since.
Promoting the version that already holds the alias is a no-op (no second entry).
No Airflow operator here: the operators call these functions and emit the Asset events.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._common import run_identity
from mlops_airflow.registry import tags
from mlops_airflow.registry.ledger import (
    append_entry,
    clear_pending,
    last_entry,
    ledger_from_tags,
    ledger_head,
    pending_from_tags,
    write_pending,
)
from mlops_airflow.registry.lock import DEFAULT_TTL_S, PromotionLock, lock_owner
from mlops_airflow.registry.versions import now_iso, registered_model

if TYPE_CHECKING:
    import logging

    from mlops_airflow.hooks.mlflow_registry import MlflowHook

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


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _finish(hook: MlflowHook, model_name: str, entry: dict[str, Any], pending: dict[str, Any]) -> list[str]:
    """After the append: the move on the version's tags, and the aliases it clears (each with one entry).

    Idempotent, so the next holder can run it again for a holder that died half-way through it.
    """
    if entry.get("version") is None:  # an alias taken away (canary rollback)
        tags.write_rolled_back(hook, model_name, str(entry["previous_version"]), entry["alias"], entry,
                               str(pending.get("reason") or ""))
        return []
    version = str(entry["version"])
    tags.write_intent(hook, model_name, version, entry)
    tags.write_recorded(hook, model_name, version, entry)
    clear = [a for a in pending.get("clear") or [] if a != entry["alias"]]
    if not clear:
        return []
    rm = hook.get_registered_model(model_name)
    ledger = ledger_from_tags(rm.tags)
    head = ledger_head(rm.tags, ledger)
    for other in clear:
        if _str(rm.aliases.get(other)) == version:
            hook.delete_registered_model_alias(model_name, other)
        if not any(e.get("action") == "cleared" and e.get("alias") == other and e.get("parent") == entry["id"]
                   for e in ledger):
            head = append_entry(hook, model_name, head, {
                "id": uuid.uuid4().hex[:12], "alias": other, "version": version, "action": "cleared",
                "at": now_iso(), "note": f"v{version} became {entry['alias']}", "parent": entry["id"],
                "airflow": entry.get("airflow") or {},
            })["seq"]
    return clear


def recover_pending(hook: MlflowHook, model_name: str, rm: Any, ident: dict[str, str],
                    log: logging.Logger | None = None) -> tuple[Any, dict[str, Any] | None]:
    """Complete or drop the pending intent of a holder that died; call it holding the promotion lock.

    Returns (the registered model re-read, the entry completed now or None). Completing is idempotent:
    the entry is appended only when no ledger entry carries the intent's id.
    """
    pending = pending_from_tags(rm.tags)
    if pending is None:
        return rm, None
    if "unreadable" in pending:
        if log:
            log.warning("Dropping an unreadable pending intent on %s: %s", model_name, pending["unreadable"])
        clear_pending(hook, model_name)
        return registered_model(hook, model_name), None
    intent = pending["entry"]
    ledger = ledger_from_tags(rm.tags)
    recorded = next((e for e in ledger if e.get("id") == intent.get("id")), None)
    current = _str(rm.aliases.get(intent["alias"]))
    completed = None
    if recorded is not None or current == _str(intent.get("version")):
        if recorded is None:
            recorded = completed = append_entry(hook, model_name, ledger_head(rm.tags, ledger), {
                **intent, "note": f"completed by {lock_owner(ident)}: its holder {pending.get('holder')} stopped "
                "after the alias move, before the ledger append"})
        _finish(hook, model_name, recorded, pending)
        if log:
            log.warning("Completed the move of %s@%s -> v%s left by %s (ledger entry %s)", model_name,
                        intent["alias"], intent.get("version"), pending.get("holder"), recorded["seq"])
    elif log:
        log.warning("Dropped the intent of %s to move %s@%s to v%s: the alias is v%s, so it stopped before the "
                    "move; nothing moved, nothing recorded", pending.get("holder"), model_name, intent["alias"],
                    intent.get("version"), current)
    clear_pending(hook, model_name)
    return registered_model(hook, model_name), completed


def move_alias(
    hook: MlflowHook,
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
    lock_ttl_s: float = DEFAULT_TTL_S,
) -> tuple[dict[str, Any], bool]:
    """Move ``alias`` of ``model_name`` to ``version`` and record it. Returns (ledger entry, changed).

    ``changed`` is True when this call moved the alias, or completed the move an earlier try of this same task
    made before it was killed (that try announced nothing).
    ``only_if_unset``: move only when no version holds the alias (a first champion racing another).
    """
    ident = run_identity(context)
    owner = lock_owner(ident)
    with PromotionLock(hook, model_name, owner, timeout_s=lock_timeout_s, ttl_s=lock_ttl_s, log=log) as lock:
        rm, completed = recover_pending(hook, model_name, registered_model(hook, model_name), ident, log)
        own = completed is not None and _entry_matches_task(completed, ident)
        ledger = ledger_from_tags(rm.tags)
        head = ledger_head(rm.tags, ledger)
        current = _str(rm.aliases.get(alias))
        last = last_entry(ledger, alias)

        # 1. Reconcile: the alias moved without a ledger entry (UI, API, or an old release's task that died).
        if current is not None and (last is None or str(last.get("version")) != current):
            intent = tags.read_intent(hook, model_name, current, alias)
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
            last = append_entry(hook, model_name, head, observed)
            head = last["seq"]
            ledger.append(last)
            if log:
                log.warning("Ledger of %s reconciled: %s=v%s recorded as entry %s (%s)", model_name, alias,
                            current, last["seq"], last.get("note") or last["approved_by"])

        # 2. Idempotency: nothing to do when the version already holds the alias ...
        if current == str(version):
            # An earlier try of this same task instance moved it and recorded it, then failed before Airflow recorded
            # its success (and so its asset event): that try announced nothing, so this one announces the change.
            # At least once: a rerun cleared by hand after a success announces it again, with the same ledger seq
            # (consumers deduplicate on it); never announcing a move that happened is the worse failure.
            earlier_try = (last is not None and str(last.get("version")) == str(version)
                           and _entry_matches_task(last, ident)
                           and str((last.get("airflow") or {}).get("try_number")) != str(ident["try_number"]))
            if log:
                log.info("%s@%s is already v%s: nothing to move (ledger entry %s%s)", model_name, alias, version,
                         last.get("seq") if last else None,
                         ", made by an earlier try of this task" if earlier_try else "")
            return last or {}, (own and str(completed.get("version")) == str(version)) or earlier_try
        if only_if_unset and current is not None:
            if log:
                log.warning("%s@%s was set to v%s meanwhile: v%s is not made %s", model_name, alias, current,
                            version, alias)
            return last or {}, False
        # ... or when this task already moved it earlier (a retry after another promotion superseded it).
        done = [
            e
            for e in ledger
            if e.get("alias") == alias and str(e.get("version")) == str(version) and _entry_matches_task(e, ident)
        ]
        if done:
            if log:
                log.warning("%s@%s -> v%s was already done by this task (ledger entry %s); since then the alias "
                            "moved to v%s. Not moving it back.", model_name, alias, version, done[-1]["seq"],
                            current)
            return done[-1], False

        # 3. The move: durable intent, fence, atomic alias move, ledger append, version tags, compare-and-set.
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
            "seq": head + 1,
        }
        clear = [o for o in clear_aliases if o != alias and _str(rm.aliases.get(o)) == str(version)]
        lock.ensure_held()
        pending = write_pending(hook, model_name, {"entry": entry, "holder": owner, "clear": clear})
        lock.ensure_held()
        hook.set_registered_model_alias(model_name, alias, str(version))
        entry = append_entry(hook, model_name, head, pending["entry"])
        cleared = _finish(hook, model_name, entry, pending)
        clear_pending(hook, model_name)
        after = hook.get_registered_model(model_name).aliases.get(alias)
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
    hook: MlflowHook,
    *,
    model_name: str,
    alias: str,
    context: Any,
    evidence_uri: str | None,
    reason: str,
    lock_timeout_s: float = 120,
    log: logging.Logger | None = None,
    lock_ttl_s: float = DEFAULT_TTL_S,
) -> tuple[dict[str, Any] | None, bool]:
    """Take ``alias`` away from its version (a canary rolled back), under the promotion lock, with a ledger entry.

    Idempotent: when no version holds the alias any more, nothing happens (a retry, or someone removed it),
    unless this call completed the removal an earlier, killed try of this task made. Returns (entry or None,
    changed). The same durable intent as :func:`move_alias` is written first.
    """
    ident = run_identity(context)
    owner = lock_owner(ident)
    with PromotionLock(hook, model_name, owner, timeout_s=lock_timeout_s, ttl_s=lock_ttl_s, log=log) as lock:
        rm, completed = recover_pending(hook, model_name, registered_model(hook, model_name), ident, log)
        current = rm.aliases.get(alias)
        if current is None:
            if completed is not None and completed.get("alias") == alias and _entry_matches_task(completed, ident):
                return completed, True
            if log:
                log.info("%s@%s is not set: nothing to roll back", model_name, alias)
            return None, False
        head = ledger_head(rm.tags, ledger_from_tags(rm.tags))
        entry = {
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
            "seq": head + 1,
        }
        lock.ensure_held()
        pending = write_pending(hook, model_name, {"entry": entry, "holder": owner, "clear": [],
                                                     "reason": reason[:1000]})
        lock.ensure_held()
        hook.delete_registered_model_alias(model_name, alias)
        entry = append_entry(hook, model_name, head, pending["entry"])
        _finish(hook, model_name, entry, pending)
        clear_pending(hook, model_name)
        return entry, True
