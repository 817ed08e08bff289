"""Approval gate, PromoteModelOperator (ledger, Asset event, retries, races), validated rollback.

Real MLflow server and real trained models (test_registry_support.py); the rollback re-scores a model
through score.py (cached per logged model for the session).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from conftest import TRAIN_PYTHON, make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators.promotion import (
    AutoApproveOperator,
    ModelApprovalOperator,
    PromoteModelOperator,
    RollbackModelOperator,
    ValidateRollbackOperator,
    approval_gate,
    approval_of,
    read_ledger,
)
from unit.operators.test_registry_support import (
    holdout,
    mlflow_conn_json,
    needs_training_env,
    register,
    scores_dir,
    trained,
    unique,
)

VERDICT = {"passed": True, "reasons": ["challenger v2 passed"], "evidence_uri": "runs:/abc/evaluation/vs-v1.json",
           "champion_version": "1", "metrics": {
               "challenger": {"auc": 0.83, "accuracy": 0.75, "logloss": 0.53},
               "champion": {"auc": 0.70, "accuracy": 0.66, "logloss": 0.62}, "primary_metric": "auc",
               "delta": 0.13, "ci": [0.11, 0.15], "n_boot": 1000, "mcnemar_p": 0.0001, "holdout_rows": 2000}}
APPROVAL = {"chosen_options": ["Approve"], "params_input": {}, "responded_at": "2026-11-20T10:00:00+00:00",
            "responded_by_user": {"id": "7", "name": "alice"}}
DATA = {"repo": "data_repo", "rev": "a1b2c3d4e5f6a7b8", "path": "data/customer_events", "md5": "0123abcd"}
DRIFT = {"passed": False, "drift_share": 0.2, "drifted_columns": ["usage_hours"], "evidence_uri": "file:///r.html"}


# ---------------------------------------------------------------------------------- the gate
@pytest.mark.unit
def test_gate_is_hitl_by_default_and_auto_only_by_configuration(monkeypatch):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    monkeypatch.delenv("AIRFLOW__MLOPS__APPROVAL_POLICY", raising=False)
    gate = approval_gate(model_name="m", version="2", verdict=VERDICT)
    assert isinstance(gate, ApprovalOperator) and isinstance(gate, ModelApprovalOperator)
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_POLICY", "auto")
    assert isinstance(approval_gate(task_id="g2", model_name="m", version="2", verdict=VERDICT), AutoApproveOperator)
    monkeypatch.setenv("AIRFLOW__MLOPS__APPROVAL_POLICY", "yolo")
    with pytest.raises(ValueError, match="not one of: hitl, auto"):
        approval_gate(task_id="g3", model_name="m", version="2", verdict=VERDICT)


@pytest.mark.unit
def test_gate_body_shows_the_evidence_and_a_failed_verdict_asks_nobody(monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json("http://mlflow.example:5000"))

    gate = ModelApprovalOperator(task_id="approve", model_name="churn", version={"version": "2"}, verdict=VERDICT,
                                 dataset_version=DATA, drift=DRIFT)
    version, _, subject, body, _ = gate.evidence()
    assert version == "2" and subject == "Promote churn v2 to 'champion' (replacing v1)"
    for needle in ("PASSED", "| auc | 0.8300 | 0.7000 |", "improvement:** 0.1300", "CI [0.1100, 0.1500]",
                   "McNemar p = 0.0001", "rev `a1b2c3d4e5f6`", "md5 `0123abcd`", "DRIFT", "usage_hours",
                   "runs:/abc/evaluation/vs-v1.json", "[model version](http://mlflow.example:5000/#/models/churn/"):
        assert needle in body, needle
    failed = {**VERDICT, "passed": False, "reasons": ["auc=0.5 < minimum 0.7"]}
    with pytest.raises(AirflowSkipException, match="did not pass evaluation .*auc=0.5"):
        ModelApprovalOperator(task_id="a2", model_name="churn", version="2", verdict=failed).execute(make_context())
    with pytest.raises(AirflowSkipException):
        AutoApproveOperator(task_id="a3", model_name="churn", version="2", verdict=failed).execute(make_context())


@pytest.mark.unit
def test_auto_policy_says_loudly_that_nobody_approved(caplog, capsys):
    caplog.set_level(logging.INFO)
    out = AutoApproveOperator(task_id="approve", model_name="churn", version="2", verdict=VERDICT).execute(
        make_context("approve"))
    logged = caplog.text + capsys.readouterr().out
    assert "AUTO-APPROVED by policy [mlops] approval_policy=auto" in logged and "SUMMARY approval" in logged
    assert approval_of(out)["approved_by"].startswith("AUTO-APPROVED") and approval_of(out)["policy"] == "auto"
    assert approval_of(APPROVAL) == {"approved_by": "alice", "approved_at": "2026-11-20T10:00:00+00:00",
                                     "policy": "hitl", "reason": None}
    with pytest.raises(RegistryError, match="answered \\['Reject'\\], not 'Approve'"):
        approval_of({**APPROVAL, "chosen_options": ["Reject"]})


@pytest.mark.unit
def test_a_persons_answer_ends_the_gate_log_with_one_summary_line(caplog, capsys):
    from datetime import UTC, datetime

    from airflow.providers.standard.exceptions import HITLRejectException

    caplog.set_level(logging.INFO)
    gate = ModelApprovalOperator(task_id="approve", model_name="churn", version={"version": "2"}, verdict=VERDICT,
                                 fail_on_reject=True)
    answer = {"chosen_options": ["Approve"], "params_input": {}, "responded_by_user": {"id": "7", "name": "alice"},
              "responded_at": datetime(2026, 11, 20, 10, tzinfo=UTC)}
    out = gate.execute_complete(make_context("approve"), dict(answer))
    assert out["chosen_options"] == ["Approve"]
    logged = caplog.text + capsys.readouterr().out
    assert "SUMMARY approval model=churn version=2 alias=champion decision=Approve by=alice" in logged
    # A rejection needs a reason (it goes into the ledger: test_approval.py); without one the task fails and asks.
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="alice rejected churn v2 without a reason"):
        gate.execute_complete(make_context("approve"), {**answer, "chosen_options": ["Reject"]})
    assert HITLRejectException  # fail_on_reject still applies once the rejection is recorded


# ------------------------------------------------------------------------- real registry
@pytest.fixture
def models(mlflow_server, monkeypatch):
    if needs_training_env.args[0]:
        pytest.skip(needs_training_env.kwargs["reason"])
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(mlflow_server))
    return trained(mlflow_server)


@pytest.fixture
def client(models):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    return MlflowHook().get_client()


def _promote(name: str, version: str, *, run_id: str = "promote-run", try_number: int = 1, **kwargs) -> tuple:
    ctx = make_context("promote_model", run_id=run_id, try_number=try_number)
    kwargs.setdefault("verdict", {**VERDICT, "version": version})
    op = PromoteModelOperator(task_id="promote_model", model_name=name, version={"version": version},
                              approval=APPROVAL, **kwargs)
    return op.execute(ctx), ctx


def _extra_version(client, name: str, which: tuple) -> str:
    """One more version of a real logged model (what a second training of it would register)."""
    training = which[0]
    return client.create_model_version(name, training["model_uri"], training["run_id"],
                                       model_id=training["model_uri"].removeprefix("models:/")).version


@pytest.mark.integration
def test_promote_records_ledger_version_tags_and_asset_event_and_retries_are_noops(models, client):
    name = unique("promote")
    register(name, models["weak"], min_metrics={"val_auc": 0.5})
    register(name, models["good"], min_metrics={"val_auc": 0.5})  # becomes challenger
    results = [_promote(name, "2", try_number=n) for n in (1, 2, 3)]
    first, ctx = results[0]
    assert first["changed"] and first["previous_version"] == "1" and first["approved_by"] == "alice"
    # Retries of the same task instance move nothing and write no entry; they announce the move again (at least
    # once: Airflow records an earlier try's event only if that try succeeded), always with the same ledger seq.
    assert [(r["changed"], r["ledger_seq"]) for r, _ in results] == [(True, 3), (True, 3), (True, 3)]
    assert client.get_registered_model(name).aliases == {"champion": "2"}  # challenger cleared
    ledger = read_ledger(client, name)
    assert [(e["alias"], e["version"], e["action"]) for e in ledger] == [
        ("champion", "1", "first-champion"), ("challenger", "2", "candidate"), ("champion", "2", "promote"),
        ("challenger", "2", "cleared")]
    entry = ledger[2]
    assert entry["previous_version"] == "1" and entry["evidence_uri"] == VERDICT["evidence_uri"]
    assert entry["approved_at"] == APPROVAL["responded_at"] and entry["verdict"]["ci"] == [0.11, 0.15]
    tags = client.get_model_version(name, "2").tags
    assert tags["mlops.promotion.approved_by"] == "alice" and tags["mlops.promotion.previous"] == "1"
    assert tags["mlops.promotion.evidence_uri"] == VERDICT["evidence_uri"] and tags["mlops.promotion.ledger_seq"] == "3"
    assert json.loads(tags["mlops.promotion.champion"])["seq"] == 3
    (event,) = ctx["outlet_events"].items()
    assert event[0].uri == f"mlflow://models/{name}"
    assert event[1].extra == {"changed": True, "alias": "champion", "version": "2", "previous_version": "1",
                              "action": "promote", "at": entry["at"], "approved_by": "alice",
                              "approved_at": APPROVAL["responded_at"], "evidence_uri": VERDICT["evidence_uri"],
                              "seq": 3}
    assert ctx["ti"].xcom["_link_MlflowModelVersionLink"].endswith(f"/models/{name}/versions/2")
    assert ctx["ti"].xcom["_link_LedgerEntryLink"].endswith(f"/#/models/{name}")  # the tags hold the ledger
    print("LEDGER ENTRY", json.dumps(entry, sort_keys=True))

    # A task retried after another promotion moved the alias on does not move it back.
    third = _extra_version(client, name, models["good"])
    _promote(name, third, run_id="other-run")
    again, _ = _promote(name, "2", try_number=4)
    assert not again["changed"] and client.get_registered_model(name).aliases["champion"] == third


@pytest.mark.integration
def test_two_racing_promotions_leave_ledger_and_alias_consistent_and_never_no_champion(models, client):
    name = unique("race")
    register(name, models["weak"], min_metrics={"val_auc": 0.5})
    v2, v3 = _extra_version(client, name, models["good"]), _extra_version(client, name, models["weak"])
    stop, gaps, errors = threading.Event(), [], []

    def watch() -> None:  # the alias must exist at every moment
        from mlops_airflow.hooks.mlflow_registry import MlflowHook

        c = MlflowHook().get_client()
        while not stop.is_set():
            if "champion" not in c.get_registered_model(name).aliases:
                gaps.append(time.monotonic())

    def promote(version: str) -> None:
        try:
            _promote(name, version, run_id=f"race-{version}")
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    watcher = threading.Thread(target=watch)
    watcher.start()
    racers = [threading.Thread(target=promote, args=(v,)) for v in (v2, v3)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    stop.set()
    watcher.join()
    assert not errors and not gaps
    ledger = [e for e in read_ledger(client, name) if e["alias"] == "champion"]
    assert [e["version"] for e in ledger][0] == "1" and sorted(e["version"] for e in ledger[1:]) == sorted([v2, v3])
    assert ledger[2]["previous_version"] == ledger[1]["version"] and ledger[1]["previous_version"] == "1"
    assert client.get_registered_model(name).aliases["champion"] == ledger[-1]["version"]
    assert [e["seq"] for e in read_ledger(client, name)] == list(range(1, len(read_ledger(client, name)) + 1))
    assert not client.search_registered_models(f"name = '{name}.promotion-lock'")  # lock released


@pytest.mark.integration
def test_rollback_revalidates_the_previous_champion_then_moves_back_through_gate_and_ledger(models, client):
    name = unique("rollback")
    register(name, models["good"], min_metrics={"val_auc": 0.5})
    register(name, models["weak"], min_metrics={"val_auc": 0.5})
    _promote(name, "2")  # (a bad promotion: the weak model)

    refused = ValidateRollbackOperator(task_id="validate_rollback", model_name=name, holdout_path=holdout(),
                                       min_metrics={"auc": 0.999}, output_dir=str(scores_dir()),
                                       python=str(TRAIN_PYTHON))
    with pytest.raises(RegistryError, match=rf"rollback of {name}@champion to v1 refused: on current data it fails "
                                            r"auc=0\.\d+ < minimum 0\.999"):
        refused.execute(make_context("validate_rollback"))
    assert client.get_registered_model(name).aliases["champion"] == "2"

    validation = ValidateRollbackOperator(task_id="validate_rollback", model_name=name, holdout_path=holdout(),
                                          min_metrics={"auc": 0.7}, output_dir=str(scores_dir()),
                                          python=str(TRAIN_PYTHON)).execute(
        make_context("validate_rollback"))
    assert validation["passed"] and validation["version"] == "1" and validation["champion_version"] == "2"
    approval = AutoApproveOperator(task_id="approve_rollback", model_name=name, version=validation["version"],
                                   verdict=validation).execute(make_context("approve_rollback"))
    ctx = make_context("rollback")
    result = RollbackModelOperator(task_id="rollback", model_name=name, validation=validation,
                                   approval=approval).execute(ctx)
    assert result["changed"] and result["version"] == "1" and result["previous_version"] == "2"
    assert client.get_registered_model(name).aliases["champion"] == "1"
    last = read_ledger(client, name)[-1]
    assert last["action"] == "rollback" and last["evidence_uri"] == validation["evidence_uri"]
    assert list(ctx["outlet_events"].values())[0].extra["action"] == "rollback"


@pytest.mark.integration
def test_promote_refuses_a_version_without_model_artifact_and_a_missing_version(models, client):
    name = unique("badpromote")
    register(name, models["good"], min_metrics={"val_auc": 0.5})
    run_id = models["good"][0]["run_id"]
    broken = client.create_model_version(name, f"runs:/{run_id}/no_such_model", run_id).version
    with pytest.raises(RegistryError, match=rf"{name} v{broken}: the model artifact .* is missing"):
        _promote(name, broken)
    with pytest.raises(RegistryError, match=rf"{name} has no version '99'"):
        _promote(name, "99")
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert [e["action"] for e in read_ledger(client, name)] == ["first-champion"]


@pytest.mark.integration
def test_a_held_lock_times_out_clearly_and_an_expired_one_is_broken(models, client):
    name = unique("lock")
    register(name, models["good"], min_metrics={"val_auc": 0.5})
    second = _extra_version(client, name, models["weak"])
    lock = f"{name}.promotion-lock"
    client.create_registered_model(lock, tags={"mlops.lock.token": "t1", "mlops.lock.owner": "dag/run/task#1@host",
                                               "mlops.lock.expires_at": "2999-01-01T00:00:00+00:00"})
    with pytest.raises(RegistryError, match=r"another promotion of .* holds the lock .* \(owner dag/run/task#1@host\) "
                                            r"for over 1s; nothing was moved"):
        _promote(name, second, lock_timeout_s=1)
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    client.set_registered_model_tag(lock, "mlops.lock.expires_at", "2000-01-01T00:00:00+00:00")  # its holder died
    result, _ = _promote(name, second)
    assert result["changed"] and client.get_registered_model(name).aliases == {"champion": second}
    assert not client.search_registered_models(f"name = '{lock}'")
