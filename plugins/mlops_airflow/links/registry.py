"""Operator extra links of the promotion tasks: the ledger entry a move wrote, and the version it moved.

The promotion ledger lives in the registered model's tags (``mlops.ledger.<seq:06d>``,
:mod:`mlops_airflow.registry.ledger`), so its browser page is the registered model in the MLflow UI, where the
entry is the tag named by the task's ``ledger_seq``. Like :mod:`mlops_airflow.links.mlflow`, the whole URL is
stored in XCom while the task runs (:func:`persist_promotion_links`, from the promote task's result:
``model_name``, ``version``, ``ledger_seq``); the API server reads it back without calling MLflow. A skipped
promotion (a refused challenger) stores none, so the button stays empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.links.mlflow import MlflowModelVersionLink, _XComUrlLink

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

__all__ = ["LedgerEntryLink", "ledger_entry_url", "persist_promotion_links"]


class LedgerEntryLink(_XComUrlLink):
    """The registered model whose tags hold the promotion ledger entry of this task (``mlops.ledger.<seq>``)."""

    name = "Promotion ledger entry"


def ledger_entry_url(hook: MlflowHook, result: dict[str, Any]) -> str | None:
    """The MLflow UI page holding the ledger entry of a promote task's ``result`` (None without an entry).

    :param hook: the MLflow hook (its UI URL).
    :param result: the promote task's XCom: ``model_name`` and ``ledger_seq``.
    """
    from urllib.parse import quote

    if not result.get("model_name") or result.get("ledger_seq") in (None, ""):
        return None
    return hook.model_url(quote(str(result["model_name"]), safe=""))


def persist_promotion_links(context: Any, hook: MlflowHook, result: dict[str, Any]) -> None:
    """Store the links of a promote task: its ledger entry and the model version (from ``result``).

    :param context: the task's context.
    :param hook: the MLflow hook (its UI URL).
    :param result: the promote task's XCom: ``model_name``, ``version``, ``ledger_seq`` (``url`` when known).
    """
    LedgerEntryLink.persist(context, ledger_entry_url(hook, result))
    if result.get("model_name") and result.get("version"):
        MlflowModelVersionLink.persist(
            context, result.get("url") or hook.model_version_url(str(result["model_name"]), str(result["version"])))
