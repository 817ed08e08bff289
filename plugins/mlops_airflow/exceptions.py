"""Domain errors. Each message names the cause, the data or model involved, and the next step.

Like the Great Expectations provider's ``GXValidationFailed``, an error also carries those parts as fields, so a
caller (a callback, an alert, a test) reads them without parsing the message::

    raise DataValidationError(
        "3 of 26 expectations failed ...",
        cause="expectations failed", counts={"failed": 3, "evaluated": 26},
        evidence_uri="file:///.../validation_result.json", next_step="fix the upstream export and re-land the batch",
    )

``str(err)`` is the message (the task log's last line); the fields are optional and never change it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException


class MLOpsError(AirflowException):
    """Base class of every error this pack raises on purpose.

    :param message: the whole sentence an on-call engineer reads: cause, data/model involved, next step.
    :param cause: the cause in a few words (e.g. ``"registry unreachable"``).
    :param counts: the numbers behind it (e.g. ``{"failed": 3, "evaluated": 26}``).
    :param evidence_uri: where the full evidence lives (a validation result, a report, an MLflow run).
    :param next_step: what to do next.
    :param details: any other small JSON-able facts (dataset version, model version, ...).
    """

    def __init__(
        self,
        message: str = "",
        *,
        cause: str | None = None,
        counts: dict[str, int | float] | None = None,
        evidence_uri: str | None = None,
        next_step: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        self.counts = dict(counts or {})
        self.evidence_uri = evidence_uri
        self.next_step = next_step
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        """The error as small JSON: type, message and the structured fields that are set."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key in ("cause", "evidence_uri", "next_step"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.counts:
            out["counts"] = self.counts
        if self.details:
            out["details"] = self.details
        return out


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
