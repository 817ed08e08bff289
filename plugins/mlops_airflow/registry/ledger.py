"""The promotion ledger of a registered model: its one reader and its one writer.

The ledger is append-only: one registered-model tag per entry, ``mlops.ledger.<seq:06d>`` (compact
JSON), and ``mlops.ledger.head`` = the last seq. Why tags and not one JSON list or an artifact:
``registered_model_tags.value`` is ``varchar(5000)`` on PostgreSQL, so a single list tag would hold
only ~12 entries and history would be truncated; a registered model has no artifact store of its own
(an artifact ledger needs a host run and a read-modify-write of a file). One tag per entry is
unbounded, never rewritten (an audit log), one REST call per append, and the whole history is read
with one ``get_registered_model``.

Before a move changes an alias, its holder writes the entry it is about to append as the *pending intent*
``mlops.ledger.pending`` (with the planned ``seq``, the holder and the aliases it will clear): durable
before the move, so a holder killed between the move and the append is completed (or, when the alias did
not move, dropped) by the next holder of the promotion lock (:mod:`.aliases`). The pending tag is cleared
once the move is recorded; there is never more than one (the lock serialises the moves).

:func:`ledger_from_tags` is the only parser of those tags: the alias moves (:mod:`.aliases`), the
operators and the UI (:func:`promotion_history`) all read through it. No Airflow operator here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlops_airflow.registry.tags import promotion_from_version_tags
from mlops_airflow.registry.versions import registered_model

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

LEDGER_PREFIX = "mlops.ledger."
LEDGER_HEAD = "mlops.ledger.head"
LEDGER_PENDING = "mlops.ledger.pending"
MAX_TAG_VALUE = 4900  # registered_model_tags.value is varchar(5000) on PostgreSQL


# ------------------------------------------------------------------------------------------ reading
def ledger_from_tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The ledger entries in a registered model's tags, oldest first.

    An entry that is not a JSON object is kept as ``{"seq", "action": "unreadable", "raw"}`` so a gap in the
    history stays visible; an entry without a usable ``seq`` gets its tag's sequence number.
    """
    entries = []
    for key, value in tags.items():
        suffix = key.removeprefix(LEDGER_PREFIX)
        if not key.startswith(LEDGER_PREFIX) or not suffix.isdigit():
            continue
        try:
            entry = json.loads(value)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            entry = {"seq": int(suffix), "action": "unreadable", "raw": str(value)[:200]}
        elif not str(entry.get("seq", "")).isdigit():
            entry = {**entry, "seq": int(suffix)}
        entries.append(entry)
    return sorted(entries, key=lambda e: int(e["seq"]))


def read_ledger(hook: MlflowHook, model_name: str) -> list[dict[str, Any]]:
    """All ledger entries of ``model_name``, oldest first."""
    return ledger_from_tags(registered_model(hook, model_name).tags)


#: Entries that record a decision or a side effect, not a version taking an alias.
NOT_MOVES = frozenset({"cleared", "rejected"})


def last_entry(ledger: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    """The latest entry that gave ``alias`` to a version (``cleared`` and ``rejected`` entries do not count)."""
    for entry in reversed(ledger):
        if entry.get("alias") == alias and entry.get("action") not in NOT_MOVES:
            return entry
    return None


def previous_holder(hook: MlflowHook, model_name: str, alias: str = "champion") -> str | None:
    """The version that held ``alias`` before the current holder (the rollback target), from the ledger."""
    entry = last_entry(read_ledger(hook, model_name), alias)
    return entry.get("previous_version") if entry else None


def ledger_head(tags: dict[str, str], ledger: list[dict[str, Any]]) -> int:
    """The last sequence number used: the head tag, or a higher entry written by a move that died before it."""
    return max([int(tags.get(LEDGER_HEAD, "0") or 0), *[int(e.get("seq", 0)) for e in ledger]])


def promotion_history(model_tags: dict[str, str], versions: Iterable[Any]) -> list[dict[str, Any]]:
    """The promotion history of one model for display, newest first, from both places a promotion is recorded.

    - the ledger on the registered model (:func:`ledger_from_tags`);
    - the flat ``mlops.promotion.*`` tags on a model version (:func:`~.tags.promotion_from_version_tags`),
      which is all a first-champion promotion by ``RegisterModelOperator`` writes. A version-tag move already
      in the ledger is not listed twice.

    Each row: ``seq, at, alias, version, previous_version, action, approved_by, evidence_uri, dag_run, note,
    source`` (``ledger`` or ``version tags``). Unreadable entries are kept (``action: "unreadable"``).
    """
    rows: list[dict[str, Any]] = []
    for entry in ledger_from_tags(model_tags):
        airflow = entry.get("airflow") if isinstance(entry.get("airflow"), dict) else {}
        rows.append(
            {
                "seq": int(entry["seq"]),
                "at": entry.get("at"),
                "alias": entry.get("alias"),
                "version": _str_or_none(entry.get("version")),
                "previous_version": _str_or_none(entry.get("previous_version")),
                "action": entry.get("action") or "promote",
                "approved_by": entry.get("approved_by"),
                "evidence_uri": entry.get("evidence_uri"),
                "dag_run": "/".join(str(airflow[k]) for k in ("dag_id", "run_id") if airflow.get(k)) or None,
                "note": entry.get("note") or entry.get("raw"),
                "source": "ledger",
            }
        )
    recorded = {(r["alias"], r["version"]) for r in rows}
    for mv in versions:
        row = promotion_from_version_tags(str(mv.version), dict(mv.tags or {}))
        if row is not None and (row["alias"], row["version"]) not in recorded:
            rows.append({"seq": None, **row, "note": None, "source": "version tags"})
    return sorted(rows, key=lambda r: (str(r["at"] or ""), r["seq"] or 0), reverse=True)


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# ------------------------------------------------------------------------------------------ writing
def fit_tag(entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``entry`` and its compact JSON, shortened (verdict, long strings) to fit one registered-model tag."""
    value = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    if len(value) > MAX_TAG_VALUE:
        entry = {**entry, "verdict": {"passed": (entry.get("verdict") or {}).get("passed"), "truncated": True}}
        entry = {k: (v[:400] + "...") if isinstance(v, str) and len(v) > 400 else v for k, v in entry.items()}
        value = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return entry, value


def append_entry(hook: MlflowHook, model_name: str, head: int, entry: dict[str, Any]) -> dict[str, Any]:
    """Write ``entry`` as ledger entry ``head + 1`` (shortened to fit one tag) and move the head. Returns it."""
    entry, value = fit_tag({**entry, "seq": head + 1})
    hook.set_registered_model_tag(model_name, f"{LEDGER_PREFIX}{entry['seq']:06d}", value)
    hook.set_registered_model_tag(model_name, LEDGER_HEAD, str(entry["seq"]))
    return entry


def write_pending(hook: MlflowHook, model_name: str, pending: dict[str, Any]) -> dict[str, Any]:
    """Record the move about to be made (``{"entry", "holder", "clear"}``) before the alias moves. Returns it.

    Shortened like a ledger entry so it fits one tag; the entry appended later is the shortened one.
    """
    entry, _ = fit_tag(pending["entry"])
    pending = {**pending, "entry": entry}
    value = json.dumps(pending, sort_keys=True, separators=(",", ":"), default=str)
    if len(value) > MAX_TAG_VALUE:  # a very long holder string: the entry is what must survive
        pending = {"entry": entry, "holder": str(pending.get("holder"))[:200], "clear": pending.get("clear") or []}
        value = json.dumps(pending, sort_keys=True, separators=(",", ":"), default=str)
    hook.set_registered_model_tag(model_name, LEDGER_PENDING, value)
    return pending


def pending_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The pending intent in a registered model's tags, or None. An unreadable one is ``{"unreadable": raw}``."""
    raw = tags.get(LEDGER_PENDING)
    if not raw:
        return None
    try:
        pending = json.loads(raw)
    except json.JSONDecodeError:
        pending = None
    if not isinstance(pending, dict) or not isinstance(pending.get("entry"), dict):
        return {"unreadable": str(raw)[:200]}
    return pending


def clear_pending(hook: MlflowHook, model_name: str) -> None:
    """Remove the pending intent (the move it announced is recorded, or it never happened)."""
    from mlflow.exceptions import MlflowException

    try:
        hook.delete_registered_model_tag(model_name, LEDGER_PENDING)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def event_extra(entry: dict[str, Any], changed: bool) -> dict[str, Any]:
    """A ledger entry as the extras of the ``mlflow://models/<name>`` Asset event."""
    keys = ("alias", "version", "previous_version", "action", "at", "approved_by", "approved_at", "evidence_uri", "seq")
    return {"changed": changed, **{k: entry.get(k) for k in keys}}
