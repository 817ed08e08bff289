"""The pack's Airflow plugin (entry point ``airflow.plugins``).

Registers the operator extra links so the API server can render them for our operators.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink


class MLOpsPlugin(AirflowPlugin):
    name = "mlops"
    operator_extra_links = [MlflowRunLink(), MlflowModelVersionLink(), EvidenceLink()]
