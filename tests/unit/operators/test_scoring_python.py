"""The scoring interpreter comes from the model version's training run: the environment it was trained in.

``scoring_python`` against a real MLflow server (runs, registered versions, logged models with the tags the
training operator writes) and real environment folders (a venv stamped with a requirements hash, built by
``ensure_env`` when only the requirements file is left).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._scoring import model_run_id, scoring_python
from mlops_airflow.training.env import STAMP, requirements_sha256

pytestmark = [pytest.mark.unit, pytest.mark.timeout(600)]
LOG = logging.getLogger("test-scoring-python")


def fake_venv(root: Path, sha: str) -> str:
    """A folder shaped like a venv (bin/python -> this interpreter), stamped with ``sha``."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(sys.executable)
    (root / STAMP).write_text(sha)
    return str(root / "bin" / "python")


@pytest.fixture
def setup(tmp_path, monkeypatch, mlflow_server):
    from mlflow import MlflowClient

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    envs, project = tmp_path / "envs", tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_ENVS_DIR", str(envs))
    monkeypatch.setenv("AIRFLOW__MLOPS__PROJECT_ROOT", str(project))
    configured = fake_venv(tmp_path / "venv-train", "c" * 64)
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_PYTHON", configured)
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment(f"test-scoring-python-{tmp_path.name}")

    def model(name: str, tags: dict[str, str]) -> str:
        """A registered version (v1) whose training run carries ``tags``; returns its models:/ URI."""
        run = client.create_run(experiment, tags=tags)
        client.set_terminated(run.info.run_id)
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
        return f"models:/{name}/1"

    return {"client": client, "envs": envs, "project": project, "configured": configured, "model": model,
            "experiment": experiment, "tmp": tmp_path}


def _hook():
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    return MlflowHook()


def test_model_uris_resolve_to_their_training_run(setup):
    client = setup["client"]
    uri = setup["model"](f"m-forms-{setup['tmp'].name}", {})
    run_id = client.get_model_version(uri.split("/")[1], "1").run_id
    name = uri.split("/")[1]
    client.set_registered_model_alias(name, "champion", "1")
    logged = client.create_logged_model(setup["experiment"], source_run_id=run_id)
    hook = _hook()
    assert model_run_id(hook, uri) == run_id
    assert model_run_id(hook, f"models:/{name}@champion") == run_id
    assert model_run_id(hook, f"models:/{logged.model_id}") == run_id
    assert model_run_id(hook, f"runs:/{run_id}/model") == run_id
    assert model_run_id(hook, "/local/path/model") is None
    assert model_run_id(client, uri) == run_id  # an MlflowClient still works, for one release


def test_the_model_is_scored_in_the_environment_it_was_trained_in(setup, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    hook, project, envs = _hook(), setup["project"], setup["envs"]
    req = project / "models" / "requirements.txt"
    req.parent.mkdir()
    req.write_text("# nothing to install: the venv only has pip\n")
    sha = requirements_sha256(req)
    tagged = {"mlops.requirements": "models/requirements.txt", "mlops.requirements_sha256": sha}
    uri = setup["model"](f"m-env-{setup['tmp'].name}", tagged)

    # 1. explicit python= wins, nothing is looked up.
    assert scoring_python(hook, "models:/does-not-exist/1", LOG, explicit="/opt/py") == "/opt/py"
    # 2. no environment yet, the file has the recorded hash: its venv is built (under training_envs_dir), reused.
    built = scoring_python(hook, uri, LOG)
    assert built == str(envs / sha[:16] / "bin" / "python") and Path(built).exists()
    assert (envs / sha[:16] / STAMP).read_text() == sha and "Building the training environment" in caplog.text
    assert scoring_python(hook, uri, LOG) == built and "in its training environment" in caplog.messages[-1]
    # 3. the environment stays found by its hash even when the file changed afterwards.
    req.write_text("six\n")
    assert scoring_python(hook, uri, LOG) == built


def test_configured_interpreter_with_the_same_stamp_or_as_the_fallback(setup, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    hook, configured = _hook(), setup["configured"]
    # The bundled model's case: trained with [mlops] training_python, whose venv is stamped with the hash.
    same = setup["model"](f"m-same-{setup['tmp'].name}", {"mlops.requirements_sha256": "c" * 64})
    assert scoring_python(hook, same, LOG) == configured and "its training environment" in caplog.messages[-1]
    # No requirements recorded (a model trained before the tags existed): the configured interpreter, said so.
    untagged = setup["model"](f"m-none-{setup['tmp'].name}", {})
    assert scoring_python(hook, untagged, LOG) == configured
    assert "names no requirements" in caplog.messages[-1]
    # Its requirements file changed since (and no venv has the old hash): the fallback, with the reason.
    req = setup["project"] / "req.txt"
    req.write_text("six\n")
    changed = setup["model"](f"m-changed-{setup['tmp'].name}",
                             {"mlops.requirements": "req.txt", "mlops.requirements_sha256": "d" * 64})
    assert scoring_python(hook, changed, LOG) == configured
    assert "changed since the model was trained" in caplog.messages[-1] and "req.txt" in caplog.messages[-1]
    missing = setup["model"](f"m-missing-{setup['tmp'].name}",
                             {"mlops.requirements": "gone.txt", "mlops.requirements_sha256": "e" * 64})
    assert scoring_python(hook, missing, LOG) == configured and "not found" in caplog.messages[-1]
    # A model the registry cannot find: the configured interpreter (the scorer reports the missing model).
    assert scoring_python(hook, "models:/no-such-model/7", LOG) == configured
    assert "cannot be read" in caplog.messages[-1]


def test_no_environment_at_all_is_an_error_naming_the_setting(setup, monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_PYTHON")
    monkeypatch.delenv("MLOPS_TRAINING_PYTHON", raising=False)
    untagged = setup["model"](f"m-noenv-{setup['tmp'].name}", {})
    with pytest.raises(RegistryError, match=r"set \[mlops\] training_python .* or pass python="):
        scoring_python(_hook(), untagged, LOG)
