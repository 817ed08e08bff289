"""Operator extra links: the URL a task persists under the link's XCom key, read back by the link.

Two readers: the Task SDK link (``get_link``, through the supervisor's XCom channel) and the API server's
``XComOperatorLink`` that DAG serialisation puts in its place (it reads the same key from the database).
"""

from __future__ import annotations

import pytest
from airflow.sdk import BaseOperatorLink
from conftest import make_context
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink

pytestmark = pytest.mark.unit

LINKS = {MlflowRunLink: "MLflow run", MlflowModelVersionLink: "MLflow model version", EvidenceLink: "Evidence report"}


class _Comms:
    """The supervisor's side of ``GetXCom`` (a task process talks to it instead of the database)."""

    def __init__(self, values: dict):
        self.values, self.asked = values, []

    def send(self, msg):
        from airflow.sdk.execution_time.comms import XComResult

        self.asked.append(msg)
        return XComResult(key=msg.key, value=self.values.get((msg.dag_id, msg.run_id, msg.task_id, msg.key)))


def _key(task_id: str = "register_model"):
    from airflow.sdk.types import TaskInstanceKey

    return TaskInstanceKey(dag_id="ct", task_id=task_id, run_id="run1", try_number=1, map_index=-1)


@pytest.mark.parametrize(("cls", "name"), list(LINKS.items()))
def test_names_and_distinct_xcom_keys(cls, name):
    link = cls()
    assert isinstance(link, BaseOperatorLink) and link.name == name
    assert link.xcom_key == f"_link_{cls.__name__}"
    assert len({c().xcom_key for c in LINKS}) == 3


def test_persist_pushes_the_url_under_the_link_s_key_and_skips_empty_ones():
    ctx = make_context("register_model")
    MlflowRunLink.persist(ctx, "http://mlflow:5000/#/experiments/1/runs/abc")
    MlflowModelVersionLink.persist(ctx, "http://mlflow:5000/#/models/churn/versions/2")
    EvidenceLink.persist(ctx, None)
    EvidenceLink.persist(ctx, "")
    assert ctx["ti"].xcom == {
        "_link_MlflowRunLink": "http://mlflow:5000/#/experiments/1/runs/abc",
        "_link_MlflowModelVersionLink": "http://mlflow:5000/#/models/churn/versions/2",
    }


def test_get_link_reads_the_persisted_url_back(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    url = "http://mlflow:5000/#/models/churn/versions/2"
    comms = _Comms(
        {
            ("ct", "run1", "register_model", "_link_MlflowModelVersionLink"): url,
            ("ct", "run1", "register_model", "_link_EvidenceLink"): {"not": "a url"},
        }
    )
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    assert MlflowModelVersionLink().get_link(None, ti_key=_key()) == url
    assert comms.asked[-1].key == "_link_MlflowModelVersionLink" and comms.asked[-1].task_id == "register_model"
    assert MlflowRunLink().get_link(None, ti_key=_key()) == ""  # nothing persisted
    assert EvidenceLink().get_link(None, ti_key=_key()) == ""  # not a string: no link rather than garbage


def test_serialised_operators_keep_name_and_key_for_the_api_server():
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization
    from mlops_airflow.operators.registry import RegisterModelOperator

    assert {type(link) for link in RegisterModelOperator.operator_extra_links} == {
        MlflowModelVersionLink,
        MlflowRunLink,
    }
    with DAG("links_dag", schedule=None) as dag:
        RegisterModelOperator(
            task_id="register_model", model_name="churn", training={}, training_set={}, dataset_version={}
        )
    data = DagSerialization.to_dict(dag)
    (task,) = data["dag"]["tasks"]
    assert task["__var"]["_operator_extra_links"] == {
        "MLflow model version": "_link_MlflowModelVersionLink",
        "MLflow run": "_link_MlflowRunLink",
    }
    restored = DagSerialization.from_dict(data).get_task("register_model")
    assert {(link.name, link.xcom_key) for link in restored.operator_extra_links} == {
        ("MLflow model version", "_link_MlflowModelVersionLink"),
        ("MLflow run", "_link_MlflowRunLink"),
    }
