"""The reproducibility record: built from a real MLflow run, written as the run's artifact, read back and checked
against a real registry (the session's MLflow server), and the rebuild/retrain inputs derived from it."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.record import (
    RECORD_ARTIFACT,
    RECORD_SCHEMA_VERSION,
    build_record,
    code_revision,
    dataset_version_of,
    load_record,
    metric_differences,
    project_root,
    record_digest,
    record_tags,
    reproduction_inputs,
    trigger_section,
    verify_rebuild,
)

pytestmark = pytest.mark.unit

DATASET = {
    "repo": "data_repo",
    "rev": "a" * 40,
    "path": "data/customer_events",
    "md5": "m" * 32,
    "rows": 1500,
    "size": 99,
}
TRAINING_SET = {
    "uri": "/data/ts.parquet",
    "hash": "h" * 64,
    "rows": 1400,
    "columns": ["a", "churned"],
    "features": ["a"],
    "label": "churned",
    "entity_window": {"start": "2026-10-01", "end": None},
    "project": "churn",
    "feature_service": "churn_model_v1",
    "definitions_hash": "d" * 64,
}
WINDOW = {"start": "2026-10-01T00:00:00+00:00", "end": "2026-11-01T00:00:00+00:00"}
DECISION = {
    "reason": "dataset drift: 2 of 5 columns drifted",
    "triggered_by": "asset mlops://monitoring/churn",
    "decided_at": "2026-11-02T00:00:00+00:00",
    "events": [{"asset_uri": "mlops://monitoring/churn"}],
    "asset_extra": {
        "kind": "drift",
        "drifted_columns": ["a", "b"],
        "drift_share": 0.4,
        "quality_drop": None,
        "verdict_uri": "file:///v.json",
        "ignored": "x",
    },
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A deployed project: a git checkout with the Airflow lock and the training requirements/entrypoint."""
    root = tmp_path / "project"
    (root / "include" / "training").mkdir(parents=True)
    (root / "uv.lock").write_text("lock v1\n")
    (root / "include" / "training" / "requirements.txt").write_text("torch==2.5\n")
    (root / "include" / "training" / "train.py").write_text("print('train')\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    monkeypatch.setenv("AIRFLOW__MLOPS__PROJECT_ROOT", str(root))
    return root


@pytest.fixture(scope="module")
def mlflow(mlflow_server):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    hook = MlflowHook(tracking_uri=mlflow_server)
    client = hook.get_client()
    experiment_id = client.create_experiment(f"test-record-{uuid.uuid4().hex[:8]}")
    return hook, client, experiment_id


def _run(client, experiment_id, params=None, tags=None):
    run = client.create_run(experiment_id)
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in (tags or {}).items():
        client.set_tag(run.info.run_id, key, value)
    return client.get_run(run.info.run_id)


PARAMS = {
    "epochs": "4",
    "lr": "0.001",
    "seed": "42",
    "use_amp": "False",
    "optimizer": "adam",
    "dataset.rev": "a" * 40,
    "training_set_hash": "h" * 64,
    "n_rows": "1500",
    "n_train": "1200",
    "n_val": "300",
    "split_digest": "s1",
}
LINEAGE_TAGS = {"mlops.entrypoint": "models/own.py", "mlops.entrypoint_sha256": "e" * 64,
                "mlops.requirements": "models/requirements.txt", "mlops.requirements_sha256": "q" * 64,
                "mlops.task_type": "regression", "mlops.label": "churned"}
RUNTIME_TAGS = {"mlops.runtime.device": "cpu", "mlops.runtime.torch_version": "2.5.1", "mlops.model_uri": "models:/m-1"}


# ------------------------------------------------------------------------------------------ project
def test_project_root_and_code_revision(project, tmp_path):
    assert project_root() == project
    head = _git(project, "rev-parse", "HEAD")
    assert code_revision(project) == head
    (project / "uv.lock").write_text("lock v2\n")  # an uncommitted change to a tracked file
    assert code_revision(project) == f"{head}-dirty"
    (tmp_path / "plain").mkdir()
    assert code_revision(tmp_path / "plain") is None


def test_project_root_defaults_to_the_parent_of_the_dags_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__MLOPS__PROJECT_ROOT", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "deploy" / "dags"))
    assert project_root() == (tmp_path / "deploy").resolve()


# ------------------------------------------------------------------------------------------ building
def test_build_record_from_a_real_run(project, mlflow):
    _, client, experiment_id = mlflow
    run = _run(client, experiment_id, PARAMS, {**RUNTIME_TAGS, **LINEAGE_TAGS})
    ctx = make_context("register_model", run_id="ct-run-1", try_number=2)
    record = build_record(
        context=ctx,
        run=run,
        dataset=DATASET,
        training_set=TRAINING_SET,
        materialization=WINDOW,
        model_name="churn",
        model_version="3",
        trigger=DECISION,
    )
    assert record["schema_version"] == RECORD_SCHEMA_VERSION == 3
    assert record["model"] == {"name": "churn", "version": "3"}
    assert record["dataset"] == {k: DATASET[k] for k in ("repo", "rev", "path", "md5", "rows")}  # no "size"
    assert record["features"] == {
        "project": "churn",
        "feature_service": "churn_model_v1",
        "definitions_hash": "d" * 64,
        "materialization": WINDOW,
    }
    assert record["training_set"] == {
        k: TRAINING_SET[k] for k in ("uri", "hash", "rows", "columns", "features", "label", "entity_window")
    }
    # Data parameters live in the dataset/split sections, not in the training config.
    assert record["training"] == {
        "config": {"epochs": "4", "lr": "0.001", "seed": "42", "use_amp": "False", "optimizer": "adam"},
        "seed": "42",
        "split": {"n_rows": "1500", "n_train": "1200", "n_val": "300", "split_digest": "s1"},
    }
    sha = hashlib.sha256((project / "uv.lock").read_bytes()).hexdigest()
    # The code is what the run says ran (its mlops.entrypoint* tags), not the bundled example's files.
    assert record["code"] == {
        "revision": _git(project, "rev-parse", "HEAD"),
        "image_digest": "local",
        "airflow_lock_sha256": sha,
        "entrypoint": "models/own.py",
        "training_entrypoint_sha256": "e" * 64,
        "requirements": "models/requirements.txt",
        "training_lock_sha256": "q" * 64,
    }
    assert record["task"] == {"task_type": "regression", "label": "churned", "entity_columns": None}
    assert record["runtime"] == {"device": "cpu", "torch_version": "2.5.1"}  # from the mlops.runtime.* tags
    assert record["airflow"] == {
        "dag_id": "test_dag",
        "run_id": "ct-run-1",
        "task_id": "register_model",
        "try_number": "2",
    }
    assert record["mlflow"] == {"run_id": run.info.run_id, "experiment_id": experiment_id, "model_uri": "models:/m-1"}
    assert record["trigger"] == trigger_section(DECISION)
    assert record["record_sha256"] == record_digest(record)
    json.dumps(record)


def test_build_record_prefers_the_runtime_artifact_and_skips_a_missing_trigger(project, mlflow):
    _, client, experiment_id = mlflow
    run = _run(client, experiment_id, {"seed": "1"}, {"mlops.image_digest": "sha256:img"})
    (project / "uv.lock").unlink()
    runtime = {"device": "cuda", "device_name": "NVIDIA H200", "cuda_version": "12.4"}
    record = build_record(
        context=make_context(),
        run=run,
        dataset=DATASET,
        training_set=TRAINING_SET,
        materialization=None,
        model_name="churn",
        model_version="1",
        runtime=runtime,
        model_uri="models:/m-explicit",
    )
    assert record["runtime"] == runtime and "trigger" not in record
    assert record["code"]["image_digest"] == "sha256:img" and record["code"]["airflow_lock_sha256"] is None
    # A run that does not say which code trained it: None, never the bundled train.py/requirements.txt.
    assert record["code"]["entrypoint"] is None and record["code"]["training_entrypoint_sha256"] is None
    assert record["code"]["training_lock_sha256"] is None
    assert record["task"] == {"task_type": "binary_classification", "label": "churned", "entity_columns": None}
    assert record["mlflow"]["model_uri"] == "models:/m-explicit" and record["training"]["split"] == {}


def test_build_record_takes_the_code_from_the_training_xcom_when_the_run_lacks_the_tags(project, mlflow):
    _, client, experiment_id = mlflow
    run = _run(client, experiment_id, {"seed": "1"}, {"mlops.entrypoint": "pkg.models:train"})
    training = {"entrypoint": "ignored:because_tagged", "entrypoint_sha256": "f" * 64, "requirements_sha256": None,
                "task_type": "regression", "label": "target"}
    record = build_record(context=make_context(), run=run, dataset=DATASET, training_set=TRAINING_SET,
                          materialization=None, model_name="m", model_version="1", training=training)
    assert record["code"]["entrypoint"] == "pkg.models:train"  # the run's tag wins over the XCom
    assert record["code"]["training_entrypoint_sha256"] == "f" * 64
    assert record["code"]["training_lock_sha256"] is None
    assert record["task"]["task_type"] == "regression" and record["task"]["label"] == "target"
    tags = record_tags(record)
    assert tags["mlops.entrypoint"] == "pkg.models:train" and tags["mlops.entrypoint_sha256"] == "f" * 64


def test_digest_ignores_key_order_and_its_own_field():
    record = {"b": 1, "a": {"y": 2, "x": [1, 2]}}
    same = {"a": {"x": [1, 2], "y": 2}, "b": 1, "record_sha256": "anything"}
    assert record_digest(record) == record_digest(same)
    assert record_digest(record) == hashlib.sha256(b'{"a":{"x":[1,2],"y":2},"b":1}').hexdigest()
    assert record_digest({**record, "b": 2}) != record_digest(record)


def test_trigger_section_keeps_the_small_facts_only():
    assert trigger_section(DECISION) == {
        "reason": DECISION["reason"],
        "triggered_by": "asset mlops://monitoring/churn",
        "decided_at": "2026-11-02T00:00:00+00:00",
        "kind": "drift",
        "drifted_columns": ["a", "b"],
        "drift_share": 0.4,
        "quality_drop": None,
        "verdict_uri": "file:///v.json",
    }
    assert trigger_section({}) == dict.fromkeys(
        (
            "reason",
            "triggered_by",
            "decided_at",
            "kind",
            "drifted_columns",
            "drift_share",
            "quality_drop",
            "verdict_uri",
        )
    )


def _record(**changes) -> dict:
    record = {
        "schema_version": 3,
        "model": {"name": "churn", "version": "3"},
        "dataset": {k: DATASET[k] for k in ("repo", "rev", "path", "md5", "rows")},
        "features": {
            "project": "churn",
            "feature_service": "churn_model_v1",
            "definitions_hash": "d" * 64,
            "materialization": WINDOW,
        },
        "training_set": {
            k: TRAINING_SET[k] for k in ("uri", "hash", "rows", "columns", "features", "label", "entity_window")
        },
        "training": {
            "config": {
                "epochs": "4",
                "lr": "0.001",
                "use_amp": "False",
                "optimizer": "adam",
                "dropout": "0.0",
                "big": "12345678901234567890",
            },
            "seed": "42",
        },
        "task": {"task_type": "binary_classification", "label": "churned", "entity_columns": ["id"]},
        "code": {
            "revision": "c" * 40,
            "image_digest": "local",
            "airflow_lock_sha256": "l" * 64,
            "entrypoint": "include/training/train.py",
            "training_entrypoint_sha256": "e" * 64,
            "requirements": None,
            "training_lock_sha256": None,
        },
        "runtime": {"device": "cpu", "torch_version": "2.5.1"},
        "airflow": {"dag_id": "ct"},
        "mlflow": {"run_id": "r" * 32},
    }
    record.update(changes)
    record["record_sha256"] = record_digest(record)
    return record


def test_record_tags_flatten_and_drop_empty_values():
    tags = record_tags(_record(trigger={**trigger_section(DECISION), "reason": "x" * 5000}))
    assert tags["mlops.record.schema"] == "3" and tags["mlops.dataset_rev"] == "a" * 40
    assert tags["mlops.training_set_hash"] == "h" * 64 and tags["mlops.seed"] == "42"
    assert tags["mlops.record_uri"] == f"runs:/{'r' * 32}/{RECORD_ARTIFACT}"
    assert len(tags["mlops.retrain.reason"]) == 4000 and tags["mlops.retrain.kind"] == "drift"
    assert "mlops.training_lock_sha256" not in tags and "mlops.cuda_version" not in tags
    assert all(isinstance(v, str) and v for v in tags.values())
    assert not any(k.startswith("mlops.retrain.") for k in record_tags(_record()))


# ------------------------------------------------------------------------------------------ reading back
def _register(client, name: str, run_id: str | None, tags: dict | None = None) -> str:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already registered by an earlier call
        client.create_registered_model(name)
    source = f"runs:/{run_id}/model" if run_id else f"s3://models/{name}/model"  # no run: copied from elsewhere
    return client.create_model_version(name, source, run_id=run_id, tags=tags).version


def test_load_record_round_trip_and_integrity_checks(mlflow):
    hook, client, experiment_id = mlflow
    name = f"record_{uuid.uuid4().hex[:8]}"
    run_id = _run(client, experiment_id).info.run_id
    record = _record(mlflow={"run_id": run_id})
    assert hook.log_json_artifact(client, run_id, record, RECORD_ARTIFACT) == f"runs:/{run_id}/{RECORD_ARTIFACT}"
    good = _register(client, name, run_id, tags={"mlops.training_set_hash": "h" * 64})
    assert load_record(hook, client, name, good) == record
    assert load_record(hook, client, name, int(good)) == record

    with pytest.raises(
        RegistryError,
        match=rf"{name} version 99 does not exist in the registry \(RESOURCE_DOES_NOT_"
        r"EXIST\); check the model name and version",
    ):
        load_record(hook, client, name, "99")

    without_run = _register(client, name, None)
    with pytest.raises(
        RegistryError,
        match=rf"{name} version {without_run} has no MLflow run: it was not registered "
        r"by RegisterModelOperator",
    ):
        load_record(hook, client, name, without_run)

    bare_run = _run(client, experiment_id).info.run_id
    no_record = _register(client, name, bare_run)
    with pytest.raises(
        RegistryError,
        match=rf"run {bare_run} has no reproducibility/record.json \(\w+\); the "
        r"version was registered without a record",
    ):
        load_record(hook, client, name, no_record)

    edited_run = _run(client, experiment_id).info.run_id
    edited = copy.deepcopy(record)
    edited["training"]["config"]["epochs"] = "40"  # edited after registration; record_sha256 kept
    hook.log_json_artifact(client, edited_run, edited, RECORD_ARTIFACT)
    tampered = _register(client, name, edited_run)
    with pytest.raises(
        RegistryError,
        match=rf"does not match its record_sha256 \({record['record_sha256'][:12]}"
        r"\.\.\.\): it was modified after registration; do not trust it",
    ):
        load_record(hook, client, name, tampered)

    retagged = _register(client, name, run_id, tags={"mlops.training_set_hash": "0" * 64})
    with pytest.raises(
        RegistryError,
        match=r"tag mlops.training_set_hash=0000000000000000 disagrees with the "
        r"record's training_set.hash",
    ):
        load_record(hook, client, name, retagged)

    unsigned_run = _run(client, experiment_id).info.run_id
    unsigned = {k: v for k, v in record.items() if k != "record_sha256"}
    hook.log_json_artifact(client, unsigned_run, unsigned, RECORD_ARTIFACT)
    assert load_record(hook, client, name, _register(client, name, unsigned_run)) == unsigned  # nothing to check


# ------------------------------------------------------------------------------------------ reproduction
def test_dataset_version_of():
    assert dataset_version_of(_record()) == {k: DATASET[k] for k in ("repo", "rev", "path", "md5")}
    with pytest.raises(
        RegistryError,
        match=r"the record of churn v3 names no dataset \['rev'\]: it cannot be "
        r"rebuilt",
    ):
        dataset_version_of(_record(dataset={**DATASET, "rev": None}))
    with pytest.raises(RegistryError, match=r"names no dataset \['rev', 'path'\]"):
        dataset_version_of({"model": {"name": "churn", "version": "3"}})


def test_reproduction_inputs_coerce_params_back_to_numbers_and_booleans():
    inputs = reproduction_inputs(_record())
    assert inputs["training_config"] == {
        "epochs": 4,
        "lr": 0.001,
        "use_amp": False,
        "optimizer": "adam",
        "dropout": 0.0,
        "big": 12345678901234567890,
    }
    assert inputs["dataset_version"] == dataset_version_of(_record())
    assert (inputs["feature_service"], inputs["expected_hash"], inputs["expected_rows"]) == (
        "churn_model_v1",
        "h" * 64,
        1400,
    )
    assert inputs["entity_window"] == {"start": "2026-10-01", "end": None} and inputs["label"] == "churned"
    assert inputs["mlflow_run_id"] == "r" * 32 and inputs["record_sha256"] == _record()["record_sha256"]
    json.dumps(inputs)

    assert (inputs["task_type"], inputs["entity_columns"]) == ("binary_classification", ["id"])
    assert (inputs["entrypoint"], inputs["entrypoint_sha256"]) == ("include/training/train.py", "e" * 64)
    assert inputs["requirements"] is None and inputs["requirements_sha256"] is None

    old = _record(training_set={"hash": "h" * 64, "label": "y"}, task=None)
    assert reproduction_inputs(old)["entity_window"] == {"start": None, "end": None}
    assert reproduction_inputs(old)["label"] == "y" and reproduction_inputs(old)["task_type"] == "binary_classification"
    with pytest.raises(RegistryError, match=r"churn v3 names no label column .*re-register the version"):
        reproduction_inputs(_record(training_set={"hash": "h" * 64}, task=None))  # no "churned" fallback
    with pytest.raises(
        RegistryError,
        match=r"churn v3 names no feature service or training-set hash: it cannot be "
        r"reproduced",
    ):
        reproduction_inputs(_record(features={"project": "churn"}))
    with pytest.raises(RegistryError, match="names no feature service or training-set hash"):
        reproduction_inputs(_record(training_set={}))


def test_verify_rebuild_names_the_likely_cause():
    inputs = reproduction_inputs(_record())
    same = {"hash": "h" * 64, "rows": 1400, "definitions_hash": "d" * 64, "uri": "/rebuilt.parquet"}
    assert verify_rebuild(inputs, same) == {
        "match": True,
        "expected_hash": "h" * 64,
        "rebuilt_hash": "h" * 64,
        "expected_rows": 1400,
        "rebuilt_rows": 1400,
        "definitions_match": True,
        "rebuilt_uri": "/rebuilt.parquet",
        "dataset": f"data/customer_events@{'a' * 12}",
    }
    with pytest.raises(
        RegistryError,
        match=r"churn v3 is NOT reproducible: .* has hash 0000000000000000 \(1399 rows\)"
        r", the record says hhhhhhhhhhhhhhhh \(1400 rows\)\. Likely cause: the "
        r"Feast feature definitions changed since training",
    ):
        verify_rebuild(inputs, {**same, "hash": "0" * 64, "rows": 1399, "definitions_hash": "e" * 64})
    with pytest.raises(
        RegistryError,
        match=r"Likely cause: same data revision and feature definitions, so the "
        r"offline source rows changed",
    ):
        verify_rebuild(inputs, {**same, "hash": "0" * 64})


def test_metric_differences_of_the_shared_metrics():
    assert metric_differences({"auc": 0.8, "loss": 0.5, "only_a": 1}, {"auc": 0.8, "loss": 0.45, "only_b": 2}) == {
        "auc": {"original": 0.8, "retrained": 0.8, "diff": 0.0},
        "loss": {"original": 0.5, "retrained": 0.45, "diff": -0.05},
    }
    assert metric_differences({}, {"auc": 1}) == {}


def test_verify_code_accepts_the_same_code_and_names_a_change(tmp_path):
    from mlops_airflow.record import verify_code

    (tmp_path / "models").mkdir()
    script = tmp_path / "models" / "own.py"
    script.write_text("print('train')\n")
    sha = hashlib.sha256(script.read_bytes()).hexdigest()
    inputs = {"model": {"name": "m", "version": "2"}, "entrypoint": "models/own.py", "entrypoint_sha256": sha}
    assert verify_code(inputs, tmp_path) == {"entrypoint": "models/own.py", "sha256": sha, "match": True,
                                             "path": str(script)}
    module = {**inputs, "entrypoint": "models.own:train"}
    assert verify_code(module, tmp_path)["match"] is True  # module:function: the module's source file
    script.write_text("print('changed')\n")
    with pytest.raises(RegistryError, match=r"m v2 was trained by models/own.py with sha256 \w{12}, the project's "
                                            r"copy has \w{12}: the code changed since"):
        verify_code(inputs, tmp_path)
    with pytest.raises(RegistryError, match=r"names no training entrypoint and hash \(registered before schema 3\)"):
        verify_code({"model": {"name": "m", "version": "1"}}, tmp_path)
    with pytest.raises(RegistryError, match="is not in the project"):
        verify_code({**inputs, "entrypoint": "models/gone.py"}, tmp_path)
    inside_image = verify_code({**inputs, "entrypoint": "/opt/training/train.py"}, tmp_path)
    assert inside_image["match"] is None  # a file inside the training image: the image digest pins it


def test_the_models_feature_repository_is_recorded_and_a_rebuild_from_another_project_fails():
    """Run tags mlops.feast_conn_id / mlops.feast_repo (continuous_training writes them) name the repository."""
    record = _record(features={"project": "proj_a", "feature_service": "svc_v1", "definitions_hash": "d" * 64,
                               "feast_conn_id": "feast_other"})
    inputs = reproduction_inputs(record)
    assert (inputs["feast_conn_id"], inputs["feast_repo"], inputs["project"]) == ("feast_other", None, "proj_a")
    same = {"hash": "h" * 64, "rows": 1400, "definitions_hash": "d" * 64, "uri": "/r.parquet", "project": "proj_a"}
    assert verify_rebuild(inputs, same)["match"] is True
    with pytest.raises(RegistryError, match=r"trained on Feast project 'proj_a', the rebuild read project 'proj_b' "
                                            r"\(connection feast_other\): the wrong feature repository"):
        verify_rebuild(inputs, {**same, "project": "proj_b"})
