"""``MlflowRunsMixin``: the hook's run, experiment and registry methods, against a real MLflow server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks._mlflow_runs import MAX_METRICS_PER_BATCH, MlflowRunsMixin, tag_filter
from mlops_airflow.hooks.mlflow_registry import MlflowHook

pytestmark = pytest.mark.unit

# The hook as operators get it once MlflowHook mixes the runs in; a class that mixes them in until then.
Hook = MlflowHook if issubclass(MlflowHook, MlflowRunsMixin) else type("Hook", (MlflowRunsMixin, MlflowHook), {})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hook(mlflow_server: str) -> MlflowRunsMixin:
    return Hook(tracking_uri=mlflow_server)


def test_the_client_is_built_once_per_hook(hook: MlflowRunsMixin, mlflow_server: str) -> None:
    assert hook.client is hook.client
    assert hook.client.tracking_uri == mlflow_server
    assert Hook(tracking_uri=mlflow_server).client is not hook.client


def test_experiment_id_reads_creates_and_refuses_a_deleted_one(hook: MlflowRunsMixin) -> None:
    name = _name("runs-exp")
    assert hook.experiment_id(name) is None
    created = hook.experiment_id(name, create=True)
    assert created and hook.experiment_id(name) == created == hook.experiment_id(name, create=True)
    hook.client.delete_experiment(created)
    assert hook.experiment_id(name) == created  # reading a deleted experiment still finds it
    with pytest.raises(RegistryError, match=r"is deleted; restore it .*or choose another experiment_name"):
        hook.experiment_id(name, create=True)


def test_find_run_newest_finished_and_the_run_a_crashed_try_left(hook: MlflowRunsMixin) -> None:
    name = _name("runs-find")
    experiment = hook.experiment_id(name, create=True)
    keys = {"mlops.dag_id": "d", "mlops.run_id": "manual__1", "mlops.task_id": "t"}
    assert hook.find_run(name, keys) is None
    assert hook.find_run(_name("no-such-experiment"), keys) is None

    first = hook.create_run(experiment, keys, run_name="first")
    assert first.data.tags["mlflow.runName"] == "first"
    hook.end_run(first.info.run_id, "FINISHED")
    crashed = hook.create_run(experiment, keys)  # a later try that never finished
    hook.create_run(experiment, {**keys, "mlops.task_id": "other"})  # another task: never found

    assert hook.find_run(name, keys).info.run_id == crashed.info.run_id  # the newest, any status
    assert hook.find_run(name, keys, finished_only=True).info.run_id == first.info.run_id
    assert hook.find_run(name, keys, prefer_finished=True).info.run_id == first.info.run_id
    assert [r.info.run_id for r in hook.search_runs(name, keys)] == [crashed.info.run_id, first.info.run_id]

    hook.end_run(first.info.run_id, "FAILED")
    assert hook.find_run(name, keys, finished_only=True) is None
    assert hook.find_run(name, keys, prefer_finished=True).info.run_id == crashed.info.run_id


def test_a_tag_value_a_filter_cannot_hold_is_matched_on_the_results(hook: MlflowRunsMixin) -> None:
    name = _name("runs-quote")
    experiment = hook.experiment_id(name, create=True)
    quoted = {"mlops.run_id": "it's \\ odd", "mlops.task_id": "t"}
    assert tag_filter(quoted) == "tags.`mlops.task_id` = 't'"
    run = hook.create_run(experiment, quoted)
    hook.create_run(experiment, {**quoted, "mlops.run_id": "plain"})
    assert [r.info.run_id for r in hook.search_runs(name, quoted)] == [run.info.run_id]
    assert hook.find_run(name, quoted).info.run_id == run.info.run_id


def test_tags_metrics_and_artifacts_land_on_the_run(hook: MlflowRunsMixin, tmp_path: Path) -> None:
    experiment = hook.experiment_id(_name("runs-log"), create=True)
    run_id = hook.create_run(experiment, {"k": "v"}).info.run_id
    hook.set_run_tags(run_id, {"mlops.passed": "true", "n": 3})
    metrics = {f"m{i}": float(i) for i in range(MAX_METRICS_PER_BATCH + 5)}  # more than one batch
    hook.log_run_metrics(run_id, metrics)
    report = tmp_path / "report.html"
    report.write_text("<p>ok</p>")
    hook.log_run_artifact(run_id, str(report), "drift")
    hook.end_run(run_id)

    run = hook.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlops.passed"] == "true" and run.data.tags["n"] == "3"
    assert run.data.metrics == metrics
    assert [f.path for f in hook.client.list_artifacts(run_id, "drift")] == ["drift/report.html"]


def test_logged_model_uri_from_the_tag_else_the_runs_logged_model(hook: MlflowRunsMixin) -> None:
    experiment = hook.experiment_id(_name("runs-model"), create=True)
    bare = hook.create_run(experiment, {})
    assert hook.logged_model_uri(hook.client.get_run(bare.info.run_id)) is None

    logged = hook.client.create_logged_model(experiment, name="model", source_run_id=bare.info.run_id)
    assert hook.logged_model_uri(hook.client.get_run(bare.info.run_id)) == f"models:/{logged.model_id}"

    tagged = hook.create_run(experiment, {"mlops.model_uri": "models:/m-tagged"})
    assert hook.logged_model_uri(tagged) == "models:/m-tagged"


def test_registry_model_versions_aliases_and_the_run_behind_a_version(hook: MlflowRunsMixin) -> None:
    name = _name("runs-registry")
    assert hook.find_registered_model(name) is None
    assert hook.model_versions(name) == []
    assert hook.model_versions("it's") == []  # a name no filter can hold

    experiment = hook.experiment_id(_name("runs-registry-exp"), create=True)
    run = hook.create_run(experiment, {})
    hook.log_run_metrics(run.info.run_id, {"val_auc": 0.9})
    hook.client.create_registered_model(name, tags={"mlops.last_retrain_at": "2026-01-01T00:00:00+00:00"})
    v1 = hook.client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    hook.client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    hook.client.set_registered_model_alias(name, "champion", v1.version)

    assert hook.find_registered_model(name).tags["mlops.last_retrain_at"].startswith("2026-01-01")
    assert sorted(int(v.version) for v in hook.model_versions(name)) == [1, 2]
    assert hook.alias_versions(name, ["champion", "canary"]) == {"champion": "1"}
    found = hook.version_run(name, 1)
    assert found.info.run_id == run.info.run_id and found.data.metrics == {"val_auc": 0.9}
