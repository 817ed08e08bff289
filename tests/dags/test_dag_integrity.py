"""Every DAG imports cleanly, has tags and retries >= 2, and no cycles (the Astro template's checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.mark.unit
def test_no_import_errors(dagbag):
    assert not dagbag.import_errors, f"DAG import errors: {dagbag.import_errors}"
    assert dagbag.dags, "no DAG found in dags/"


@pytest.mark.unit
def test_reference_dag_present(dagbag):
    dag = dagbag.dags.get("mlops_continuous_training")
    assert dag is not None
    assert {"land_batch", "validate_batch", "version_dataset", "materialize_features", "build_training_set",
            "train_model", "register_model", "check_drift", "summarize"} <= set(dag.task_ids)


@pytest.mark.unit
def test_tags_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries} (< 2)"


@pytest.mark.unit
def test_no_cycles(dagbag):
    from airflow.sdk.definitions.dag import DAG

    for dag_id, dag in dagbag.dags.items():
        # topological_sort raises on a cycle; check_cycle is the Airflow 3 helper
        assert isinstance(dag, DAG)
        order = dag.topological_sort()
        assert len(order) == len(dag.tasks), dag_id


@pytest.mark.unit
def test_dags_parse_without_connections(dagbag, monkeypatch):
    """DAG files read no connection or Variable at parse time (they parse with none defined)."""
    for key in list(__import__("os").environ):
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            monkeypatch.delenv(key)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors
