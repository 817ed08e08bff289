"""Registry versions on a real MLflow server: the registered model with a clear error, and whether a version can
move (exists, READY, its ``MLmodel`` present, under a run or as a logged model)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry.versions import (
    check_version_usable,
    model_artifact_present,
    now_iso,
    registered_model,
    run_ids,
)

pytestmark = pytest.mark.unit


def test_now_iso_is_utc_to_the_second():
    text = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text)
    assert abs((datetime.fromisoformat(text) - datetime.now(UTC)).total_seconds()) < 5


def test_registered_model_found_or_a_clear_error(registry_client, new_version, model_name):
    from mlflow.exceptions import MlflowException

    name = model_name
    new_version(name)
    assert registered_model(registry_client, name).name == name
    with pytest.raises(
        RegistryError,
        match=r"registered model 'no_such_model_x' does not exist; check model_name, "
        r"or register a version first \(RegisterModelOperator\)",
    ):
        registered_model(registry_client, "no_such_model_x")
    with pytest.raises(MlflowException) as err:  # anything but "does not exist" is not ours to explain
        registered_model(registry_client, "")
    assert not isinstance(err.value, RegistryError)


def test_run_ids_of_a_version(registry, registry_client, new_version, model_name):
    name = model_name
    mv = registry_client.get_model_version(name, new_version(name))
    assert run_ids(registry_client, mv) == (registry.experiment_id, mv.run_id)


def test_a_usable_version_under_a_run_and_as_a_logged_model(registry, registry_client, new_version, model_name):
    hook = registry.hook
    name = model_name
    in_run, logged = new_version(name, "run"), new_version(name, "logged")
    for version in (in_run, logged):
        mv = check_version_usable(hook, name, version)
        assert mv.version == version and mv.status == "READY"
        assert model_artifact_present(registry_client, mv)
    assert registry_client.get_model_version(name, logged).source.startswith("models:/m-")


def test_unusable_versions_are_refused_with_the_reason(registry, registry_client, new_version, model_name):
    hook = registry.hook
    name = model_name
    new_version(name)
    no_model_run, no_model_logged = new_version(name, "run-without-model"), new_version(name, "logged-without-model")
    for version in (no_model_run, no_model_logged):
        mv = registry_client.get_model_version(name, version)
        assert not model_artifact_present(registry_client, mv)
        with pytest.raises(
            RegistryError,
            match=rf"{name} v{version}: the model artifact behind {re.escape(mv.source)}"
            r" is missing \(no MLmodel file\); it cannot be served",
        ):
            check_version_usable(hook, name, version)
    with pytest.raises(RegistryError, match=rf"{name} has no version '42'; check the version passed to this task"):
        check_version_usable(hook, name, "42")
    with pytest.raises(RegistryError, match=r"registered model 'absent_model_y' does not exist"):
        check_version_usable(hook, "absent_model_y", "1")


def test_model_artifact_present_for_other_sources_and_unreadable_ones(registry_client, new_version, model_name):
    from types import SimpleNamespace

    assert model_artifact_present(registry_client, SimpleNamespace(source="s3://bucket/models/churn/3", model_id=None))
    assert not model_artifact_present(registry_client, SimpleNamespace(source=f"runs:/{'0' * 32}/model", model_id=None))
    assert not model_artifact_present(registry_client, SimpleNamespace(source="models:/m-doesnotexist", model_id=None))
    name = model_name
    mv = registry_client.get_model_version(name, new_version(name, "logged"))
    # The logged model id is read from the source when the version object does not carry it.
    assert model_artifact_present(registry_client, SimpleNamespace(source=mv.source, model_id=None))


def test_an_mlflow_client_still_works_for_one_release(registry, new_version, model_name):
    """Callers that still hand the registry functions an ``MlflowClient`` get the same answers (for one release)."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.registry.ledger import read_ledger
    from mlops_airflow.registry.versions import as_hook

    version = new_version(model_name)
    client = registry.client
    assert as_hook(registry.hook) is registry.hook
    wrapped = as_hook(client)
    assert isinstance(wrapped, MlflowHook) and wrapped.client is client
    assert check_version_usable(registry.hook, client, model_name, version).version == version  # former signature
    assert model_artifact_present(client, client.get_model_version(model_name, version))
    assert registered_model(client, model_name).name == model_name and read_ledger(client, model_name) == []
