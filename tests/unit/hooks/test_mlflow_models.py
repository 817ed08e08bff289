"""``MlflowModelsMixin``: the hook's registry, alias, tag, run and artifact methods, against a real MLflow server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlops_airflow.hooks.mlflow_registry import MlflowHook

pytestmark = pytest.mark.unit

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hook(mlflow_server: str) -> MlflowHook:
    return MlflowHook(tracking_uri=mlflow_server)


@pytest.fixture
def version(hook: MlflowHook, tmp_path: Path) -> tuple[str, str, str]:
    """``(model, version, run_id)``: a version whose run logged an MLmodel under ``model``."""
    name = _name("models_mixin")
    experiment = hook.experiment_id(_name("models-mixin-exp"), create=True)
    run_id = hook.create_run(experiment, {"mlops.test": "1"}).info.run_id
    (tmp_path / "MLmodel").write_text(MLMODEL)
    hook.log_run_artifact(run_id, str(tmp_path / "MLmodel"), "model")
    hook.create_registered_model(name, tags={"mlops.managed_by": "test"}, description="a test model")
    mv = hook.create_model_version(name, f"runs:/{run_id}/model", run_id, tags={"mlops.task_type": "regression"})
    return name, str(mv.version), run_id


def test_registered_model_tags_aliases_and_versions(hook: MlflowHook, version: tuple[str, str, str]) -> None:
    name, v, run_id = version
    assert hook.get_registered_model(name).description == "a test model"
    assert [m.name for m in hook.search_registered_models(f"name = '{name}'")] == [name]
    hook.set_registered_model_tag(name, "mlops.ledger.head", 3)
    assert hook.get_registered_model(name).tags["mlops.ledger.head"] == "3"
    hook.delete_registered_model_tag(name, "mlops.ledger.head")
    assert "mlops.ledger.head" not in hook.get_registered_model(name).tags

    assert hook.get_version_by_alias(name, "champion") is None  # absent alias: None, not an error
    assert hook.get_version_by_alias(_name("no_such_model"), "champion") is None
    hook.set_registered_model_alias(name, "champion", v)
    assert hook.get_version_by_alias(name, "champion").version == v
    assert hook.get_model_version_by_alias(name, "champion").run_id == run_id
    hook.delete_registered_model_alias(name, "champion")
    assert hook.get_version_by_alias(name, "champion") is None

    hook.set_model_version_tag(name, v, "mlops.evaluation.passed", True)
    assert hook.get_model_version(name, v).tags["mlops.evaluation.passed"] == "True"
    hook.delete_model_version_tag(name, v, "mlops.evaluation.passed")
    assert "mlops.evaluation.passed" not in hook.get_model_version(name, int(v)).tags
    found = hook.search_model_versions(f"name = '{name}' and run_id = '{run_id}'", order_by=["version_number DESC"])
    assert [m.version for m in found] == [v]


def test_rename_and_delete_registered_model(hook: MlflowHook) -> None:
    from mlflow.exceptions import MlflowException

    name = _name("lock")
    hook.create_registered_model(name)
    with pytest.raises(MlflowException) as taken:
        hook.create_registered_model(name)  # atomic: the promotion lock relies on it
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    hook.rename_registered_model(name, f"{name}.broken")
    hook.delete_registered_model(f"{name}.broken")
    assert hook.search_registered_models(f"name LIKE '{name}%'") == []


def test_model_artifact_present(hook: MlflowHook, version: tuple[str, str, str]) -> None:
    from types import SimpleNamespace

    name, v, _ = version
    assert hook.model_artifact_present(hook.get_model_version(name, v))
    assert not hook.model_artifact_present(SimpleNamespace(source=f"runs:/{'0' * 32}/model", model_id=None))
    assert not hook.model_artifact_present(SimpleNamespace(source="models:/m-doesnotexist", model_id=None))
    assert hook.model_artifact_present(SimpleNamespace(source="s3://bucket/models/x/1", model_id=None))


def test_runs_artifacts_and_json(hook: MlflowHook, version: tuple[str, str, str], tmp_path: Path) -> None:
    _, _, run_id = version
    run = hook.get_run(run_id)
    assert run.data.tags["mlops.test"] == "1"
    assert [Path(f.path).name for f in hook.list_artifacts(run_id, "model")] == ["MLmodel"]
    local = hook.download_artifacts(run_id, "model/MLmodel", str(tmp_path))
    assert Path(local).read_text() == MLMODEL

    uri = hook.write_json_artifact(run_id, {"b": 2, "a": [1]}, "evaluation/x.json")
    assert uri == f"runs:/{run_id}/evaluation/x.json"
    assert hook.read_json_artifact(run_id, "evaluation/x.json") == {"a": [1], "b": 2}
    hook.write_json_artifact(run_id, {"b": 3}, "evaluation/x.json")  # overwrites: a retry is idempotent
    assert hook.read_json_artifact(run_id, "evaluation/x.json") == {"b": 3}
    # the former client-first spelling still works, for one release
    assert hook.load_json_artifact(hook.client, run_id, "evaluation/x.json") == {"b": 3}

    experiment = hook.get_experiment_by_name(hook.client.get_experiment(run.info.experiment_id).name)
    assert experiment.experiment_id == run.info.experiment_id
    runs = hook.search_runs_where([experiment.experiment_id], "tags.`mlops.test` = '1'")
    assert [r.info.run_id for r in runs] == [run_id]
    assert hook.latest_run(experiment.name, "tags.`mlops.test` = '1'").info.run_id == run_id
    assert hook.latest_run(_name("no-such-experiment"), "tags.`mlops.test` = '1'") is None


def test_for_client_and_artifact_url_lookup(hook: MlflowHook, version: tuple[str, str, str]) -> None:
    _, _, run_id = version
    wrapped = MlflowHook.for_client(hook.client)
    assert wrapped.client is hook.client and wrapped.settings.tracking_uri == hook.settings.tracking_uri
    uri = f"runs:/{run_id}/evaluation/x.json"
    assert hook.artifact_url(uri) is None  # no network call unless asked
    url = hook.artifact_url(uri, lookup=True)
    experiment_id = hook.get_run(run_id).info.experiment_id
    assert url == f"{hook.settings.ui_url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/evaluation/x.json"
