"""The pack's domain errors: one base class, the message as ``str(err)``, structured fields beside it."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from mlops_airflow.exceptions import (
    DatasetVersionError,
    DataValidationError,
    FeatureStoreError,
    MLOpsError,
    MonitoringError,
    RegistryError,
    TrainingError,
)

pytestmark = pytest.mark.unit

SUBCLASSES = (
    DataValidationError,
    DatasetVersionError,
    FeatureStoreError,
    TrainingError,
    RegistryError,
    MonitoringError,
)


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_every_error_is_an_mlops_error_and_an_airflow_exception(cls):
    err = cls("something broke; do this next")
    assert isinstance(err, MLOpsError) and isinstance(err, AirflowException)
    assert str(err) == "something broke; do this next" == err.message
    with pytest.raises(MLOpsError, match="do this next"):
        raise err


def test_fields_never_change_the_message():
    counts = {"failed": 3, "evaluated": 26}
    err = DataValidationError(
        "3 of 26 expectations failed on batch 2026-11-01; fix the export",
        cause="expectations failed",
        counts=counts,
        evidence_uri="file:///r/validation_result.json",
        next_step="re-land the batch",
        dataset="customer_events",
        rev="abc123",
    )
    assert str(err) == "3 of 26 expectations failed on batch 2026-11-01; fix the export"
    assert err.args == ("3 of 26 expectations failed on batch 2026-11-01; fix the export",)
    assert (err.cause, err.evidence_uri, err.next_step) == (
        "expectations failed",
        "file:///r/validation_result.json",
        "re-land the batch",
    )
    assert err.counts == counts and err.counts is not counts  # a copy: the caller's dict can change freely
    counts["failed"] = 99
    assert err.counts["failed"] == 3
    assert err.details == {"dataset": "customer_events", "rev": "abc123"}
    assert err.as_dict() == {
        "error": "DataValidationError",
        "message": "3 of 26 expectations failed on batch 2026-11-01; fix the export",
        "cause": "expectations failed",
        "evidence_uri": "file:///r/validation_result.json",
        "next_step": "re-land the batch",
        "counts": {"failed": 3, "evaluated": 26},
        "details": {"dataset": "customer_events", "rev": "abc123"},
    }
    json.dumps(err.as_dict())


def test_as_dict_lists_only_the_fields_that_are_set():
    assert RegistryError("no such version").as_dict() == {"error": "RegistryError", "message": "no such version"}
    assert MonitoringError().as_dict() == {"error": "MonitoringError", "message": ""}
    err = MonitoringError("empty window", counts={}, cause="", evidence_uri=None)
    assert err.as_dict() == {"error": "MonitoringError", "message": "empty window"}
    assert err.counts == {} and err.details == {}


def test_pod_spec_error_fails_without_retries_and_is_a_training_error():
    from mlops_airflow.k8s.validation import PodSpecError

    err = PodSpecError("bad template", cause="unknown field")
    assert isinstance(err, TrainingError) and isinstance(err, AirflowFailException)
    assert err.as_dict()["error"] == "PodSpecError" and err.as_dict()["cause"] == "unknown field"
