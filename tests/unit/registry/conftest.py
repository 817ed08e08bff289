"""Registered models and versions on the session's real MLflow server, for the registry/ modules' tests.

A version's model is an ``MLmodel`` file logged where MLflow keeps a model: under a run (``runs:/<run>/model``) or
as a logged model (``models:/m-...``). No training: the registry code reads metadata and artifacts, not weights.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"


@pytest.fixture(scope="session")
def registry(mlflow_server) -> SimpleNamespace:
    """``.hook`` (``MlflowHook`` on the server), ``.client`` (its ``MlflowClient``), ``.experiment_id``."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    hook = MlflowHook(tracking_uri=mlflow_server)
    client = hook.get_client()
    client.search_registered_models(max_results=1)  # MLflow loads its request plugins on the first call
    experiment_id = client.create_experiment(f"test-registry-pkg-{uuid.uuid4().hex[:8]}")
    return SimpleNamespace(hook=hook, client=client, experiment_id=experiment_id)


@pytest.fixture
def registry_client(registry):
    """What the pack hands the registry functions: the ``MlflowHook`` (its methods mirror ``MlflowClient``'s, so the
    tests' own reads and writes go through it too). A raw client still works (test_versions.py checks it)."""
    return registry.hook


@pytest.fixture
def model_name(request) -> str:
    """A registered-model name no other test uses."""
    return f"{request.module.__name__.rsplit('.', 1)[-1]}_{uuid.uuid4().hex[:8]}"


def _model_dir(tmp: Path) -> Path:
    folder = tmp / uuid.uuid4().hex
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL)
    return folder


@pytest.fixture
def new_version(registry, tmp_path):
    """``new_version(name, kind="run" | "logged" | "run-without-model" | "logged-without-model")`` -> version."""
    client, experiment_id = registry.client, registry.experiment_id

    def make(name: str, kind: str = "run") -> str:
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run_id = client.create_run(experiment_id).info.run_id
        if kind.startswith("logged"):
            model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
            if kind == "logged":
                client.log_model_artifacts(model.model_id, str(_model_dir(tmp_path)))
            else:
                empty = tmp_path / uuid.uuid4().hex
                empty.mkdir()
                (empty / "README.txt").write_text("no model here\n")
                client.log_model_artifacts(model.model_id, str(empty))
            mv = client.create_model_version(name, f"models:/{model.model_id}", run_id, model_id=model.model_id)
        else:
            if kind == "run":
                client.log_artifacts(run_id, str(_model_dir(tmp_path)), "model")
            mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id)
        return mv.version

    return make
