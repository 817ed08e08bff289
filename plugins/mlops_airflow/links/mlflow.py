"""Operator extra links: from an Airflow task to its MLflow run, model version and evidence.

Airflow 3 stores a link's whole URL in XCom under ``xcom_key``; the operator persists it while it
runs (``persist``), and the API server reads it back without calling MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class _XComUrlLink(BaseOperatorLink):
    name = "link"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        url = BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return url if isinstance(url, str) else ""

    @classmethod
    def persist(cls, context: Any, url: str | None) -> None:
        ti = context.get("ti") if hasattr(context, "get") else None
        if url and ti is not None:  # no task instance (an operator called outside Airflow): no link to keep
            ti.xcom_push(key=cls().xcom_key, value=url)


class MlflowRunLink(_XComUrlLink):
    name = "MLflow run"


class MlflowModelVersionLink(_XComUrlLink):
    name = "MLflow model version"


class EvidenceLink(_XComUrlLink):
    """The report behind a verdict (validation result, drift report)."""

    name = "Evidence report"
