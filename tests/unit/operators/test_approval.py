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
    assert "| holdout metric | challenger v2 | champion v1 |" in lines
    assert "| accuracy | 0.7500 | - |" in lines and "| roc_auc | 0.8300 | 0.7000 |" in lines
    assert "**Holdout:** 2000 labelled rows neither model trained on" in lines
    assert (
        "**roc_auc improvement:** 0.1300 (95% paired-bootstrap CI [0.1100, 0.1500], n_boot=1000); McNemar p = "
        "0.0001"
    ) in lines
    assert "**Data version:** `data/customer_events` rev `a1b2c3d4e5f6` md5 `0123abcd`" in lines
    assert ("**Drift of the new batch against the challenger's training set:** no drift (share 0.10, columns [])"
            in lines)
    assert "**Champion v1 in serving:** no monitoring verdict recorded yet" in lines
    assert "WARNING" not in body
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
    assert "| holdout metric |" not in body and "Data version" not in body and "Drift of" not in body
    assert "in serving" not in body  # no champion, no serving drift to show


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


def test_a_refused_challenger_skips_with_one_summary_line_naming_the_reason(caplog):
    """Issue #15: a refusal is a visibly distinct state (skipped, the reason in the SUMMARY), not a green no-op."""
    import logging

    log = logging.getLogger("test.approval.skip")
    verdict = {"passed": False, "outcome": "refused", "reasons": ["challenger v2: auc=0.61 < minimum 0.7"],
               "evidence_uri": "runs:/abc/evaluation/vs-v1.json"}
    with caplog.at_level(logging.INFO, logger="test.approval.skip"), pytest.raises(AirflowSkipException):
        skip_if_failed(verdict, "churn", "2", log)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SUMMARY")]
    assert line == ("SUMMARY approval model=churn version=2 decision=skipped outcome=refused "
                    "reason='challenger v2: auc=0.61 < minimum 0.7' evidence=runs:/abc/evaluation/vs-v1.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.approval.skip"), pytest.raises(AirflowSkipException):
        skip_if_failed({"passed": False}, "churn", "3", log, "promote")
    assert [r.getMessage() for r in caplog.records] == [
        "SUMMARY promote model=churn version=3 decision=skipped outcome=refused reason='' evidence=None"]


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
    version, verdict, subject, body, warnings = gate.evidence()
    assert version == "2" and verdict == VERDICT and subject.startswith("Promote churn v2") and warnings == []
    assert "**Drift of the new batch against the challenger's training set:** DRIFT (share 0.40, columns ['a'])" in body
    assert "- [challenger run](http://mlflow.example/#/runs/abc)" in body
    assert "drift report" not in body  # a file:// URI is not a link a person can open from the UI
    assert "- [champion v1](http://mlflow.example:5000/#/models/churn/versions/1)" in body
    assert "- [model version](http://mlflow.example:5000/#/models/churn/versions/2)" in body
    bad = ModelApprovalOperator(task_id="a2", model_name="churn", version="2", verdict="[1, 2]")
    with pytest.raises(ValueError, match="verdict must be a dict"):
        bad.evidence()


def test_links_are_a_convenience_never_a_failure(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT")
    gate = AutoApproveOperator(
        task_id="approve", model_name="churn", version="2", verdict=VERDICT, mlflow_conn_id="no_such_connection"
    )
    _, _, _, body, _ = gate.evidence()
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
    ) == {"approved_by": "alice", "approved_at": when.isoformat(), "policy": "hitl", "reason": None}
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


# ------------------------------------------------------------------ approval that decides (issue #15 item 3)
DEGENERATE = {
    **VERDICT,
    "metrics": {
        "challenger": {"auc": 0.999, "accuracy": 0.998}, "champion": {"auc": 0.999, "accuracy": 0.998},
        "primary_metric": "auc", "delta": 0.0, "ci": [0.0, 0.0], "n_boot": 1000, "holdout_rows": 500,
        "mcnemar_p": 1.0, "mcnemar": {"b_champion_only_correct": 0, "c_challenger_only_correct": 0, "p_value": 1.0},
    },
}


def test_auto_policy_never_approves_degenerate_evidence(caplog, capsys):
    caplog.set_level(logging.INFO)
    gate = AutoApproveOperator(task_id="approve", model_name="churn", version="2", verdict=DEGENERATE,
                               drift={"passed": False, "drift_share": 0.8, "drifted_columns": ["a"]})
    with pytest.raises(AirflowSkipException, match=r"NOT auto-approved: the evaluation evidence for churn v2 cannot "
                                                   r"decide a promotion \(no discordant pairs"):
        gate.execute(make_context("approve"))
    logged = _logged(caplog, capsys)
    assert "decision=refused by=policy:auto" in logged and "AUTO-APPROVED" not in logged
    assert "[evidence] **WARNING: this evidence cannot decide the promotion**" in logged


def test_hitl_request_is_assigned_asks_a_reason_and_rejects_on_timeout(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVERS", "alice, bob")
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_TIMEOUT_HOURS", "12")
    gate = approval_gate(task_id="gate", model_name="churn", version="2", verdict=VERDICT, policy="hitl")
    assert gate.assigned_users == [{"id": "alice", "name": "alice"}, {"id": "bob", "name": "bob"}]
    assert gate.defaults == ["Reject"] and gate.response_timeout == timedelta(hours=12)
    assert "reason" in gate.serialized_params
    # The task's params also hold the DAG's params (Airflow merges them): the form still asks only for the reason.
    from airflow.sdk import DAG, Param

    with DAG("d_hitl", schedule=None, params={"day": Param(None, type=["null", "string"])}):  # merged at init too
        in_dag = approval_gate(task_id="gate", model_name="churn", version="2", verdict=VERDICT, policy="hitl")
    assert set(in_dag.serialized_params) == {"reason"}
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVERS", "")
    assert ModelApprovalOperator(task_id="g2", model_name="m", version="2", verdict=VERDICT).assigned_users is None


def test_a_rejection_needs_a_reason_and_lands_in_the_ledger_once(mlflow_server, monkeypatch, caplog, capsys):
    from airflow.sdk.exceptions import AirflowFailException
    from mlflow import MlflowClient
    from mlops_airflow.registry.ledger import ledger_from_tags, previous_holder

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    client = MlflowClient(tracking_uri=mlflow_server)
    name = f"reject-{datetime.now(UTC).strftime('%H%M%S%f')}"
    client.create_registered_model(name)
    gate = ModelApprovalOperator(task_id="approve", model_name=name, version="2", verdict=VERDICT)
    when = datetime(2026, 11, 20, 10, tzinfo=UTC)
    answer = {"chosen_options": ["Reject"], "params_input": {"reason": ""},
              "responded_by_user": {"id": "7", "name": "alice"}, "responded_at": when}
    with pytest.raises(AirflowFailException, match="alice rejected .* without a reason; nothing is promoted"):
        gate.execute_complete(make_context("approve"), answer)
    assert ledger_from_tags(client.get_registered_model(name).tags) == []

    answer["params_input"] = {"reason": "holdout too small for this traffic"}
    for try_number in (1, 2):  # a retry of the same task instance writes no second entry
        ctx = make_context("approve", try_number=try_number)
        gate.execute_complete(ctx, answer)
        # the answer is in XCom even though a rejection skips the downstream tasks by raising (the run summary)
        pushed = ctx["ti"].xcom["return_value"]
        assert pushed["chosen_options"] == ["Reject"] and pushed["params_input"]["reason"].startswith("holdout")
    ledger = ledger_from_tags(client.get_registered_model(name).tags)
    assert [(e["action"], e["version"], e["rejected_by"], e["note"]) for e in ledger] == [
        ("rejected", "2", "alice", "holdout too small for this traffic")]
    assert ledger[0]["at"] == when.isoformat() and ledger[0]["seq"] == 1
    assert previous_holder(client, name) is None  # a rejection never counts as an alias holder
    assert "decision=Reject by=alice" in _logged(caplog, capsys)
