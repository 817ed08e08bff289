"""Domain errors. Each message names the cause, the data or model involved, and the next step."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class MLOpsError(AirflowException):
    """Base class of every error this pack raises on purpose."""


class DataValidationError(MLOpsError):
    """A batch failed its Great Expectations suite; the batch was quarantined."""


class DatasetVersionError(MLOpsError):
    """A DVC operation failed: unknown revision, hash mismatch, unreachable remote."""


class FeatureStoreError(MLOpsError):
    """A Feast operation failed: unknown feature service, bad entity rows, empty window."""


class TrainingError(MLOpsError):
    """The training job failed or produced no usable MLflow run."""


class RegistryError(MLOpsError):
    """A model registry operation failed: missing run, missing model artifact, alias conflict."""


class MonitoringError(MLOpsError):
    """A monitoring check could not run: missing reference data, empty window."""
