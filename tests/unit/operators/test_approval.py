"""The approval gate as its own module: the policy setting, the evidence a person reads, both gate operators on
real Airflow (HITL ``ApprovalOperator``, DAG serialisation), and what a promotion records from the answer.

tests/unit/operators/test_promotion.py covers the gate in front of a real promotion.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException
from conftest import make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators.approval import (
    APPROVE,
    AutoApproveOperator,
    ModelApprovalOperator,
    approval_gate,
    approval_markdown,
    approval_of,
    approval_policy,
    skip_if_failed,
)

pytestmark = pytest.mark.unit

VERDICT = {
    "passed": True,
    "reasons": ["challenger v2 beats champion v1"],
    "champion_version": "1",
    "evidence_uri": "runs:/abc/evaluation/vs-v1.json",
    "run_url": "http://mlflow.example/#/runs/abc",
    "metrics": {
        "challenger": {"roc_auc": 0.83, "accuracy": 0.75},
        "champion": {"roc_auc": 0.7},
        "primary_metric": "roc_auc",
        "delta": 0.13,
        "ci": [0.11, 0.15],
        "n_boot": 1000,
        "mcnemar_p": 0.0001,
        "holdout_rows": 2000,
    },
}
DATA = {"repo": "data_repo", "rev": "a1b2c3d4e5f6a7b8", "path": "data/customer_events", "md5": "0123abcd"}


@pytest.fixture(autouse=True)
def _mlflow_conn(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": "http://mlflow.example:5000"}}),
    )


@pytest.mark.parametrize(("value", "policy"), [(None, "hitl"), ("hitl", "hitl"), (" AUTO ", "auto"), ("Hitl", "hitl")])
def test_policy_from_configuration(monkeypatch, value, policy):
    if value is None:
        monkeypatch.delenv("AIRFLOW__MLOPS__APPROVAL_POLICY", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_POLICY", value)
    assert approval_policy() == policy


def test_an_unknown_policy_is_refused_at_parse_time(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_POLICY", "everyone")
    with pytest.raises(ValueError, match=r"\[mlops\] approval_policy='everyone' is not one of: hitl, auto"):
        approval_policy()
    with pytest.raises(ValueError, match="approval policy 'sometimes' is not one of: hitl, auto"):
        approval_gate(model_name="m", version="2", verdict=VERDICT, policy="sometimes")


def test_the_gate_follows_the_policy_argument_over_the_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_POLICY", "auto")
    hitl = approval_gate(
        task_id="gate",
        model_name="m",
        version="2",
        verdict=VERDICT,
        policy="hitl",
        response_timeout=timedelta(hours=4),
        alias="canary",
    )
    assert isinstance(hitl, ModelApprovalOperator) and isinstance(hitl, ApprovalOperator)
    assert hitl.task_id == "gate" and hitl.alias == "canary" and hitl.response_timeout == timedelta(hours=4)
    auto = approval_gate(model_name="m", version="2", verdict=VERDICT)
    assert isinstance(auto, AutoApproveOperator) and auto.task_id == "approve_promotion"


def test_markdown_for_a_replacement_and_for_a_first_champion():
    links = {"model version": "http://m/#/models/churn/versions/2", "challenger run": None}
    subject, body = approval_markdown(
        model_name="churn",
        version="2",
        alias="champion",
        verdict=VERDICT,
        dataset_version=DATA,
        drift={"passed": True, "drift_share": 0.1},
        links=links,
    )
    assert subject == "Promote churn v2 to 'champion' (replacing v1)"
    lines = body.splitlines()
    assert lines[0] == f"### {subject}" and "**Evaluation verdict:** PASSED" in lines
    assert "| metric | challenger v2 | champion v1 |" in lines
    assert "| accuracy | 0.7500 | - |" in lines and "| roc_auc | 0.8300 | 0.7000 |" in lines
    assert (
        "**roc_auc improvement:** 0.1300 (95% paired-bootstrap CI [0.1100, 0.1500], n_boot=1000); McNemar p = "
        "0.0001 on 2000 holdout rows"
    ) in lines
    assert "**Data version:** `data/customer_events` rev `a1b2c3d4e5f6` md5 `0123abcd`" in lines
    assert "**Drift status:** no drift (share 0.10, columns [])" in lines
    assert lines[-2:] == [
        "**Evidence:** `runs:/abc/evaluation/vs-v1.json`",
        "- [model version](http://m/#/models/churn/versions/2)",
    ]  # no link without a URL

    first = {"passed": False, "reasons": ["val_auc=0.6 < minimum 0.7"], "evidence_uri": None}
    subject, body = approval_markdown(
        model_name="churn", version="1", alias="champion", verdict=first, dataset_version=None, drift=None, links={}
    )
    assert subject == "Promote churn v1 to 'champion' (first champion)"
    assert "**Evaluation verdict:** FAILED" in body and "- val_auc=0.6 < minimum 0.7" in body
    assert "| metric |" not in body and "Data version" not in body and "Drift status" not in body


def test_a_failed_verdict_skips_with_the_reasons():
    skip_if_failed({"passed": True}, "churn", "2")
    with pytest.raises(
        AirflowSkipException,
        match=r"churn v2 did not pass evaluation \(a; b\): no approval is "
        r"requested and nothing is promoted",
    ):
        skip_if_failed({"passed": False, "reasons": ["a", "b"]}, "churn", "2")
    with pytest.raises(AirflowSkipException, match=r"did not pass evaluation \(\)"):
        skip_if_failed({}, "churn", "2")


def test_the_gate_reads_templated_xcom_text():
    gate = ModelApprovalOperator(
        task_id="approve",
        model_name="churn",
        version=json.dumps({"version": 2}),
        verdict=json.dumps(VERDICT),
        dataset_version=repr(DATA),
        drift=json.dumps(
            {"passed": False, "drift_share": 0.4, "drifted_columns": ["a"], "evidence_uri": "file:///drift.html"}
        ),
    )
    gate.version = {"version": 2}  # what a rendered XCom reference of the register task gives
    version, verdict, subject, body = gate.evidence()
    assert version == "2" and verdict == VERDICT and subject.startswith("Promote churn v2")
    assert "**Drift status:** DRIFT (share 0.40, columns ['a'])" in body
    assert "- [challenger run](http://mlflow.example/#/runs/abc)" in body
    assert "- [drift report](file:///drift.html)" in body
    assert "- [model version](http://mlflow.example:5000/#/models/churn/versions/2)" in body
    bad = ModelApprovalOperator(task_id="a2", model_name="churn", version="2", verdict="[1, 2]")
    with pytest.raises(ValueError, match="verdict must be a dict"):
        bad.evidence()


def test_links_are_a_convenience_never_a_failure(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT")
    gate = AutoApproveOperator(
        task_id="approve", model_name="churn", version="2", verdict=VERDICT, mlflow_conn_id="no_such_connection"
    )
    _, _, _, body = gate.evidence()
    assert body.splitlines()[-1] == "**Evidence:** `runs:/abc/evaluation/vs-v1.json`"


def _logged(caplog, capsys) -> str:
    return caplog.text + capsys.readouterr().out  # task loggers write through structlog to stdout


def test_auto_approval_returns_the_hitl_shape_and_says_nobody_approved(caplog, capsys):
    caplog.set_level(logging.INFO)
    out = AutoApproveOperator(task_id="approve", model_name="churn", version="2", verdict=VERDICT).execute(
        make_context("approve")
    )
    assert out["chosen_options"] == [APPROVE] and out["params_input"] == {} and out["policy"] == "auto"
    assert out["responded_by_user"]["id"] == "policy:auto"
    assert datetime.fromisoformat(out["responded_at"]).tzinfo is not None
    logged = _logged(caplog, capsys)
    assert "[evidence] ### Promote churn v2 to 'champion' (replacing v1)" in logged
    assert "AUTO-APPROVED by policy [mlops] approval_policy=auto" in logged
    recorded = approval_of(out)
    assert recorded["policy"] == "auto" and recorded["approved_by"].startswith("AUTO-APPROVED")


def test_the_person_s_answer_and_a_timeout(caplog, capsys):
    from airflow.providers.standard.exceptions import HITLTimeoutError

    caplog.set_level(logging.INFO)
    gate = ModelApprovalOperator(task_id="approve", model_name="churn", version="2", verdict=VERDICT)
    answer = {
        "chosen_options": [APPROVE],
        "params_input": {},
        "responded_by_user": {"id": "7", "name": ""},
        "responded_at": datetime(2026, 11, 20, 10, tzinfo=UTC),
    }
    result = gate.execute_complete(make_context("approve"), answer)
    assert result["chosen_options"] == [APPROVE]
    assert "decision=Approve by=7 at=2026-11-20 10:00:00+00:00" in _logged(caplog, capsys)  # no name: the id
    with pytest.raises(HITLTimeoutError):
        gate.execute_complete(make_context("approve"), {"error": "no answer in 3 days", "error_type": "timeout"})
    assert "decision=none (timeout): nothing is promoted; rerun the DAG to ask again" in _logged(caplog, capsys)


def test_approval_of_accepts_both_answers_and_refuses_anything_else():
    when = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert approval_of(
        {"chosen_options": [APPROVE], "responded_by_user": {"id": "7", "name": "alice"}, "responded_at": when}
    ) == {"approved_by": "alice", "approved_at": when.isoformat(), "policy": "hitl"}
    assert (
        approval_of(
            json.dumps(
                {
                    "chosen_options": [APPROVE],
                    "responded_by_user": {"id": "7"},
                    "responded_at": "2026-11-20T10:00:00+00:00",
                }
            )
        )["approved_by"]
        == "7"
    )
    assert approval_of({"chosen_options": [APPROVE]})["approved_by"] == "unknown"
    for refused in ({"chosen_options": ["Reject"]}, {"chosen_options": []}, {}):
        with pytest.raises(RegistryError, match=r"the approval task answered .*, not 'Approve': nothing is promoted"):
            approval_of(refused)


def test_both_gates_serialise_with_their_template_fields():
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("approval_dag", schedule=None) as dag:
        approval_gate(
            task_id="hitl_gate",
            model_name="churn",
            version="{{ ti.xcom_pull('register') }}",
            verdict="{{ ti.xcom_pull('evaluate') }}",
            policy="hitl",
        )
        approval_gate(task_id="auto_gate", model_name="churn", version="2", verdict=VERDICT, policy="auto")
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for task_id in ("hitl_gate", "auto_gate"):
        fields = set(restored.get_task(task_id).template_fields)
        assert {"model_name", "version", "alias", "verdict", "dataset_version", "drift"} <= fields
    assert {"subject", "body"} <= set(ModelApprovalOperator.template_fields)
