"""Governed promotion: approval gate, alias moves with a ledger, validated rollback.

Every alias move (``champion``, ``challenger``, ``canary``, ``shadow``; never the deprecated stages)
goes through :func:`move_alias`, which

1. takes the model's *promotion lock* (a registered model ``<name>.promotion-lock`` created with
   ``create_registered_model``, which the registry makes atomic with a unique name; deleted when the
   move ends, broken after ``lock_ttl_s`` if a worker died holding it);
2. reconciles the ledger with the alias (a move done outside the ledger, in the UI or by a task that
   died half-way, is recorded first, from the version's ``mlops.promotion.<alias>`` intent tag when it
   has one);
3. writes the move on the version (tags: who approved, when, evidence URI, previous holder), moves the
   alias with ``set_registered_model_alias`` (atomic: there is never a moment without a champion),
   appends the ledger entry and re-reads the alias (compare-and-set check).

The ledger is append-only: one registered-model tag per entry, ``mlops.ledger.<seq:06d>`` (compact
JSON), and ``mlops.ledger.head`` = the last seq. Why tags and not one JSON list or an artifact:
``registered_model_tags.value`` is ``varchar(5000)`` on PostgreSQL, so a single list tag would hold
only ~12 entries and history would be truncated; a registered model has no artifact store of its own
(an artifact ledger needs a host run and a read-modify-write of a file). One tag per entry is
unbounded, never rewritten (an audit log), one REST call per append, and the whole history is read
with one ``get_registered_model``. :func:`read_ledger` returns it in order.

Promoting the version that already holds the alias is a no-op (no second entry); a retry of a task
whose move was already recorded is a no-op too, even if another promotion happened since.
"""

from __future__ import annotations

import json
import random
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, BaseOperator

from mlops_airflow.assets import model_asset_uri
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink
from mlops_airflow.operators._common import as_dict, run_identity
from mlops_airflow.registry.versions import (  # noqa: F401 - model_artifact_present: re-exported for one release
    check_version_usable,
    model_artifact_present,
    now_iso,
)
from mlops_airflow.registry.versions import registered_model as _registered_model
from mlops_airflow.registry.versions import run_ids as _run_ids

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

ALIASES = ("champion", "challenger", "canary", "shadow")
LEDGER_PREFIX = "mlops.ledger."
LEDGER_HEAD = "mlops.ledger.head"
LOCK_SUFFIX = ".promotion-lock"
APPROVE = "Approve"


# --------------------------------------------------------------------------------------- ledger
def read_ledger(client: Any, model_name: str) -> list[dict[str, Any]]:
    """All ledger entries of ``model_name``, oldest first."""
    return _ledger_from_tags(_registered_model(client, model_name).tags)


def _ledger_from_tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    entries = []
    for key, value in tags.items():
        suffix = key.removeprefix(LEDGER_PREFIX)
        if key.startswith(LEDGER_PREFIX) and suffix.isdigit():
            try:
                entries.append(json.loads(value))
            except json.JSONDecodeError:
                entries.append({"seq": int(suffix), "action": "unreadable", "raw": value[:200]})
    return sorted(entries, key=lambda e: int(e.get("seq", 0)))


def last_entry(ledger: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    for entry in reversed(ledger):
        if entry.get("alias") == alias and entry.get("action") != "cleared":
            return entry
    return None


def previous_holder(client: Any, model_name: str, alias: str = "champion") -> str | None:
    """The version that held ``alias`` before the current holder (the rollback target), from the ledger."""
    entry = last_entry(read_ledger(client, model_name), alias)
    return entry.get("previous_version") if entry else None


# ----------------------------------------------------------------------------------------- lock
class PromotionLock:
    """Mutual exclusion of alias moves of one model, held in the registry itself (works across workers).

    ``create_registered_model`` of ``<model>.promotion-lock`` succeeds for exactly one caller (unique
    name); the holder deletes it. A lock older than ``ttl_s`` belongs to a dead worker and is broken.
    """

    def __init__(self, client: Any, model_name: str, owner: str, *, timeout_s: float = 120, ttl_s: float = 600,
                 log: logging.Logger | None = None) -> None:
        self.client, self.name, self.owner = client, f"{model_name}{LOCK_SUFFIX}", owner
        self.timeout_s, self.ttl_s, self.log = timeout_s, ttl_s, log
        self.token = uuid.uuid4().hex

    def __enter__(self) -> PromotionLock:
        from mlflow.exceptions import MlflowException

        deadline = time.monotonic() + self.timeout_s
        while True:
            expires = (datetime.now(UTC) + timedelta(seconds=self.ttl_s)).isoformat()
            try:
                self.client.create_registered_model(self.name, tags={
                    "mlops.lock.token": self.token, "mlops.lock.owner": self.owner, "mlops.lock.expires_at": expires,
                }, description="Promotion in progress (airflow-provider-mlops); deleted when the alias move ends.")
                return self
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            holder = self._holder()
            if holder and holder.get("mlops.lock.expires_at", "") < datetime.now(UTC).isoformat():
                if self.log:
                    self.log.warning("Breaking expired promotion lock %s held by %s", self.name,
                                     holder.get("mlops.lock.owner"))
                again = self._holder()  # break only *that* expired lock, not one a peer just took
                if again and again.get("mlops.lock.token") == holder.get("mlops.lock.token"):
                    self._delete()
                continue
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"another promotion of {self.name.removesuffix(LOCK_SUFFIX)} holds the lock {self.name!r} "
                    f"(owner {holder.get('mlops.lock.owner') if holder else '?'}) for over {self.timeout_s:.0f}s; "
                    "nothing was moved. Airflow retries this task; if the holder is dead, delete that registered "
                    "model or wait for its expiry"
                )
            time.sleep(0.2 + random.random() * 0.3)

    def _holder(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _delete(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def __exit__(self, *exc: object) -> None:
        holder = self._holder()
        if holder and holder.get("mlops.lock.token") == self.token:
            self._delete()


# ------------------------------------------------------------------------------------ the move
def _entry_matches_task(entry: dict[str, Any], ident: dict[str, str]) -> bool:
    airflow = entry.get("airflow") or {}
    return all(airflow.get(k) == ident.get(k) for k in ("dag_id", "run_id", "task_id"))


def _lock_owner(ident: dict[str, str]) -> str:
    return f"{ident['dag_id']}/{ident['run_id']}/{ident['task_id']}#{ident['try_number']}@{socket.gethostname()}"


def _ledger_head(tags: dict[str, str], ledger: list[dict[str, Any]]) -> int:
    """The last sequence number used: the head tag, or a higher entry written by a move that died before it."""
    return max([int(tags.get(LEDGER_HEAD, "0") or 0), *[int(e.get("seq", 0)) for e in ledger]])


def _append(client: Any, model_name: str, head: int, entry: dict[str, Any]) -> dict[str, Any]:
    entry = {**entry, "seq": head + 1}
    value = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    if len(value) > 4900:  # registered_model_tags.value is varchar(5000) on PostgreSQL
        entry["verdict"] = {"passed": (entry.get("verdict") or {}).get("passed"), "truncated": True}
        entry = {k: (v[:400] + "...") if isinstance(v, str) and len(v) > 400 else v for k, v in entry.items()}
        value = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    client.set_registered_model_tag(model_name, f"{LEDGER_PREFIX}{entry['seq']:06d}", value)
    client.set_registered_model_tag(model_name, LEDGER_HEAD, str(entry["seq"]))
    return entry


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
    owner = _lock_owner(ident)
    with PromotionLock(client, model_name, owner, timeout_s=lock_timeout_s, log=log):
        rm = _registered_model(client, model_name)
        ledger = _ledger_from_tags(rm.tags)
        head = _ledger_head(rm.tags, ledger)
        current = rm.aliases.get(alias)
        current = str(current) if current is not None else None
        last = last_entry(ledger, alias)

        # 1. Reconcile: the alias moved without a ledger entry (UI, API, or a task that died mid-move).
        if current is not None and (last is None or str(last.get("version")) != current):
            intent = _intent(client, model_name, current, alias)
            known_ids = {e.get("id") for e in ledger}
            if intent and intent.get("id") not in known_ids:
                observed = {**intent, "previous_version": last.get("version") if last else None,
                            "note": "recorded late: the move happened, its ledger append did not"}
            else:
                observed = {"id": uuid.uuid4().hex[:12], "alias": alias, "version": current, "action": "observed",
                            "previous_version": last.get("version") if last else None, "at": now_iso(),
                            "approved_by": "unknown: the alias was moved outside the ledger", "airflow": {}}
            last = _append(client, model_name, head, observed)
            head = last["seq"]
            ledger.append(last)
            if log:
                log.warning("Ledger of %s reconciled: %s=v%s recorded as entry %s (%s)", model_name, alias, current,
                            last["seq"], last.get("note") or last["approved_by"])

        # 2. Idempotency: nothing to do when the version already holds the alias ...
        if current == str(version):
            if log:
                log.info("%s@%s is already v%s: nothing to move (ledger entry %s)", model_name, alias, version,
                         last.get("seq") if last else None)
            return last or {}, False
        if only_if_unset and current is not None:
            if log:
                log.warning("%s@%s was set to v%s meanwhile: v%s is not made %s", model_name, alias, current, version,
                            alias)
            return last or {}, False
        # ... or when this task already moved it earlier (a retry after another promotion superseded it).
        done = [e for e in ledger if e.get("alias") == alias and str(e.get("version")) == str(version)
                and _entry_matches_task(e, ident)]
        if done:
            if log:
                log.warning("%s@%s -> v%s was already done by this task (ledger entry %s); since then the alias "
                            "moved to v%s. Not moving it back.", model_name, alias, version, done[-1]["seq"], current)
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
            "verdict": _compact_verdict(verdict),
            "airflow": {k: ident[k] for k in ("dag_id", "run_id", "task_id", "try_number")},
        }
        _write_version_tags(client, model_name, str(version), entry)
        client.set_registered_model_alias(model_name, alias, str(version))
        entry = _append(client, model_name, head, entry)
        client.set_model_version_tag(model_name, str(version), f"mlops.promotion.{alias}",
                                     json.dumps(entry, sort_keys=True, default=str))
        client.set_model_version_tag(model_name, str(version), "mlops.promotion.ledger_seq", str(entry["seq"]))
        cleared = []
        for other in clear_aliases:
            if other != alias and str(client.get_registered_model(model_name).aliases.get(other)) == str(version):
                client.delete_registered_model_alias(model_name, other)
                cleared.append(other)
                _append(client, model_name, entry["seq"], {
                    "id": uuid.uuid4().hex[:12], "alias": other, "version": str(version), "action": "cleared",
                    "at": now_iso(), "note": f"v{version} became {alias}", "airflow": entry["airflow"],
                })
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


def _intent(client: Any, model_name: str, version: str, alias: str) -> dict[str, Any] | None:
    try:
        raw = client.get_model_version(model_name, version).tags.get(f"mlops.promotion.{alias}")
        return json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 - a missing/garbled intent only means "unknown mover"
        return None


def _write_version_tags(client: Any, model_name: str, version: str, entry: dict[str, Any]) -> None:
    airflow = entry["airflow"]
    tags = {
        f"mlops.promotion.{entry['alias']}": json.dumps(entry, sort_keys=True, default=str),
        "mlops.promotion.alias": entry["alias"],
        "mlops.promotion.action": entry["action"],
        "mlops.promotion.at": entry["at"],
        "mlops.promotion.approved_by": str(entry["approved_by"]),
        "mlops.promotion.approved_at": str(entry["approved_at"]),
        "mlops.promotion.previous": entry["previous_version"] or "none",
        "mlops.promotion.evidence_uri": entry["evidence_uri"] or "none",
        "mlops.promotion.dag_run": f"{airflow['dag_id']}/{airflow['run_id']}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


def _compact_verdict(verdict: dict[str, Any] | None) -> dict[str, Any] | None:
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


def emit_model_event(operator: BaseOperator, context: Any, model_name: str, extra: dict[str, Any]) -> None:
    """Attach ``extra`` to the ``mlflow://models/<name>`` outlet's Asset event."""
    uri = model_asset_uri(model_name)
    for outlet in operator.outlets or []:
        if isinstance(outlet, Asset) and outlet.uri == uri:
            context["outlet_events"][outlet].extra = extra


def event_extra(entry: dict[str, Any], changed: bool) -> dict[str, Any]:
    keys = ("alias", "version", "previous_version", "action", "at", "approved_by", "approved_at", "evidence_uri",
            "seq")
    return {"changed": changed, **{k: entry.get(k) for k in keys}}


# ------------------------------------------------------------------------------------ approval
def approval_policy() -> str:
    """``[mlops] approval_policy``: ``hitl`` (default, a person approves) or ``auto`` (local demo only)."""
    policy = (mlops_conf("approval_policy", "hitl") or "hitl").strip().lower()
    if policy not in ("hitl", "auto"):
        raise ValueError(f"[mlops] approval_policy={policy!r} is not one of: hitl, auto")
    return policy


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def approval_markdown(*, model_name: str, version: str, alias: str, verdict: dict[str, Any],
                      dataset_version: dict[str, Any] | None, drift: dict[str, Any] | None,
                      links: dict[str, str]) -> tuple[str, str]:
    """Subject and Markdown body shown to the approver (and logged by the auto policy)."""
    metrics = verdict.get("metrics") or {}
    champ = verdict.get("champion_version")
    subject = (f"Promote {model_name} v{version} to '{alias}'"
               + (f" (replacing v{champ})" if champ else " (first champion)"))
    lines = [f"### {subject}", "", f"**Evaluation verdict:** {'PASSED' if verdict.get('passed') else 'FAILED'}"]
    lines += [f"- {r}" for r in verdict.get("reasons") or []]
    names = sorted(set(metrics.get("challenger") or {}) | set(metrics.get("champion") or {}))
    if names:
        lines += ["", f"| metric | challenger v{version} | champion {('v' + str(champ)) if champ else '-'} |",
                  "|---|---|---|"]
        for name in names:
            lines.append(f"| {name} | {_fmt((metrics.get('challenger') or {}).get(name, '-'))} | "
                         f"{_fmt((metrics.get('champion') or {}).get(name, '-'))} |")
    if metrics.get("delta") is not None:
        ci = metrics.get("ci") or [None, None]
        lines += ["", f"**{metrics.get('primary_metric', 'metric')} improvement:** {_fmt(metrics['delta'])} "
                  f"(95% paired-bootstrap CI [{_fmt(ci[0])}, {_fmt(ci[1])}], n_boot={metrics.get('n_boot')}); "
                  f"McNemar p = {_fmt(metrics.get('mcnemar_p'))} on {metrics.get('holdout_rows')} holdout rows"]
    if dataset_version:
        lines += ["", f"**Data version:** `{dataset_version.get('path')}` rev `{str(dataset_version.get('rev'))[:12]}` "
                  f"md5 `{dataset_version.get('md5')}`"]
    if drift:
        status = "no drift" if drift.get("passed") else "DRIFT"
        lines += ["", f"**Drift status:** {status} (share {_fmt(drift.get('drift_share'), 2)}, columns "
                  f"{drift.get('drifted_columns') or []})"]
    lines += ["", f"**Evidence:** `{verdict.get('evidence_uri')}`"]
    lines += [f"- [{name}]({url})" for name, url in links.items() if url]
    return subject, "\n".join(lines)


class _GateInputs:
    """Template fields and evidence shared by both approval policies."""

    model_name: str
    version: Any
    alias: str
    verdict: Any
    dataset_version: Any
    drift: Any
    mlflow_conn_id: str

    def evidence(self) -> tuple[str, dict[str, Any], str, str]:
        verdict = as_dict(self.verdict, "verdict")
        version = str(self.version.get("version") if isinstance(self.version, dict) else self.version)
        dataset = as_dict(self.dataset_version, "dataset_version") if self.dataset_version else None
        drift = as_dict(self.drift, "drift") if self.drift else None
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        try:
            links = {"model version": hook.model_version_url(self.model_name, version)}
            if verdict.get("run_url"):
                links["challenger run"] = verdict["run_url"]
            if drift and drift.get("evidence_uri"):
                links["drift report"] = drift["evidence_uri"]
        except Exception:  # noqa: BLE001 - links are a convenience, never a reason to fail the gate
            links = {}
        subject, body = approval_markdown(model_name=self.model_name, version=version, alias=self.alias,
                                          verdict=verdict, dataset_version=dataset, drift=drift, links=links)
        return version, verdict, subject, body


def _skip_if_failed(verdict: dict[str, Any], model_name: str, version: str) -> None:
    if not verdict.get("passed"):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(
            f"{model_name} v{version} did not pass evaluation ({'; '.join(verdict.get('reasons') or [])}): "
            "no approval is requested and nothing is promoted"
        )


class ModelApprovalOperator(_GateInputs, ApprovalOperator):
    """Airflow's ``ApprovalOperator`` with the evaluation evidence as its subject and Markdown body.

    Skips (and so skips the promotion) when the verdict did not pass: nobody is asked to approve a
    model that failed its gate. The approval lands on the *Required Actions* page; its XCom
    (``responded_by_user``, ``responded_at``) is what :class:`PromoteModelOperator` records.

    :param verdict: the evaluation verdict (templated / XCom).
    :param version: the version to promote, or the register task's XCom (templated).
    :param dataset_version: the DVC version the model was trained on (templated / XCom), optional.
    :param drift: the drift verdict (templated / XCom), optional.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "model_name", "version", "alias",
                                      "verdict", "dataset_version", "drift")

    def __init__(self, *, model_name: str, version: Any, verdict: Any, alias: str = "champion",
                 dataset_version: Any = None, drift: Any = None, mlflow_conn_id: str = MlflowHook.default_conn_name,
                 subject: str | None = None, **kwargs: Any) -> None:
        super().__init__(subject=subject or f"Promote {model_name} to {alias}", **kwargs)
        self.model_name, self.version, self.alias, self.verdict = model_name, version, alias, verdict
        self.dataset_version, self.drift, self.mlflow_conn_id = dataset_version, drift, mlflow_conn_id

    def execute(self, context: Context) -> Any:
        version, verdict, self.subject, self.body = self.evidence()
        _skip_if_failed(verdict, self.model_name, version)
        self.log.info("SUMMARY approval-requested model=%s version=%s alias=%s evidence=%s", self.model_name,
                      version, self.alias, verdict.get("evidence_uri"))
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """The person's answer (or the timeout): one SUMMARY line for on-call, then Airflow's handling."""
        version = self.version.get("version") if isinstance(self.version, dict) else self.version
        if "error" in event:
            self.log.info("SUMMARY approval model=%s version=%s alias=%s decision=none (%s): nothing is promoted; "
                          "rerun the DAG to ask again", self.model_name, version, self.alias,
                          event.get("error_type") or event.get("error"))
            return super().execute_complete(context=context, event=event)
        chosen = (event.get("chosen_options") or ["?"])[0]
        user = event.get("responded_by_user")
        by = user.get("name") or user.get("id") if isinstance(user, dict) else user
        self.log.info("SUMMARY approval model=%s version=%s alias=%s decision=%s by=%s at=%s", self.model_name,
                      version, self.alias, chosen, by, event.get("responded_at"))
        return super().execute_complete(context=context, event=event)


class AutoApproveOperator(_GateInputs, BaseOperator):
    """The local demo's approval policy (``[mlops] approval_policy = auto``): approves a passing verdict.

    Logs the same evidence a person would see, and says loudly that no person approved. Returns the
    same shape as ``ApprovalOperator`` (``chosen_options``, ``responded_by_user``, ``responded_at``).
    """

    template_fields: Sequence[str] = ("model_name", "version", "alias", "verdict", "dataset_version", "drift")
    ui_color = "#f0ad4e"

    def __init__(self, *, model_name: str, version: Any, verdict: Any, alias: str = "champion",
                 dataset_version: Any = None, drift: Any = None, mlflow_conn_id: str = MlflowHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name, self.version, self.alias, self.verdict = model_name, version, alias, verdict
        self.dataset_version, self.drift, self.mlflow_conn_id = dataset_version, drift, mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        version, verdict, subject, body = self.evidence()
        _skip_if_failed(verdict, self.model_name, version)
        for line in body.splitlines():
            self.log.info("[evidence] %s", line)
        who = "AUTO-APPROVED by policy [mlops] approval_policy=auto (no person reviewed this; local demo only)"
        self.log.warning("%s: %s", who, subject)
        self.log.info("SUMMARY approval model=%s version=%s alias=%s decision=Approve by=policy:auto",
                      self.model_name, version, self.alias)
        return {"chosen_options": [APPROVE], "params_input": {}, "responded_at": now_iso(),
                "responded_by_user": {"id": "policy:auto", "name": who}, "policy": "auto"}


def approval_gate(*, task_id: str = "approve_promotion", model_name: str, version: Any, verdict: Any,
                  alias: str = "champion", dataset_version: Any = None, drift: Any = None,
                  policy: str | None = None, response_timeout: timedelta | None = timedelta(days=3),
                  **kwargs: Any) -> BaseOperator:
    """The approval task in front of a promotion, for the configured ``[mlops] approval_policy``.

    ``hitl`` (default): a :class:`ModelApprovalOperator` (Airflow HITL; waits on the Required Actions
    page; with no answer within ``response_timeout`` it fails and nothing is promoted). ``auto``: an
    :class:`AutoApproveOperator` (local demo: ``airflow dags test`` never answers a HITL request).
    Read from configuration at parse time (no connection, no Variable).
    """
    policy = (policy or approval_policy()).lower()
    common = {"task_id": task_id, "model_name": model_name, "version": version, "verdict": verdict, "alias": alias,
              "dataset_version": dataset_version, "drift": drift, **kwargs}
    if policy == "auto":
        return AutoApproveOperator(**common)
    if policy == "hitl":
        return ModelApprovalOperator(response_timeout=response_timeout, **common)
    raise ValueError(f"approval policy {policy!r} is not one of: hitl, auto")


def approval_of(value: Any) -> dict[str, Any]:
    """Who approved and when, from an approval task's XCom (ApprovalOperator's or the auto policy's)."""
    data = as_dict(value, "approval")
    chosen = data.get("chosen_options") or []
    if APPROVE not in chosen:
        raise RegistryError(f"the approval task answered {chosen or 'nothing'}, not {APPROVE!r}: nothing is promoted")
    user = data.get("responded_by_user") or {}
    at = data.get("responded_at")
    return {
        "approved_by": user.get("name") or user.get("id") or "unknown",
        "approved_at": at.isoformat() if hasattr(at, "isoformat") else str(at),
        "policy": data.get("policy") or "hitl",
    }


# ------------------------------------------------------------------------------------ operators
class PromoteModelOperator(BaseOperator):
    """Move ``alias`` of ``model_name`` to ``version`` after approval, with the ledger and an Asset event.

    Records on the version who approved, when, the evidence URI and the previous holder; appends a
    ledger entry; emits ``mlflow://models/<name>`` with the entry as extras. Idempotent and
    retry-safe (see :func:`move_alias`). Skips when the verdict did not pass.

    :param model_name: registered model (templated).
    :param version: version to promote, or the register task's XCom ``{version, ...}`` (templated).
    :param approval: the approval task's XCom (templated); required.
    :param verdict: the evaluation verdict (templated / XCom); its ``evidence_uri`` is recorded.
    :param alias: ``champion`` (default), ``challenger``, ``canary`` or ``shadow``.
    :param clear_aliases: aliases removed from the version once it holds ``alias`` (default: challenger).
    """

    template_fields: Sequence[str] = ("model_name", "version", "approval", "verdict", "alias")
    operator_extra_links = (MlflowModelVersionLink(), EvidenceLink())
    ui_color = "#0194e2"
    action = "promote"

    def __init__(self, *, model_name: str, version: Any, approval: Any, verdict: Any = None,
                 alias: str = "champion", clear_aliases: Sequence[str] = ("challenger",),
                 lock_timeout_s: float = 120, mlflow_conn_id: str = MlflowHook.default_conn_name,
                 **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [Asset(model_asset_uri(model_name))] if "{{" not in model_name else [])
        super().__init__(**kwargs)
        self.model_name, self.version, self.approval, self.verdict = model_name, version, approval, verdict
        self.alias, self.clear_aliases, self.lock_timeout_s = alias, tuple(clear_aliases), lock_timeout_s
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def target_version(self, client: Any, verdict: dict[str, Any] | None) -> str:
        value = self.version
        if isinstance(value, str) and value.strip().startswith("{"):
            value = as_dict(value, "version")
        return str(value.get("version") if isinstance(value, dict) else value)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.alias not in ALIASES:
            raise RegistryError(f"alias {self.alias!r} is not one of {ALIASES}; nothing was moved")
        self.hook.ensure_reachable()
        verdict = as_dict(self.verdict, "verdict") if self.verdict else None
        client = self.hook.get_client()
        version = self.target_version(client, verdict)
        if verdict is not None:
            _skip_if_failed(verdict, self.model_name, version)
        approval = approval_of(self.approval)
        mv = check_version_usable(self.hook, client, self.model_name, version)
        entry, changed = move_alias(
            client, model_name=self.model_name, alias=self.alias, version=version, approval=approval,
            context=context, evidence_uri=(verdict or {}).get("evidence_uri"), verdict=verdict, action=self.action,
            clear_aliases=self.clear_aliases, lock_timeout_s=self.lock_timeout_s, log=self.log,
        )
        emit_model_event(self, context, self.model_name, event_extra(entry, changed))
        url = self.hook.model_version_url(self.model_name, version)
        MlflowModelVersionLink.persist(context, url)
        EvidenceLink.persist(context, self.hook.run_url(*_run_ids(client, mv)) if mv.run_id else None)
        result = {"model_name": self.model_name, "alias": self.alias, "version": version, "changed": changed,
                  "previous_version": entry.get("previous_version"), "ledger_seq": entry.get("seq"),
                  "approved_by": entry.get("approved_by"), "evidence_uri": entry.get("evidence_uri"), "url": url}
        self.log.info("SUMMARY %s model=%s alias=%s version=%s previous=%s changed=%s ledger_seq=%s approved_by=%r "
                      "evidence=%s url=%s", self.action, self.model_name, self.alias, version,
                      entry.get("previous_version"), changed, entry.get("seq"), entry.get("approved_by"),
                      entry.get("evidence_uri"), url)
        return result


class RollbackModelOperator(PromoteModelOperator):
    """Move ``champion`` back to the version validated by :class:`ValidateRollbackOperator` (after approval).

    Same gate, lock, ledger and Asset event as a promotion; the ledger entry's action is ``rollback``.

    :param validation: the validation verdict (templated / XCom) ``{passed, version, evidence_uri, ...}``.
    """

    template_fields: Sequence[str] = ("model_name", "approval", "verdict", "alias")
    action = "rollback"

    def __init__(self, *, model_name: str, validation: Any, approval: Any, alias: str = "champion",
                 **kwargs: Any) -> None:
        super().__init__(model_name=model_name, version=None, approval=approval, verdict=validation, alias=alias,
                         clear_aliases=(), **kwargs)

    def target_version(self, client: Any, verdict: dict[str, Any] | None) -> str:
        if not verdict or not verdict.get("version"):
            raise RegistryError(f"no validated rollback target for {self.model_name}: the validation verdict names "
                                "no version")
        return str(verdict["version"])


def retire_alias(client: Any, *, model_name: str, alias: str, context: Any, evidence_uri: str | None,
                 reason: str, lock_timeout_s: float = 120,
                 log: logging.Logger | None = None) -> tuple[dict[str, Any] | None, bool]:
    """Take ``alias`` away from its version (a canary rolled back), under the promotion lock, with a ledger entry.

    Idempotent: when no version holds the alias any more, nothing happens (a retry, or someone removed it).
    Returns (ledger entry or None, changed).
    """
    ident = run_identity(context)
    owner = _lock_owner(ident)
    with PromotionLock(client, model_name, owner, timeout_s=lock_timeout_s, log=log):
        rm = _registered_model(client, model_name)
        current = rm.aliases.get(alias)
        if current is None:
            if log:
                log.info("%s@%s is not set: nothing to roll back", model_name, alias)
            return None, False
        head = _ledger_head(rm.tags, _ledger_from_tags(rm.tags))
        client.delete_registered_model_alias(model_name, alias)
        entry = _append(client, model_name, head, {
            "id": uuid.uuid4().hex[:12], "model": model_name, "alias": alias, "version": None,
            "previous_version": str(current), "action": "rollback", "at": now_iso(),
            "approved_by": "policy: automatic rollback of a significantly worse canary (no approval needed to "
                           "reduce exposure)",
            "approved_at": None, "approval_policy": "auto-rollback", "evidence_uri": evidence_uri,
            "verdict": {"passed": False, "reasons": [reason]},
            "airflow": {k: ident[k] for k in ("dag_id", "run_id", "task_id", "try_number")},
        })
        client.set_model_version_tag(model_name, str(current), f"mlops.promotion.{alias}.rolled_back",
                                     json.dumps({"seq": entry["seq"], "at": entry["at"], "reason": reason}))
        return entry, True


class RollbackCanaryOperator(BaseOperator):
    """Roll back a canary: remove the ``canary`` alias (its traffic share goes back to the champion).

    Taken on a :class:`~mlops_airflow.operators.scoring.ShadowCanaryAnalysisOperator` verdict whose
    ``recommendation`` is ``rollback``. Reducing exposure needs no approval; the move is made under the promotion
    lock, recorded in the ledger (action ``rollback``, alias ``canary``, ``previous_version`` = the canary) and
    announced on the ``mlflow://models/<name>`` asset. A retry, or a canary already gone, changes nothing.

    :param verdict: the shadow/canary verdict (templated / XCom).
    """

    template_fields: Sequence[str] = ("model_name", "verdict")
    operator_extra_links = (EvidenceLink(),)
    ui_color = "#d9534f"

    def __init__(self, *, model_name: str, verdict: Any, alias: str = "canary", lock_timeout_s: float = 120,
                 mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [Asset(model_asset_uri(model_name))] if "{{" not in model_name else [])
        super().__init__(**kwargs)
        self.model_name, self.verdict, self.alias = model_name, verdict, alias
        self.lock_timeout_s, self.mlflow_conn_id = lock_timeout_s, mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        verdict = as_dict(self.verdict, "verdict")
        if verdict.get("recommendation") != "rollback":
            raise RegistryError(
                f"the shadow/canary verdict recommends {verdict.get('recommendation')!r}, not 'rollback': the "
                f"{self.alias} of {self.model_name} is left in place. Check the DAG's branching"
            )
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        hook.ensure_reachable()
        client = hook.get_client()
        reason = "; ".join(verdict.get("reasons") or []) or "canary significantly worse than the champion"
        entry, changed = retire_alias(client, model_name=self.model_name, alias=self.alias, context=context,
                                      evidence_uri=verdict.get("evidence_uri"), reason=reason,
                                      lock_timeout_s=self.lock_timeout_s, log=self.log)
        if entry is not None:
            emit_model_event(self, context, self.model_name, event_extra(entry, changed))
        EvidenceLink.persist(context, verdict.get("evidence_uri"))
        result = {"model_name": self.model_name, "alias": self.alias, "changed": changed,
                  "rolled_back_version": entry.get("previous_version") if entry else None,
                  "ledger_seq": entry.get("seq") if entry else None, "reason": reason,
                  "evidence_uri": verdict.get("evidence_uri")}
        self.log.info("SUMMARY canary-rollback model=%s alias=%s version=%s changed=%s ledger_seq=%s reason=%r "
                      "evidence=%s", self.model_name, self.alias, result["rolled_back_version"], changed,
                      result["ledger_seq"], reason, verdict.get("evidence_uri"))
        return result


class ValidateRollbackOperator(BaseOperator):
    """Re-validate the previous champion on current data before a rollback (the rollback's verdict).

    The target is ``target_version`` or, by default, the version that held ``alias`` before the current
    holder (from the ledger). It is scored through score.py on ``holdout_path`` (current, labelled
    data) and must pass the absolute thresholds ``min_metrics`` (none configured = never passes).
    The evidence JSON is logged on the target's run.

    :param holdout_path: labelled Parquet of current data (templated).
    :param min_metrics: absolute thresholds, e.g. ``{"auc": 0.7}`` (templated).
    """

    template_fields: Sequence[str] = ("model_name", "target_version", "holdout_path", "min_metrics", "output_dir")
    operator_extra_links = (MlflowModelVersionLink(), EvidenceLink())
    ui_color = "#d9534f"

    def __init__(self, *, model_name: str, holdout_path: str, min_metrics: dict[str, float] | None,
                 target_version: str | None = None, alias: str = "champion", label_column: str = "churned",
                 output_dir: str | None = None, python: str | None = None,
                 mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_name, self.holdout_path, self.min_metrics = model_name, holdout_path, min_metrics
        self.target_version, self.alias, self.label_column = target_version, alias, label_column
        self.output_dir, self.python, self.mlflow_conn_id = output_dir, python, mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.operators._scoring import file_sha256, score_parquet
        from mlops_airflow.operators.evaluation import (
            binary_metrics,
            check_absolute,
            model_cache_key,
            read_scored,
            scores_dir,
        )

        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        hook.ensure_reachable()
        client = hook.get_client()
        rm = _registered_model(client, self.model_name)
        current = rm.aliases.get(self.alias)
        target = str(self.target_version) if self.target_version else previous_holder(client, self.model_name,
                                                                                       self.alias)
        if not target:
            raise RegistryError(f"{self.model_name}@{self.alias} has no previous holder in the ledger: nothing to "
                                "roll back to; pass target_version explicitly")
        if str(target) == str(current):
            raise RegistryError(f"{self.model_name}@{self.alias} is already v{target}; nothing to roll back")
        mv = check_version_usable(hook, client, self.model_name, target)
        scored = score_parquet(hook=hook, model_uri=f"models:/{self.model_name}/{target}",
                               input_path=self.holdout_path, output_dir=scores_dir(self.output_dir),
                               cache_key=model_cache_key(mv), log=self.log, python=self.python)
        y, proba = read_scored(scored["output"], self.label_column)
        metrics = binary_metrics(y, proba)
        passed, reasons = check_absolute(metrics, self.min_metrics)
        evidence = {"kind": "rollback-validation", "model": self.model_name, "version": target,
                    "current_version": str(current) if current is not None else None, "metrics": metrics,
                    "min_metrics": self.min_metrics, "passed": passed, "reasons": reasons,
                    "holdout": {"path": self.holdout_path, "sha256": file_sha256(self.holdout_path), "rows": len(y)},
                    "at": now_iso(), "airflow": run_identity(context)}
        evidence_uri = hook.log_json_artifact(client, mv.run_id, evidence,
                                              f"evaluation/rollback-from-v{current}.json")
        verdict = {"passed": passed, "reasons": reasons, "metrics": {"challenger": metrics, "champion": None},
                   "evidence_uri": evidence_uri, "version": target, "champion_version": str(current),
                   "model_name": self.model_name}
        MlflowModelVersionLink.persist(context, hook.model_version_url(self.model_name, target))
        EvidenceLink.persist(context, hook.run_url(*_run_ids(client, mv)))
        self.log.info("SUMMARY rollback-validation model=%s target=v%s current=v%s passed=%s metrics=%s reasons=%s "
                      "evidence=%s", self.model_name, target, current, passed, metrics, reasons, evidence_uri)
        if not passed:
            raise RegistryError(
                f"rollback of {self.model_name}@{self.alias} to v{target} refused: on current data it fails "
                f"{'; '.join(reasons)} (evidence {evidence_uri}). Pick another target_version or retrain"
            )
        return verdict


__all__ = [
    "ALIASES", "AutoApproveOperator", "ModelApprovalOperator", "PromoteModelOperator", "RollbackCanaryOperator",
    "RollbackModelOperator", "ValidateRollbackOperator", "approval_gate", "approval_markdown", "approval_of",
    "move_alias", "read_ledger", "retire_alias",
]
