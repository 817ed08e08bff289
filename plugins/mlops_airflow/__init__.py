"""airflow-provider-mlops: continuous training for Apache Airflow 3.

Operators, hooks and links that join DVC, Great Expectations, Feast, GPU training,
MLflow and Evidently into one continuous-training loop.

Importing this package is cheap: submodules are imported lazily (``__getattr__``) and no
heavy library (mlflow, feast, dvc, evidently, great_expectations, pandas, torch,
kubernetes) is imported at module level anywhere in the package's operator or hook modules.
"""

from __future__ import annotations

import importlib
from typing import Any


def _version() -> str:
    """The distribution's version: ``pyproject.toml`` is the one place it is written."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airflow-provider-mlops")
    except PackageNotFoundError:  # the package folder used without installing it (plugins path only)
        return "0+unknown"


__version__ = _version()

# Public name -> module that defines it. Resolved on first access only.
_LAZY: dict[str, str] = {
    "DvcHook": "mlops_airflow.hooks.dvc_repo",
    "FeastHook": "mlops_airflow.hooks.feast_store",
    "MlflowHook": "mlops_airflow.hooks.mlflow_registry",
    "DvcVersionDatasetOperator": "mlops_airflow.operators.dvc_version",
    "DataValidationGateOperator": "mlops_airflow.operators.data_validation",
    "FeastMaterializeOperator": "mlops_airflow.operators.feast_materialize",
    "FeastTrainingSetOperator": "mlops_airflow.operators.feast_training_set",
    "LocalTrainingOperator": "mlops_airflow.operators.training",
    "train_model_task": "mlops_airflow.operators.training",
    "RegisterModelOperator": "mlops_airflow.operators.registry",
    "DataDriftOperator": "mlops_airflow.operators.drift",
    "QualityCheckOperator": "mlops_airflow.operators.quality",
    "RetrainGuardOperator": "mlops_airflow.operators.retrain_guard",
    "BatchScoringOperator": "mlops_airflow.operators.scoring",
    "ShadowCanaryAnalysisOperator": "mlops_airflow.operators.scoring",
    "EvaluateChallengerOperator": "mlops_airflow.operators.evaluation",
    "PromoteModelOperator": "mlops_airflow.operators.promotion",
    "RollbackModelOperator": "mlops_airflow.operators.promotion",
    "ValidateRollbackOperator": "mlops_airflow.operators.promotion",
    "ModelApprovalOperator": "mlops_airflow.operators.approval",
    "AutoApproveOperator": "mlops_airflow.operators.approval",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlops_airflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
