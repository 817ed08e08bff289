"""The approval gate in front of a promotion: a person (Airflow HITL) or, in the local demo only, a policy.

:func:`approval_gate` builds the approval task for ``[mlops] approval_policy``: ``hitl`` (default) is
:class:`ModelApprovalOperator` (Airflow's ``ApprovalOperator`` with the evaluation evidence as its Markdown
body, answered on the *Required Actions* page), ``auto`` is :class:`AutoApproveOperator`. Either returns the
XCom that :func:`approval_of` turns into the ``approved_by``/``approved_at`` a promotion records. A verdict
that did not pass skips the gate (nobody is asked to approve a failed model) and so the promotion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators._common import as_dict
from mlops_airflow.registry.evidence import approval_markdown, degenerate_holdout
from mlops_airflow.registry.versions import now_iso

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVE = "Approve"
REJECT = "Reject"


def configured_approvers() -> list[str]:
    """``[mlops] approvers``: the Airflow user ids assigned to approval requests (empty: anyone may answer)."""
    return [u.strip() for u in (mlops_conf("approvers", "") or "").split(",") if u.strip()]


def approval_timeout() -> timedelta:
    """``[mlops] approval_timeout_hours`` (default 72): then the request is rejected and nothing is promoted."""
    return timedelta(hours=float(mlops_conf("approval_timeout_hours", "72") or 72))


def approval_policy() -> str:
    """``[mlops] approval_policy``: ``hitl`` (default, a person approves) or ``auto`` (local demo only)."""
    policy = (mlops_conf("approval_policy", "hitl") or "hitl").strip().lower()
    if policy not in ("hitl", "auto"):
        raise ValueError(f"[mlops] approval_policy={policy!r} is not one of: hitl, auto")
    return policy


#: The inputs (and template fields) both approval operators take: the evidence a decision is made on.
GATE_FIELDS = ("model_name", "version", "alias", "verdict", "dataset_version", "drift", "training_set")


def _gate_inputs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the gate's inputs from an operator's keyword arguments (``model_name``, ``version`` and ``verdict`` are
    required; ``alias`` defaults to champion), leaving Airflow's own arguments."""
    missing = [k for k in ("model_name", "version", "verdict") if k not in kwargs]
    if missing:
        raise TypeError(f"an approval gate needs {', '.join(missing)}")
    inputs = {k: kwargs.pop(k, None) for k in GATE_FIELDS}
    inputs["alias"] = inputs["alias"] or "champion"
    inputs["mlflow_conn_id"] = kwargs.pop("mlflow_conn_id", MlflowHook.default_conn_name)
    return inputs


class _GateInputs:
    """Template fields and evidence shared by both approval policies."""

    model_name: str
    version: Any
    alias: str
    verdict: Any
    dataset_version: Any
    drift: Any
    training_set: Any
    mlflow_conn_id: str

    def evidence(self, context: Context | None = None) -> tuple[str, dict[str, Any], str, str, list[str]]:
        """Version, verdict, subject, Markdown body and the degenerate-holdout warnings (empty: it can decide)."""
        verdict = as_dict(self.verdict, "verdict")
        version = str(self.version.get("version") if isinstance(self.version, dict) else self.version)
        dataset = as_dict(self.dataset_version, "dataset_version") if self.dataset_version else None
        drift = as_dict(self.drift, "drift") if self.drift else None
        training_set = as_dict(self.training_set, "training_set") if self.training_set else None
        links, serving = self._links(verdict, version, drift, context)
        warnings = degenerate_holdout(verdict, drift)
        subject, body = approval_markdown(
            model_name=self.model_name, version=version, alias=self.alias, verdict=verdict, dataset_version=dataset,
            drift=drift, links=links, training_set=training_set, serving_drift=serving, warnings=warnings,
        )
        return version, verdict, subject, body, warnings

    def _links(self, verdict: dict[str, Any], version: str, drift: dict[str, Any] | None,
               context: Context | None) -> tuple[dict[str, str], dict[str, Any] | None]:
        """Browser links (MLflow UI pages, never raw artifact URIs) and the champion's last serving-drift verdict.

        Links are a convenience: an MLflow hiccup here is logged and never fails the gate.
        """
        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        links: dict[str, str] = {}
        serving = None
        champ = verdict.get("champion_version")
        evidence = {"evaluation evidence": (verdict.get("evidence_uri"), verdict.get("run_url")),
                    "drift report": ((drift or {}).get("evidence_uri"), (drift or {}).get("run_url"))}
        try:
            links["model version"] = hook.model_version_url(self.model_name, version)
            if verdict.get("run_url"):
                links["challenger run"] = verdict["run_url"]
            if champ:
                links[f"champion v{champ}"] = hook.model_version_url(self.model_name, champ)
            for name, (uri, run_url) in evidence.items():  # no network: URIs the verdicts already resolve
                if url := hook.artifact_url(uri, run_url=run_url):
                    links[name] = url
            # One fast health check, then the lookups that need the server.
            hook.ensure_reachable(attempts=1, timeout_s=3)
            for name, (uri, _) in evidence.items():
                if name not in links and (url := hook.artifact_url(uri, lookup=True)):
                    links[name] = url
            if champ and "'" not in self.model_name:
                here = context["dag"].dag_id if context and context.get("dag") else None
                clause = f" and tags.`mlops.dag_id` != '{here}'" if here else ""
                run = hook.latest_run(
                    mlops_conf("monitoring_experiment", "mlops-monitoring") or "mlops-monitoring",
                    f"tags.`mlops.kind` = 'data_drift' and tags.`mlops.model_name` = '{self.model_name}'{clause}",
                )
                if run is not None:
                    from datetime import UTC, datetime

                    serving = {
                        "passed": (run.data.tags.get("mlops.passed") or "").lower() == "true",
                        "drift_share": run.data.metrics.get("drift_share"),
                        "at": datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC).isoformat(timespec="minutes"),
                    }
                    links["champion serving drift"] = hook.run_url(run.info.experiment_id, run.info.run_id)
        except Exception as err:  # noqa: BLE001 - links are a convenience, never a reason to fail the gate
            self.log.warning("Approval evidence: MLflow lookups skipped (%s); the verdict is unchanged",
                             str(err).splitlines()[0][:300])
        return links, serving


def skip_if_failed(verdict: dict[str, Any], model_name: str, version: str, log: Any = None,
                   kind: str = "approval") -> None:
    """Skip the task (``AirflowSkipException``: the run shows a skipped gate, not a green no-op) when the evaluation
    refused the challenger, after a ``SUMMARY <kind> ... decision=skipped outcome=refused reason=...`` line.

    :param verdict: the evaluation verdict (``passed``, ``reasons``, ``outcome``).
    :param log: the task's logger (None: no summary line).
    :param kind: the summary's kind (``approval``, ``promote``).
    """
    if not verdict.get("passed"):
        from airflow.sdk.exceptions import AirflowSkipException

        reason = "; ".join(verdict.get("reasons") or [])
        if log is not None:
            log_summary(log, kind, model=model_name, version=version, decision="skipped",
                        outcome=verdict.get("outcome") or "refused", reason=repr(reason),
                        evidence=verdict.get("evidence_uri"))
        raise AirflowSkipException(
            f"{model_name} v{version} did not pass evaluation ({reason}): no approval is requested and nothing is "
            "promoted"
        )


class ModelApprovalOperator(_GateInputs, ApprovalOperator):
    """Airflow's ``ApprovalOperator`` with the evaluation evidence as its subject and Markdown body.

    Skips (and so skips the promotion) when the verdict did not pass: nobody is asked to approve a
    model that failed its gate. The request lands on the *Required Actions* page, assigned to ``[mlops]
    approvers`` when set, with a *reason* field: a rejection needs one (it is recorded in the promotion ledger);
    with no answer within ``response_timeout`` the request is rejected (``defaults``), nothing is promoted.
    Its XCom (``responded_by_user``, ``responded_at``, ``params_input.reason``) is what
    :class:`PromoteModelOperator` records.

    :param verdict: the evaluation verdict (templated / XCom).
    :param version: the version to promote, or the register task's XCom (templated).
    :param dataset_version: the DVC version the model was trained on (templated / XCom), optional.
    :param drift: the drift verdict (templated / XCom), optional.
    :param training_set: the training-set XCom (window, rows, hash shown to the approver), optional.
    :param approvers: Airflow user ids assigned to answer; default ``[mlops] approvers`` (empty: anyone).
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, *GATE_FIELDS)

    def __init__(self, *, approvers: Sequence[str] | None = None, subject: str | None = None, **kwargs: Any) -> None:
        from airflow.sdk import Param

        inputs = _gate_inputs(kwargs)

        users = list(approvers) if approvers is not None else configured_approvers()
        kwargs.setdefault("defaults", [REJECT])  # no answer in time = rejected, nothing promoted
        if users:
            kwargs.setdefault("assigned_users", [{"id": u, "name": u} for u in users])
        given = kwargs.pop("params", None) or {}
        # Airflow merges the DAG's params into every task's (here, and again later with their source reset): the
        # form asks only for the task's own (source "task"), i.e. the reason and any the caller passed.
        source = getattr(given, "get_param", None)
        own = {k for k in given if source is None or getattr(source(k), "source", None) != "dag"}
        params = {k: (source(k) if source else v) for k, v in given.items()}
        params.setdefault("reason", Param(None, type=["null", "string"], title="Reason",
                                          description="Why you approve or reject. Required to reject: recorded in "
                                                      "the promotion ledger and on the models page."))
        super().__init__(subject=subject or f"Promote {inputs['model_name']} to {inputs['alias']}", params=params,
                         **kwargs)
        self._form_params = frozenset(own | {"reason"})
        for name, value in inputs.items():
            setattr(self, name, value)

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        """The Required Action form's fields: the reason (and the caller's params), never the DAG's params, which
        the task's params also hold at run time (they would show as required, editable fields)."""
        return {k: v for k, v in super().serialized_params.items() if k in self._form_params}

    def execute(self, context: Context) -> Any:
        version, verdict, self.subject, self.body, warnings = self.evidence(context)
        skip_if_failed(verdict, self.model_name, version, self.log)
        for warning in warnings:
            self.log.warning("Degenerate evaluation evidence (shown to the approver): %s", warning)
        log_summary(
            self.log, "approval-requested", model=self.model_name, version=version, alias=self.alias,
            approvers=[u["id"] for u in self.assigned_users or []] or "anyone", warnings=len(warnings),
            evidence=verdict.get("evidence_uri"),
        )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """The person's answer (or the timeout): the ledger for a rejection, one SUMMARY line, Airflow's handling."""
        version = str(self.version.get("version") if isinstance(self.version, dict) else self.version)
        if "error" in event:
            log_summary(
                self.log, "approval", model=self.model_name, version=version, alias=self.alias,
                decision=f"none ({event.get('error_type') or event.get('error')}): nothing is promoted; "
                "rerun the DAG to ask again",
            )
            return super().execute_complete(context=context, event=event)
        chosen = (event.get("chosen_options") or ["?"])[0]
        user = event.get("responded_by_user")
        by = (user.get("name") or user.get("id")) if isinstance(user, dict) else (user or "timeout")
        reason = ((event.get("params_input") or {}).get("reason") or "").strip()
        if chosen == REJECT:
            if not reason and user:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"{by} rejected {self.model_name} v{version} without a reason; nothing is promoted. A rejection "
                    "needs a reason (it goes into the promotion ledger): clear this task and answer again with one"
                )
            reason = reason or f"no answer within {self.response_timeout} (rejected by default)"
            record_rejection(self, context, version=version, by=str(by), reason=reason,
                             at=event.get("responded_at"))
        log_summary(self.log, "approval", model=self.model_name, version=version, alias=self.alias, decision=chosen,
                    by=by, at=event.get("responded_at"), reason=repr(reason))
        # A rejection skips the downstream tasks by raising (Airflow 3), so no return value would be pushed: push the
        # answer first (the run summary reads who decided and why; an approval pushes the same value again).
        at = event.get("responded_at")
        context["ti"].xcom_push(key="return_value", value={
            "chosen_options": event.get("chosen_options") or [chosen], "params_input": {"reason": reason or None},
            "responded_by_user": user, "responded_at": at.isoformat() if hasattr(at, "isoformat") else at})
        return super().execute_complete(context=context, event=event)


class AutoApproveOperator(_GateInputs, BaseOperator):
    """The local demo's approval policy (``[mlops] approval_policy = auto``): approves a passing verdict.

    Logs the same evidence a person would see, and says loudly that no person approved. Never approves
    degenerate evidence (:func:`~mlops_airflow.registry.evidence.degenerate_holdout`): it skips, and so the
    promotion, with the warnings in the log (a person must look). Returns the same shape as
    ``ApprovalOperator`` (``chosen_options``, ``responded_by_user``, ``responded_at``).
    """

    template_fields: Sequence[str] = GATE_FIELDS
    ui_color = "#f0ad4e"

    def __init__(self, **kwargs: Any) -> None:
        inputs = _gate_inputs(kwargs)
        super().__init__(**kwargs)
        for name, value in inputs.items():
            setattr(self, name, value)

    def execute(self, context: Context) -> dict[str, Any]:
        version, verdict, subject, body, warnings = self.evidence(context)
        skip_if_failed(verdict, self.model_name, version, self.log)
        for line in body.splitlines():
            self.log.info("[evidence] %s", line)
        if warnings:
            from airflow.sdk.exceptions import AirflowSkipException

            log_summary(self.log, "approval", model=self.model_name, version=version, alias=self.alias,
                        decision="refused", by="policy:auto", warnings=warnings)
            raise AirflowSkipException(
                f"NOT auto-approved: the evaluation evidence for {self.model_name} v{version} cannot decide a "
                f"promotion ({'; '.join(warnings)}). Nothing is promoted; a person must review it "
                "([mlops] approval_policy=hitl) or the evaluation must be rerun on a better holdout"
            )
        who = "AUTO-APPROVED by policy [mlops] approval_policy=auto (no person reviewed this; local demo only)"
        self.log.warning("%s: %s", who, subject)
        log_summary(self.log, "approval", model=self.model_name, version=version, alias=self.alias,
                    decision="Approve", by="policy:auto")
        return {
            "chosen_options": [APPROVE],
            "params_input": {},
            "responded_at": now_iso(),
            "responded_by_user": {"id": "policy:auto", "name": who},
            "policy": "auto",
        }


def record_rejection(operator: _GateInputs, context: Context, *, version: str, by: str, reason: str,
                     at: Any = None) -> dict[str, Any] | None:
    """A person's (or the timeout's) rejection as a ledger entry, beside the moves: ``action: "rejected"``.

    Idempotent: a retry of the same task instance finds its entry and writes none. Under the promotion lock, like
    every ledger write. Rejections never count as alias holders (the ledger's readers skip them).
    """
    import uuid

    from mlops_airflow.operators._common import run_identity
    from mlops_airflow.registry.aliases import recover_pending
    from mlops_airflow.registry.ledger import append_entry, ledger_from_tags, ledger_head
    from mlops_airflow.registry.lock import PromotionLock, lock_owner
    from mlops_airflow.registry.versions import registered_model

    ident = run_identity(context)
    hook = MlflowHook(mlflow_conn_id=operator.mlflow_conn_id)
    hook.ensure_reachable()  # a clear error now, not minutes of client retries; the retry records it
    with PromotionLock(hook, operator.model_name, lock_owner(ident), log=operator.log):
        # A move a killed holder left half-done is finished (or dropped) first: the ledger keeps the real order.
        recover_pending(hook, operator.model_name, registered_model(hook, operator.model_name), ident,
                        operator.log)
        tags = dict(registered_model(hook, operator.model_name).tags or {})
        ledger = ledger_from_tags(tags)
        for entry in ledger:
            airflow = entry.get("airflow") or {}
            if entry.get("action") == "rejected" and all(airflow.get(k) == ident[k]
                                                         for k in ("dag_id", "run_id", "task_id")):
                operator.log.info("Rejection already in the ledger (seq %s): nothing written", entry.get("seq"))
                return entry
        entry = append_entry(hook, operator.model_name, ledger_head(tags, ledger), {
            "id": uuid.uuid4().hex[:12], "model": operator.model_name, "alias": operator.alias,
            "version": str(version), "previous_version": None, "action": "rejected",
            "at": at.isoformat() if hasattr(at, "isoformat") else (str(at) if at else now_iso()),
            "approved_by": None, "rejected_by": by, "note": reason, "approval_policy": "hitl",
            "evidence_uri": as_dict(operator.verdict, "verdict").get("evidence_uri"),
            "airflow": {k: ident[k] for k in ("dag_id", "run_id", "task_id", "try_number")},
        })
    operator.log.info("Rejection recorded in the ledger of %s (seq %s)", operator.model_name, entry["seq"])
    return entry


def approval_gate(
    *,
    task_id: str = "approve_promotion",
    model_name: str,
    version: Any,
    verdict: Any,
    alias: str = "champion",
    dataset_version: Any = None,
    drift: Any = None,
    training_set: Any = None,
    policy: str | None = None,
    response_timeout: timedelta | None = None,
    **kwargs: Any,
) -> BaseOperator:
    """The approval task in front of a promotion, for the configured ``[mlops] approval_policy``.

    ``hitl`` (default): a :class:`ModelApprovalOperator` (Airflow HITL; waits on the Required Actions
    page; with no answer within ``response_timeout`` (default ``[mlops] approval_timeout_hours``) the request is
    rejected and nothing is promoted). ``auto``: an
    :class:`AutoApproveOperator` (local demo: ``airflow dags test`` never answers a HITL request).
    Read from configuration at parse time (no connection, no Variable).
    """
    policy = (policy or approval_policy()).lower()
    common = {
        "task_id": task_id,
        "model_name": model_name,
        "version": version,
        "verdict": verdict,
        "alias": alias,
        "dataset_version": dataset_version,
        "drift": drift,
        "training_set": training_set,
        **kwargs,
    }
    if policy == "auto":
        return AutoApproveOperator(**common)
    if policy == "hitl":
        return ModelApprovalOperator(response_timeout=response_timeout or approval_timeout(), **common)
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
        "reason": (data.get("params_input") or {}).get("reason"),
    }


__all__ = [
    "APPROVE", "REJECT", "AutoApproveOperator", "ModelApprovalOperator", "approval_gate", "approval_markdown",
    "approval_of", "approval_policy", "configured_approvers", "degenerate_holdout", "record_rejection",
    "skip_if_failed",
]
