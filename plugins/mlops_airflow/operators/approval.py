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

from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators._common import as_dict
from mlops_airflow.registry.versions import now_iso

if TYPE_CHECKING:
    from airflow.sdk import Context

APPROVE = "Approve"


def approval_policy() -> str:
    """``[mlops] approval_policy``: ``hitl`` (default, a person approves) or ``auto`` (local demo only)."""
    policy = (mlops_conf("approval_policy", "hitl") or "hitl").strip().lower()
    if policy not in ("hitl", "auto"):
        raise ValueError(f"[mlops] approval_policy={policy!r} is not one of: hitl, auto")
    return policy


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def approval_markdown(
    *,
    model_name: str,
    version: str,
    alias: str,
    verdict: dict[str, Any],
    dataset_version: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    links: dict[str, str],
) -> tuple[str, str]:
    """Subject and Markdown body shown to the approver (and logged by the auto policy)."""
    metrics = verdict.get("metrics") or {}
    champ = verdict.get("champion_version")
    subject = f"Promote {model_name} v{version} to '{alias}'" + (
        f" (replacing v{champ})" if champ else " (first champion)"
    )
    lines = [f"### {subject}", "", f"**Evaluation verdict:** {'PASSED' if verdict.get('passed') else 'FAILED'}"]
    lines += [f"- {r}" for r in verdict.get("reasons") or []]
    names = sorted(set(metrics.get("challenger") or {}) | set(metrics.get("champion") or {}))
    if names:
        lines += [
            "",
            f"| metric | challenger v{version} | champion {('v' + str(champ)) if champ else '-'} |",
            "|---|---|---|",
        ]
        for name in names:
            lines.append(
                f"| {name} | {_fmt((metrics.get('challenger') or {}).get(name, '-'))} | "
                f"{_fmt((metrics.get('champion') or {}).get(name, '-'))} |"
            )
    if metrics.get("delta") is not None:
        ci = metrics.get("ci") or [None, None]
        lines += [
            "",
            f"**{metrics.get('primary_metric', 'metric')} improvement:** {_fmt(metrics['delta'])} "
            f"(95% paired-bootstrap CI [{_fmt(ci[0])}, {_fmt(ci[1])}], n_boot={metrics.get('n_boot')}); "
            f"McNemar p = {_fmt(metrics.get('mcnemar_p'))} on {metrics.get('holdout_rows')} holdout rows",
        ]
    if dataset_version:
        lines += [
            "",
            f"**Data version:** `{dataset_version.get('path')}` rev `{str(dataset_version.get('rev'))[:12]}` "
            f"md5 `{dataset_version.get('md5')}`",
        ]
    if drift:
        status = "no drift" if drift.get("passed") else "DRIFT"
        lines += [
            "",
            f"**Drift status:** {status} (share {_fmt(drift.get('drift_share'), 2)}, columns "
            f"{drift.get('drifted_columns') or []})",
        ]
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
        subject, body = approval_markdown(
            model_name=self.model_name,
            version=version,
            alias=self.alias,
            verdict=verdict,
            dataset_version=dataset,
            drift=drift,
            links=links,
        )
        return version, verdict, subject, body


def skip_if_failed(verdict: dict[str, Any], model_name: str, version: str) -> None:
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

    template_fields: Sequence[str] = (
        *ApprovalOperator.template_fields,
        "model_name",
        "version",
        "alias",
        "verdict",
        "dataset_version",
        "drift",
    )

    def __init__(
        self,
        *,
        model_name: str,
        version: Any,
        verdict: Any,
        alias: str = "champion",
        dataset_version: Any = None,
        drift: Any = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(subject=subject or f"Promote {model_name} to {alias}", **kwargs)
        self.model_name, self.version, self.alias, self.verdict = model_name, version, alias, verdict
        self.dataset_version, self.drift, self.mlflow_conn_id = dataset_version, drift, mlflow_conn_id

    def execute(self, context: Context) -> Any:
        version, verdict, self.subject, self.body = self.evidence()
        skip_if_failed(verdict, self.model_name, version)
        self.log.info(
            "SUMMARY approval-requested model=%s version=%s alias=%s evidence=%s",
            self.model_name,
            version,
            self.alias,
            verdict.get("evidence_uri"),
        )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """The person's answer (or the timeout): one SUMMARY line for on-call, then Airflow's handling."""
        version = self.version.get("version") if isinstance(self.version, dict) else self.version
        if "error" in event:
            self.log.info(
                "SUMMARY approval model=%s version=%s alias=%s decision=none (%s): nothing is promoted; "
                "rerun the DAG to ask again",
                self.model_name,
                version,
                self.alias,
                event.get("error_type") or event.get("error"),
            )
            return super().execute_complete(context=context, event=event)
        chosen = (event.get("chosen_options") or ["?"])[0]
        user = event.get("responded_by_user")
        by = user.get("name") or user.get("id") if isinstance(user, dict) else user
        self.log.info(
            "SUMMARY approval model=%s version=%s alias=%s decision=%s by=%s at=%s",
            self.model_name,
            version,
            self.alias,
            chosen,
            by,
            event.get("responded_at"),
        )
        return super().execute_complete(context=context, event=event)


class AutoApproveOperator(_GateInputs, BaseOperator):
    """The local demo's approval policy (``[mlops] approval_policy = auto``): approves a passing verdict.

    Logs the same evidence a person would see, and says loudly that no person approved. Returns the
    same shape as ``ApprovalOperator`` (``chosen_options``, ``responded_by_user``, ``responded_at``).
    """

    template_fields: Sequence[str] = ("model_name", "version", "alias", "verdict", "dataset_version", "drift")
    ui_color = "#f0ad4e"

    def __init__(
        self,
        *,
        model_name: str,
        version: Any,
        verdict: Any,
        alias: str = "champion",
        dataset_version: Any = None,
        drift: Any = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name, self.version, self.alias, self.verdict = model_name, version, alias, verdict
        self.dataset_version, self.drift, self.mlflow_conn_id = dataset_version, drift, mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        version, verdict, subject, body = self.evidence()
        skip_if_failed(verdict, self.model_name, version)
        for line in body.splitlines():
            self.log.info("[evidence] %s", line)
        who = "AUTO-APPROVED by policy [mlops] approval_policy=auto (no person reviewed this; local demo only)"
        self.log.warning("%s: %s", who, subject)
        self.log.info(
            "SUMMARY approval model=%s version=%s alias=%s decision=Approve by=policy:auto",
            self.model_name,
            version,
            self.alias,
        )
        return {
            "chosen_options": [APPROVE],
            "params_input": {},
            "responded_at": now_iso(),
            "responded_by_user": {"id": "policy:auto", "name": who},
            "policy": "auto",
        }


def approval_gate(
    *,
    task_id: str = "approve_promotion",
    model_name: str,
    version: Any,
    verdict: Any,
    alias: str = "champion",
    dataset_version: Any = None,
    drift: Any = None,
    policy: str | None = None,
    response_timeout: timedelta | None = timedelta(days=3),
    **kwargs: Any,
) -> BaseOperator:
    """The approval task in front of a promotion, for the configured ``[mlops] approval_policy``.

    ``hitl`` (default): a :class:`ModelApprovalOperator` (Airflow HITL; waits on the Required Actions
    page; with no answer within ``response_timeout`` it fails and nothing is promoted). ``auto``: an
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
        **kwargs,
    }
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


__all__ = [
    "APPROVE",
    "AutoApproveOperator",
    "ModelApprovalOperator",
    "approval_gate",
    "approval_markdown",
    "approval_of",
    "approval_policy",
    "skip_if_failed",
]
