"""OpenLineage of the pack (``mlops_airflow.lineage``): dataset names, ML facets, the operators' lineage.

The data -> training set -> model chain: a real DVC version (``DvcVersionDatasetOperator`` on a real repository,
with the lineage mixin as the wiring puts it), a training set of the FeastTrainingSetOperator's XCom shape built
from it, and a RegisterModelOperator (with its mixin) whose run facts come from a real MLflow run on the test
server. The three COMPLETE events go through the provider's ``OpenLineageAdapter`` and openlineage-python's file
transport and are read back as JSON: registering a real model needs a trained model (tests/unit/operators/
test_registry.py does that), so the register result is the operator's XCom shape set where ``execute`` leaves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from mlops_airflow import lineage

pytestmark = pytest.mark.unit


def test_importing_the_module_imports_neither_openlineage_nor_airflow() -> None:
    code = ("import sys, mlops_airflow.lineage as l; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('openlineage', 'airflow', 'attr')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("repo", "namespace"), [
    ("https://user:secret@github.com/org/data.git", "dvc://github.com/org/data"),
    ("ssh://git@git.example.com:2222/org/data.git", "dvc://git.example.com:2222/org/data"),
    ("git@github.com:org/data.git", "dvc://github.com/org/data"),
    ("/srv/data_repo/", "dvc:///srv/data_repo"),
])
def test_dvc_namespace_drops_credentials_and_git_suffix(repo: str, namespace: str) -> None:
    assert lineage.dvc_namespace(repo) == namespace
    assert lineage.dvc_dataset({"repo": repo, "path": "/data/events/", "rev": "abc"}) == (namespace, "data/events@abc")


def test_names_of_models_feature_views_and_training_sets() -> None:
    assert lineage.model_version_dataset("https://u:p@mlflow.example.com/", "m", 3) == (
        "mlflow://mlflow.example.com", "models/m/3")
    assert lineage.mlflow_namespace("http://127.0.0.1:5055") == "mlflow://127.0.0.1:5055"
    assert lineage.mlflow_namespace("sqlite:///mlflow.db") == "mlflow://sqlite"
    assert lineage.feature_view_dataset("proj", "activity") == ("feast://proj", "activity")
    feast_set = {"hash": "f" * 64, "project": "proj", "feature_service": "svc_v1", "uri": "/x/ffff.parquet"}
    assert lineage.training_set_dataset(feast_set) == ("feast://proj", "training_sets/svc_v1/" + "f" * 16)
    plain_set = {"hash": "ab", "uri": "file:///sets/ab.parquet"}  # built without Feast
    assert lineage.training_set_dataset(plain_set) == ("file", "/sets/ab.parquet")


def test_a_missing_field_is_named_with_the_next_step() -> None:
    with pytest.raises(ValueError, match=r"DVC dataset version lacks 'rev'.*XCom of the task that made it"):
        lineage.dvc_dataset({"repo": "/r", "path": "p"})
    with pytest.raises(ValueError, match="training set lacks 'hash'"):
        lineage.training_set_dataset({"uri": "/x"})


def test_facets_are_openlineage_facet_classes() -> None:
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet
    from openlineage.client.serde import Serde

    assert issubclass(lineage.TrainingRunFacet, RunFacet) and issubclass(lineage.MetricsRunFacet, RunFacet)
    assert issubclass(lineage.HyperParametersRunFacet, RunFacet)
    assert issubclass(lineage.ModelVersionDatasetFacet, DatasetFacet)
    facet = json.loads(Serde.to_json(lineage.ModelVersionDatasetFacet(name="m", version="2", aliases=["champion"])))
    assert facet["_schemaURL"] == "urn:airflow-provider-mlops:openlineage:facets:ModelVersionDatasetFacet:1"
    assert facet["name"] == "m" and facet["aliases"] == ["champion"] and facet["_producer"]
    with pytest.raises(AttributeError):
        lineage.NoSuchFacet  # noqa: B018


def test_asset_converter_versions_what_the_hooks_report() -> None:
    from airflow.sdk import Asset

    version = {"repo": "https://u:p@github.com/org/data.git", "path": "data/events", "rev": "abc", "md5": "m.dir"}
    uri, extra = lineage.dvc_asset(version)
    assert uri == "dvc://data/data/events" and "secret" not in json.dumps(extra) and "u:p" not in json.dumps(extra)
    cases = [
        ((uri, extra), ("dvc://github.com/org/data", "data/events@abc")),
        (("dvc://data_repo/data/events", {}), ("dvc://data_repo", "data/events")),  # a declared outlet
        (lineage.model_asset("http://127.0.0.1:5055", "m", 4), ("mlflow://127.0.0.1:5055", "models/m/4")),
        (("mlflow://models/m", {}), ("mlflow://default", "models/m")),
        (lineage.feature_view_asset("proj", "activity"), ("feast://proj", "activity")),
        (lineage.training_set_asset({"hash": "e" * 64, "project": "p", "feature_service": "s"}),
         ("feast://p", "training_sets/s/" + "e" * 16)),
        (("mlops://monitoring/m", {}), ("mlops://monitoring", "m")),
    ]
    for (asset_uri, asset_extra), want in cases:
        dataset = lineage.asset_to_openlineage(Asset(uri=asset_uri, extra=asset_extra), None)
        assert (dataset.namespace, dataset.name) == want, asset_uri


# -- the data -> training set -> model chain ---------------------------------------------------------------------
def _wired(operator: type, mixin: type) -> type:
    """The operator with its lineage mixin in front, as the 2-line wiring does it (itself once it is wired)."""
    return operator if issubclass(operator, mixin) else type(operator.__name__, (mixin, operator), {})


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def mlflow_run(mlflow_server, monkeypatch) -> dict:
    """A real MLflow run with parameters and metrics, and a connection to its server."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    rest = MlflowHook().rest
    experiment_id = rest.experiment_id("lineage-test")
    run = rest.create_run(experiment_id, {"mlops.entrypoint": "train.py"})
    run_id = run["info"]["run_id"]
    params = [{"key": "seed", "value": "42"}, {"key": "epochs", "value": "4"}]
    rest.call("POST", "runs/log-batch", {"run_id": run_id, "params": params, "metrics": [], "tags": []})
    return {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": mlflow_server}


def test_register_lineage_builds_the_chain_with_the_ml_facets(tmp_path, generator, dvc_repo, context, mlflow_run):
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator
    from mlops_airflow.operators.registry import RegisterModelOperator
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    Versioning = _wired(DvcVersionDatasetOperator, lineage.DvcVersionLineageMixin)
    Registering = _wired(RegisterModelOperator, lineage.RegisterModelLineageMixin)

    batch = generator.write_batch(generator.generate_batch(date(2026, 11, 1), n_customers=120),
                                  tmp_path / "landing" / "2026-11-01.parquet")
    versioning = Versioning(task_id="version", source_path=str(batch), dataset_path="data/events",
                            file_name="2026-11-01.parquet")
    version = versioning.execute(context("version"))  # the wrapped execute keeps its result for the lineage
    # The FeastTrainingSetOperator's XCom, built from that version (shape of feast_training_set.py's result).
    training_set = {
        "uri": str(tmp_path / "sets" / "svc_v1" / "abcdef0123456789.parquet"), "hash": "abcdef0123456789" * 4,
        "rows": 120, "columns": ["entity", "event_timestamp", "f1", "f2", "y"], "features": ["f1", "f2"],
        "label": "y", "entity_columns": ["entity"], "timestamp_column": "event_timestamp",
        "feature_service": "svc_v1", "project": "proj", "definitions_hash": "d" * 64,
        "dataset": {k: version[k] for k in ("repo", "rev", "path", "md5")},
    }
    training = {  # the training operator's XCom (result_from_run)
        "run_id": mlflow_run["run_id"], "experiment_id": mlflow_run["experiment_id"], "model_uri": "models:/m-1",
        "metrics": {"val_rmse": 51.2, "val_r2": 0.41}, "backend": "local", "run_url": "http://ui/#/runs/x",
        "task_type": "regression", "label": "y", "entrypoint": "include/train.py", "entrypoint_sha256": "e" * 64,
        "requirements_sha256": "r" * 64,
    }
    registering = Registering(task_id="register_model", model_name="my_model", training=training,
                              training_set=json.dumps(training_set), dataset_version=version)
    registering._openlineage_result = {  # RegisterModelOperator.execute's return value
        "model_name": "my_model", "version": "3", "run_id": mlflow_run["run_id"], "model_uri": "models:/my_model/3",
        "aliases": ["challenger"], "url": "http://ui/#/models/my_model/versions/3",
        "record_uri": f"runs:/{mlflow_run['run_id']}/reproducibility/record.json", "record_sha256": "s" * 64,
        "task_type": "regression", "label": "y", "retrain_reason": None,
    }

    events_file = tmp_path / "events.jsonl"
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(events_file), append=True)))
    adapter = OpenLineageAdapter(client=client)
    task_lineage = {
        "version": versioning.get_openlineage_facets_on_complete(context("version")["ti"]),
        "training_set": lineage.training_set_lineage(training_set),
        "register_model": registering.get_openlineage_facets_on_complete(context("register_model")["ti"]),
    }
    for task_id, operator_lineage in task_lineage.items():
        adapter.complete_task(
            run_id=str(uuid.uuid4()), job_name=f"ct.{task_id}", end_time=datetime.now(UTC).isoformat(),
            task=operator_lineage, nominal_start_time=None, nominal_end_time=None, owners=[], tags=[],
            job_description=None,
        )
    events = {e["job"]["name"].removeprefix("ct."): e for e in _events(events_file)}
    assert set(events) == set(task_lineage) and {e["eventType"] for e in events.values()} == {"COMPLETE"}

    def ids(datasets: list[dict]) -> list[tuple[str, str]]:
        return [(d["namespace"], d["name"]) for d in datasets]

    data = (f"dvc://{Path(dvc_repo['repo']).resolve()}", f"data/events@{version['rev']}")
    tset = ("feast://proj", "training_sets/svc_v1/abcdef0123456789")
    model = (f"mlflow://{mlflow_run['tracking_uri'].removeprefix('http://')}", "models/my_model/3")
    assert ids(events["version"]["outputs"]) == [data]
    assert ids(events["training_set"]["inputs"]) == [data] and ids(events["training_set"]["outputs"]) == [tset]
    assert ids(events["register_model"]["inputs"]) == [data, tset]
    assert ids(events["register_model"]["outputs"]) == [model]

    out = events["register_model"]["outputs"][0]["facets"]
    assert out["mlops_modelVersion"]["name"] == "my_model" and out["mlops_modelVersion"]["version"] == "3"
    assert out["mlops_modelVersion"]["aliases"] == ["challenger"]
    assert out["mlops_modelVersion"]["datasetRev"] == version["rev"]
    assert out["mlops_modelVersion"]["trainingSetHash"] == training_set["hash"]
    assert out["version"]["datasetVersion"] == "3"
    ts_facet = events["register_model"]["inputs"][1]["facets"]["mlops_trainingSet"]
    assert (ts_facet["sourceNamespace"], ts_facet["sourceName"]) == data and ts_facet["features"] == ["f1", "f2"]
    run_facets = events["register_model"]["run"]["facets"]
    run = run_facets["mlops_trainingRun"]
    assert run["mlflowRunId"] == mlflow_run["run_id"] and run["experimentId"] == mlflow_run["experiment_id"]
    assert run["experimentName"] == "lineage-test" and run["entrypoint"] == "include/train.py"
    assert run["entrypointSha256"] == "e" * 64 and run["taskType"] == "regression"
    assert run_facets["mlops_hyperParameters"]["parameters"] == {"seed": "42", "epochs": "4"}
    assert run_facets["mlops_metrics"]["metrics"] == {"val_rmse": 51.2, "val_r2": 0.41}
    assert events["version"]["outputs"][0]["facets"]["mlops_dvcVersion"]["md5"] == version["md5"]


def test_a_task_without_a_result_has_empty_lineage_and_says_so(caplog) -> None:
    from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

    Versioning = _wired(DvcVersionDatasetOperator, lineage.DvcVersionLineageMixin)
    op = Versioning(task_id="v", source_path="/nowhere.parquet", dataset_path="data/x")
    got = op.get_openlineage_facets_on_complete(type("TI", (), {"task_id": "v"})())
    assert got.inputs == [] and got.outputs == []
    assert "returned no dict result" in caplog.text
    assert os.environ.get("AIRFLOW__OPENLINEAGE__TRANSPORT") is None  # unit tests run with lineage off
