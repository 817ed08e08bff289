"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Kept import-free: Airflow calls this at every start of every component.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mlops",
        "name": "MLOps (continuous training)",
        "description": "DVC, Great Expectations, Feast, GPU training, MLflow registry and "
        "Evidently monitoring joined into one continuous-training loop.",
        "versions": ["0.1.0"],
        "integrations": [
            {"integration-name": "MLflow", "external-doc-url": "https://mlflow.org/docs/latest/", "tags": ["software"]},
            {"integration-name": "DVC", "external-doc-url": "https://dvc.org/doc", "tags": ["software"]},
            {"integration-name": "Feast", "external-doc-url": "https://docs.feast.dev/", "tags": ["software"]},
        ],
        "hooks": [
            {"integration-name": "MLflow", "python-modules": ["mlops_airflow.hooks.mlflow_registry"]},
            {"integration-name": "DVC", "python-modules": ["mlops_airflow.hooks.dvc_repo"]},
            {"integration-name": "Feast", "python-modules": ["mlops_airflow.hooks.feast_store"]},
        ],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "mlops_airflow.hooks.mlflow_registry.MlflowHook",
                "hook-name": "MLflow",
            },
            {
                "connection-type": "dvc",
                "hook-class-name": "mlops_airflow.hooks.dvc_repo.DvcHook",
                "hook-name": "DVC repository",
            },
            {
                "connection-type": "feast",
                "hook-class-name": "mlops_airflow.hooks.feast_store.FeastHook",
                "hook-name": "Feast feature store",
            },
        ],
        "asset-uris": [
            {"schemes": ["dvc"], "handler": "mlops_airflow.assets.sanitize_uri"},
            {"schemes": ["mlflow"], "handler": "mlops_airflow.assets.sanitize_uri"},
            {"schemes": ["mlops"], "handler": "mlops_airflow.assets.sanitize_uri"},
        ],
        "extra-links": [
            "mlops_airflow.links.mlflow.MlflowRunLink",
            "mlops_airflow.links.mlflow.MlflowModelVersionLink",
            "mlops_airflow.links.mlflow.EvidenceLink",
        ],
        "plugins": [{"name": "mlops", "plugin-class": "mlops_airflow.ui.plugin.MLOpsPlugin"}],
    }
