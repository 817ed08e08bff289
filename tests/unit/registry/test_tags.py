"""Promotion tags on model versions (``mlops.promotion.*``), written to and read back from a real registry."""

from __future__ import annotations

import json

import pytest
from mlops_airflow.registry.tags import (
    PREFIX,
    promotion_from_version_tags,
    read_intent,
    write_intent,
    write_recorded,
    write_rolled_back,
)

pytestmark = pytest.mark.unit

ENTRY = {
    "id": "e1",
    "model": "m",
    "alias": "champion",
    "version": "2",
    "previous_version": "1",
    "action": "promote",
    "at": "2026-11-20T10:00:05+00:00",
    "approved_by": "alice",
    "approved_at": "2026-11-20T10:00:00+00:00",
    "evidence_uri": "runs:/abc/evaluation/vs-v1.json",
    "airflow": {"dag_id": "ct", "run_id": "run1", "task_id": "promote_model", "try_number": "1"},
}


def test_intent_then_recorded_then_rolled_back(registry_client, new_version, model_name):
    client = registry_client
    version = new_version(model_name)
    write_intent(client, model_name, version, ENTRY)
    tags = client.get_model_version(model_name, version).tags
    assert json.loads(tags["mlops.promotion.champion"]) == ENTRY
    assert {k: v for k, v in tags.items() if k.startswith(PREFIX) and k != "mlops.promotion.champion"} == {
        "mlops.promotion.alias": "champion",
        "mlops.promotion.action": "promote",
        "mlops.promotion.at": "2026-11-20T10:00:05+00:00",
        "mlops.promotion.approved_by": "alice",
        "mlops.promotion.approved_at": "2026-11-20T10:00:00+00:00",
        "mlops.promotion.previous": "1",
        "mlops.promotion.evidence_uri": "runs:/abc/evaluation/vs-v1.json",
        "mlops.promotion.dag_run": "ct/run1",
    }
    assert read_intent(client, model_name, version, "champion") == ENTRY

    recorded = {**ENTRY, "seq": 7}
    write_recorded(client, model_name, version, recorded)
    tags = client.get_model_version(model_name, version).tags
    assert (
        tags["mlops.promotion.ledger_seq"] == "7" and read_intent(client, model_name, version, "champion") == recorded
    )

    write_rolled_back(
        client, model_name, version, "canary", {"seq": 8, "at": "2026-11-21T00:00:00+00:00"}, "auc dropped 0.1"
    )
    assert json.loads(client.get_model_version(model_name, version).tags["mlops.promotion.canary.rolled_back"]) == {
        "seq": 8,
        "at": "2026-11-21T00:00:00+00:00",
        "reason": "auc dropped 0.1",
    }

    # What a person reads in the MLflow UI becomes a history row.
    row = promotion_from_version_tags(version, client.get_model_version(model_name, version).tags)
    assert row == {
        "at": "2026-11-20T10:00:05+00:00",
        "alias": "champion",
        "version": version,
        "previous_version": "1",
        "action": "promote",
        "approved_by": "alice",
        "evidence_uri": "runs:/abc/evaluation/vs-v1.json",
        "dag_run": "ct/run1",
    }


def test_a_first_champion_intent_has_no_previous_and_no_evidence(registry_client, new_version, model_name):
    version = new_version(model_name)
    write_intent(
        registry_client,
        model_name,
        version,
        {**ENTRY, "previous_version": None, "evidence_uri": None, "approved_by": None, "approved_at": None},
    )
    tags = registry_client.get_model_version(model_name, version).tags
    assert tags["mlops.promotion.previous"] == "none" and tags["mlops.promotion.evidence_uri"] == "none"
    assert tags["mlops.promotion.approved_by"] == "None"
    row = promotion_from_version_tags(version, tags)
    assert row["previous_version"] is None and row["evidence_uri"] is None


def test_read_intent_is_none_when_unknown(registry_client, new_version, model_name):
    version = new_version(model_name)
    assert read_intent(registry_client, model_name, version, "champion") is None
    registry_client.set_model_version_tag(model_name, version, "mlops.promotion.shadow", "{garbled")
    assert read_intent(registry_client, model_name, version, "shadow") is None
    assert read_intent(registry_client, model_name, "99", "champion") is None
    assert read_intent(registry_client, "no_such_model_z", "1", "champion") is None


def test_history_row_from_flat_tags_of_older_promotions():
    assert promotion_from_version_tags("1", {}) is None
    assert promotion_from_version_tags("1", {"mlops.promotion.at": "x"}) is None  # no alias: nothing moved
    legacy = {
        "mlops.promotion.alias": "champion",
        "mlops.promotion.at": "2026-11-01T00:00:00+00:00",
        "mlops.promotion.approved_by": "policy:first-champion",
        "mlops.promotion.previous": "",
        "mlops.promotion.evidence": '{"metrics": {"val_auc": 0.8}}',
        "mlops.promotion.dag_run": "ct/run1",
    }
    assert promotion_from_version_tags(1, legacy) == {
        "at": "2026-11-01T00:00:00+00:00",
        "alias": "champion",
        "version": "1",
        "previous_version": None,
        "action": "promote",
        "approved_by": "policy:first-champion",
        "evidence_uri": '{"metrics": {"val_auc": 0.8}}',
        "dag_run": "ct/run1",
    }
    both = {**legacy, "mlops.promotion.evidence_uri": "file:///e.json", "mlops.promotion.action": "first-champion"}
    row = promotion_from_version_tags("1", both)
    assert row["evidence_uri"] == "file:///e.json" and row["action"] == "first-champion"


# ------------------------------------------------------------------------------ what a version predicts
def test_task_tags_and_model_task_from_tags_then_metadata(registry, registry_client, new_version, model_name,
                                                          tmp_path):
    from mlops_airflow.exceptions import RegistryError
    from mlops_airflow.operators.evaluation import resolve_task
    from mlops_airflow.registry.tags import LABEL_TAG, TASK_TYPE_TAG, model_task, task_tags

    assert task_tags("classification", None) == {TASK_TYPE_TAG: "binary_classification"}
    assert task_tags("regression", "target") == {TASK_TYPE_TAG: "regression", LABEL_TAG: "target"}

    tagged = new_version(model_name)
    for key, value in task_tags("regression", "target").items():
        registry_client.set_model_version_tag(model_name, tagged, key, value)
    info = model_task(registry_client, model_name, tagged)
    assert (info["task_type"], info["label"], info["source"]) == ("regression", "target",
                                                                  {"task_type": "tags", "label": "tags"})
    assert resolve_task(registry.hook, model_name, tagged, task_type=None, label_column=None)[:2] \
        == ("regression", "target")

    # A version without the tags: its MLmodel metadata (written by the training helper) answers.
    run_id = registry.client.create_run(registry.experiment_id).info.run_id  # set-up: a raw client
    folder = tmp_path / "with_meta"
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "metadata:\n  task_type: regression\n  label: y\n  entity_columns: [row_id]\n  features: [a, b]\n")
    registry.client.log_artifacts(run_id, str(folder), "model")
    version = registry_client.create_model_version(model_name, f"runs:/{run_id}/model", run_id).version
    bare = model_task(registry_client, model_name, version)
    assert bare["task_type"] is None and bare["label"] is None
    meta = model_task(registry_client, model_name, version, registry.hook.settings.tracking_uri)
    assert (meta["task_type"], meta["label"], meta["entity_columns"], meta["features"]) == (
        "regression", "y", ["row_id"], ["a", "b"])
    assert meta["source"]["label"] == "metadata"

    # Neither tags nor metadata: the task type defaults to classification, the label is an error naming it.
    nothing = new_version(model_name)
    task, label, source = resolve_task(registry.hook, model_name, nothing, task_type=None,
                                       label_column="outcome")
    assert task == "binary_classification" and source["task_type"].startswith("default")
    with pytest.raises(RegistryError, match="no label column .*pass label_column="):
        resolve_task(registry.hook, model_name, nothing, task_type=None, label_column=None)
