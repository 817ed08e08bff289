"""Governed promotion operators: promote after approval, validated rollback, canary rollback.

Thin: the alias moves, the promotion lock, the ledger and the version tags live in :mod:`mlops_airflow.registry`
(no Airflow operator there); the approval gate in :mod:`mlops_airflow.operators.approval`. These operators
check their inputs, call :func:`~mlops_airflow.registry.aliases.move_alias` /
:func:`~mlops_airflow.registry.aliases.retire_alias`, persist the extra links and emit the
``mlflow://models/<name>`` Asset event with the ledger entry as its extras.

Every name this module used to define is still importable from here for one release (re-exports below).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.assets import model_asset_uri
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink
from mlops_airflow.links.registry import LedgerEntryLink, ledger_entry_url, persist_promotion_links
from mlops_airflow.operators._common import as_dict, run_identity

# Re-exported for one release (noqa: F401): names this module defined before the registry/ and approval
# split; import them from mlops_airflow.operators.approval and mlops_airflow.registry.{aliases,ledger,lock}.
from mlops_airflow.operators.approval import (  # noqa: F401
    APPROVE,
    AutoApproveOperator,
    ModelApprovalOperator,
    approval_gate,
    approval_markdown,
    approval_of,
    approval_policy,
    skip_if_failed,
)
from mlops_airflow.registry.aliases import ALIASES, move_alias, retire_alias
from mlops_airflow.registry.ledger import (  # noqa: F401
    LEDGER_HEAD,
    LEDGER_PREFIX,
    event_extra,
    last_entry,
    previous_holder,
    read_ledger,
)
from mlops_airflow.registry.lock import LOCK_SUFFIX, PromotionLock  # noqa: F401
from mlops_airflow.registry.versions import (  # noqa: F401 - model_artifact_present: re-exported for one release
    check_version_usable,
    model_artifact_present,
    now_iso,
    registered_model,
    registry_outage_guard,
    run_ids,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


def emit_model_event(operator: BaseOperator, context: Any, model_name: str, extra: dict[str, Any]) -> None:
    """Attach ``extra`` to the ``mlflow://models/<name>`` outlet's Asset event."""
    uri = model_asset_uri(model_name)
    for outlet in operator.outlets or []:
        if isinstance(outlet, Asset) and outlet.uri == uri:
            context["outlet_events"][outlet].extra = extra


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
    operator_extra_links = (MlflowModelVersionLink(), EvidenceLink(), LedgerEntryLink())
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

    def target_version(self, verdict: dict[str, Any] | None) -> str:
        value = self.version
        if isinstance(value, str) and value.strip().startswith("{"):
            value = as_dict(value, "version")
        return str(value.get("version") if isinstance(value, dict) else value)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.alias not in ALIASES:
            raise RegistryError(f"alias {self.alias!r} is not one of {ALIASES}; nothing was moved")
        self.hook.ensure_reachable()
        with registry_outage_guard(
            self.hook, f"{self.action} of {self.model_name}@{self.alias}",
            "a move left half-done is completed or dropped from the ledger's pending intent, never made twice",
        ):
            return self._move(context)

    def _move(self, context: Context) -> dict[str, Any]:
        verdict = as_dict(self.verdict, "verdict") if self.verdict else None
        version = self.target_version(verdict)
        if verdict is not None:
            skip_if_failed(verdict, self.model_name, version, self.log, self.action)
        approval = approval_of(self.approval)
        mv = check_version_usable(self.hook, self.model_name, version)
        entry, changed = move_alias(
            self.hook, model_name=self.model_name, alias=self.alias, version=version, approval=approval,
            context=context, evidence_uri=(verdict or {}).get("evidence_uri"), verdict=verdict, action=self.action,
            clear_aliases=self.clear_aliases, lock_timeout_s=self.lock_timeout_s, log=self.log,
        )
        emit_model_event(self, context, self.model_name, event_extra(entry, changed))
        url = self.hook.model_version_url(self.model_name, version)
        EvidenceLink.persist(context, self.hook.run_url(*run_ids(self.hook, mv)) if mv.run_id else None)
        result = {"model_name": self.model_name, "alias": self.alias, "version": version, "changed": changed,
                  "previous_version": entry.get("previous_version"), "ledger_seq": entry.get("seq"),
                  "approved_by": entry.get("approved_by"), "evidence_uri": entry.get("evidence_uri"), "url": url}
        persist_promotion_links(context, self.hook, result)
        log_summary(self.log, self.action, model=self.model_name, alias=self.alias, version=version,
                    previous=entry.get("previous_version"), changed=changed, ledger_seq=entry.get("seq"),
                    approved_by=repr(entry.get("approved_by")), evidence=entry.get("evidence_uri"), url=url)
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

    def target_version(self, verdict: dict[str, Any] | None) -> str:
        if not verdict or not verdict.get("version"):
            raise RegistryError(f"no validated rollback target for {self.model_name}: the validation verdict names "
                                "no version")
        return str(verdict["version"])


class RollbackCanaryOperator(BaseOperator):
    """Roll back a canary: remove the ``canary`` alias (its traffic share goes back to the champion).

    Taken on a :class:`~mlops_airflow.operators.scoring.ShadowCanaryAnalysisOperator` verdict whose
    ``recommendation`` is ``rollback``. Reducing exposure needs no approval; the move is made under the promotion
    lock, recorded in the ledger (action ``rollback``, alias ``canary``, ``previous_version`` = the canary) and
    announced on the ``mlflow://models/<name>`` asset. A retry, or a canary already gone, changes nothing.

    :param verdict: the shadow/canary verdict (templated / XCom).
    """

    template_fields: Sequence[str] = ("model_name", "verdict")
    operator_extra_links = (EvidenceLink(), LedgerEntryLink())
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
        reason = "; ".join(verdict.get("reasons") or []) or "canary significantly worse than the champion"
        entry, changed = retire_alias(hook, model_name=self.model_name, alias=self.alias, context=context,
                                      evidence_uri=verdict.get("evidence_uri"), reason=reason,
                                      lock_timeout_s=self.lock_timeout_s, log=self.log)
        if entry is not None:
            emit_model_event(self, context, self.model_name, event_extra(entry, changed))
        EvidenceLink.persist(context, verdict.get("evidence_uri"))
        result = {"model_name": self.model_name, "alias": self.alias, "changed": changed,
                  "rolled_back_version": entry.get("previous_version") if entry else None,
                  "ledger_seq": entry.get("seq") if entry else None, "reason": reason,
                  "evidence_uri": verdict.get("evidence_uri")}
        LedgerEntryLink.persist(context, ledger_entry_url(hook, result))
        log_summary(self.log, "canary-rollback", model=self.model_name, alias=self.alias,
                    version=result["rolled_back_version"], changed=changed, ledger_seq=result["ledger_seq"],
                    reason=repr(reason), evidence=verdict.get("evidence_uri"))
        return result


class ValidateRollbackOperator(BaseOperator):
    """Re-validate the previous champion on current data before a rollback (the rollback's verdict).

    The target is ``target_version`` or, by default, the version that held ``alias`` before the current
    holder (from the ledger). It is scored through score.py on ``holdout_path`` (current, labelled
    data) and must pass the absolute thresholds ``min_metrics``/``max_metrics`` (none configured = never
    passes), on the metrics of its task type (``auc``, ``accuracy``, ``logloss``; ``rmse``, ``mae``, ``r2``).
    The evidence JSON is logged on the target's run.

    :param holdout_path: labelled Parquet of current data (templated).
    :param min_metrics: absolute minimums, e.g. ``{"auc": 0.7}`` or ``{"r2": 0.3}`` (templated).
    :param max_metrics: absolute maximums (lower is better), e.g. ``{"rmse": 70}`` (templated).
    :param label_column: the holdout's label (templated); None = the target version's ``mlops.label`` tag (else
        its MLmodel metadata); neither is an error.
    :param task_type: ``binary_classification`` or ``regression`` (templated); None = the target version's
        ``mlops.task_type`` tag (else its MLmodel metadata, else binary classification).
    """

    template_fields: Sequence[str] = ("model_name", "target_version", "holdout_path", "min_metrics", "max_metrics",
                                      "output_dir", "label_column", "model_task_type")
    operator_extra_links = (MlflowModelVersionLink(), EvidenceLink())
    ui_color = "#d9534f"

    def __init__(self, *, model_name: str, holdout_path: str, min_metrics: dict[str, float] | None,
                 max_metrics: dict[str, float] | None = None, target_version: str | None = None,
                 alias: str = "champion", label_column: str | None = None, task_type: str | None = None,
                 output_dir: str | None = None, python: str | None = None,
                 mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if task_type and "{{" not in str(task_type):
            from mlops_airflow.task_types import validate_task_type

            task_type = validate_task_type(task_type)
        self.model_name, self.holdout_path, self.min_metrics = model_name, holdout_path, min_metrics
        self.max_metrics, self.model_task_type = max_metrics, task_type
        self.target_version, self.alias, self.label_column = target_version, alias, label_column
        self.output_dir, self.python, self.mlflow_conn_id = output_dir, python, mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.operators._scoring import score_parquet
        from mlops_airflow.operators.evaluation import (
            check_absolute,
            model_cache_key,
            read_scored,
            resolve_task,
            scores_dir,
            task_metrics,
        )

        hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
        hook.ensure_reachable()
        rm = registered_model(hook, self.model_name)
        current = rm.aliases.get(self.alias)
        target = str(self.target_version) if self.target_version else previous_holder(hook, self.model_name,
                                                                                       self.alias)
        if not target:
            raise RegistryError(f"{self.model_name}@{self.alias} has no previous holder in the ledger: nothing to "
                                "roll back to; pass target_version explicitly")
        if str(target) == str(current):
            raise RegistryError(f"{self.model_name}@{self.alias} is already v{target}; nothing to roll back")
        mv = check_version_usable(hook, self.model_name, target)
        task_type, label, task_source = resolve_task(hook, self.model_name, target,
                                                     task_type=self.model_task_type, label_column=self.label_column)
        scored = score_parquet(hook=hook, model_uri=f"models:/{self.model_name}/{target}",
                               input_path=self.holdout_path, output_dir=scores_dir(self.output_dir),
                               cache_key=model_cache_key(mv), log=self.log, python=self.python,
                               **({} if task_source["task_type"].startswith("default") else {"task_type": task_type}))
        y, scores = read_scored(scored["output"], label, task_type)
        metrics = task_metrics(task_type, y, scores)
        passed, reasons = check_absolute(metrics, self.min_metrics, self.max_metrics)
        evidence = {"kind": "rollback-validation", "model": self.model_name, "version": target,
                    "current_version": str(current) if current is not None else None, "metrics": metrics,
                    "min_metrics": self.min_metrics, "max_metrics": self.max_metrics, "passed": passed,
                    "reasons": reasons, "task_type": task_type, "label_column": label, "task_source": task_source,
                    "holdout": {"path": self.holdout_path, "sha256": scored.get("input_sha256"), "rows": len(y)},
                    "at": now_iso(), "airflow": run_identity(context)}
        evidence_uri = hook.write_json_artifact(mv.run_id, evidence, f"evaluation/rollback-from-v{current}.json")
        verdict = {"passed": passed, "reasons": reasons, "metrics": {"challenger": metrics, "champion": None},
                   "evidence_uri": evidence_uri, "version": target, "champion_version": str(current),
                   "model_name": self.model_name, "task_type": task_type}
        MlflowModelVersionLink.persist(context, hook.model_version_url(self.model_name, target))
        EvidenceLink.persist(context, hook.run_url(*run_ids(hook, mv)))
        log_summary(self.log, "rollback-validation", model=self.model_name, task_type=task_type, target=f"v{target}",
                    current=f"v{current}", passed=passed, metrics=metrics, reasons=reasons, evidence=evidence_uri)
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
