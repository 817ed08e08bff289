"""Idempotent on data, not only on the run (issue 16, item 2b): a second CT run of the same day (another DAG run,
so another training run, on the same DVC rev and training-set hash with the same code and config) adopts the
version the first one registered instead of registering a twin; a changed config registers a new one and says
which field changed. Real MLflow server, real trainings (three, side by side: ~20-40 s on a loaded 2-core box).
"""

from __future__ import annotations

import json
import logging

import pytest
from mlops_airflow.registry.versions import (
    CONFIG_TAG,
    config_sha256,
    lineage_difference,
    training_config,
)
from unit.operators.test_registry_support import (
    mlflow_conn_json,
    needs_training_env,
    register,
    train_jobs,
    unique,
)

LINEAGE = {"mlops.dataset_rev": "a" * 40, "mlops.training_set_hash": "b" * 64, "mlops.entrypoint_sha256": "c" * 64,
           "mlops.requirements_sha256": None}


@pytest.mark.unit
def test_lineage_difference_names_each_field_that_differs():
    params = {"epochs": "4", "seed": "42", "dataset.rev": "x", "training_set_uri": "/a.parquet", "n_rows": "10"}
    assert training_config(params) == {"epochs": "4", "seed": "42"}  # data params are not the config
    moved = {**params, "dataset.rev": "y", "training_set_uri": "/b.parquet", "n_rows": "11"}
    assert config_sha256(moved) == config_sha256(params)
    ours = {**LINEAGE, CONFIG_TAG: config_sha256(params)}
    assert lineage_difference(ours, dict(ours)) == []
    changed = {**params, "epochs": "5", "lr": "0.1"}
    theirs = {**LINEAGE, "mlops.entrypoint_sha256": "d" * 64, CONFIG_TAG: config_sha256(changed)}
    assert lineage_difference(ours, theirs, params, changed) == [
        "entrypoint sha256 (code) dddddddddddd -> cccccccccccc", "training config: epochs 5 -> 4, lr 0.1 -> none"]
    assert lineage_difference({**ours, "mlops.requirements_sha256": "e" * 64}, ours) == [
        "requirements sha256 none -> eeeeeeeeeeee"]  # a hash on one side only is a difference


@pytest.fixture
def runs(mlflow_server, monkeypatch):
    """Three trainings on one training set: day 1's, day 1 again (another DAG run, same config), and one with
    another config."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(mlflow_server))
    return train_jobs(mlflow_server, {"first": ("sameday", {}, {"epochs": 2}),
                                      "again": ("sameday", {}, {"epochs": 2}),
                                      "changed": ("sameday", {}, {"epochs": 3})})


@pytest.mark.integration
@needs_training_env
def test_a_second_run_of_the_same_day_adopts_the_version_and_a_changed_config_does_not(runs, caplog, capsys):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.registry.ledger import read_ledger

    client = MlflowHook().get_client()
    name = unique("sameday")
    (first_run, _), (again_run, _), (changed_run, _) = runs["first"], runs["again"], runs["changed"]
    assert len({first_run["run_id"], again_run["run_id"], changed_run["run_id"]}) == 3

    first = register(name, runs["first"], min_metrics={"val_auc": 0.5}, run_id="ct-2026-11-01")
    assert (first["version"], first["adopted_existing"], first["aliases"]) == ("1", False, ["champion"])
    assert first["lineage"].startswith(f"no version of {name} was trained on dataset rev")
    tags = client.get_model_version(name, "1").tags
    assert tags[CONFIG_TAG] == config_sha256(client.get_run(first_run["run_id"]).data.params)

    caplog.set_level(logging.INFO)
    capsys.readouterr()
    again = register(name, runs["again"], min_metrics={"val_auc": 0.5}, run_id="ct-2026-11-01-rerun")
    logged = caplog.text + capsys.readouterr().out
    assert (again["version"], again["adopted_existing"], again["aliases"]) == ("1", True, ["champion"])
    assert again["run_id"] == first_run["run_id"] and again["trained_run_id"] == again_run["run_id"]
    assert again["record_sha256"] == first["record_sha256"]  # the version's record is left as it was
    assert again["lineage"].startswith(f"v1 (run {first_run['run_id']}) has the same lineage")
    assert f"SUMMARY register model={name} version=1 adopted_existing=True" in logged
    assert client.get_run(again_run["run_id"]).data.tags["mlops.registered_as"].startswith(f"models:/{name}/1 ")
    json.dumps({k: v for k, v in again.items() if k != "_context"})
    [event] = again["_context"]["outlet_events"].values()
    assert event.extra["changed"] is False  # nothing moved, and the asset event says so

    retry = register(name, runs["again"], min_metrics={"val_auc": 0.5}, run_id="ct-2026-11-01-rerun", try_number=2)
    assert (retry["version"], retry["adopted_existing"]) == ("1", True)

    changed = register(name, runs["changed"], min_metrics={"val_auc": 0.5}, run_id="ct-2026-11-01-tuned")
    assert (changed["version"], changed["adopted_existing"], changed["aliases"]) == ("2", False, ["challenger"])
    assert "v1 has the same data" in changed["lineage"] and "training config: epochs 2 -> 3" in changed["lineage"]

    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    assert [(e["alias"], e["version"], e["action"]) for e in read_ledger(client, name)] == [
        ("champion", "1", "first-champion"), ("challenger", "2", "candidate")]
