"""Alias moves on a real MLflow registry: under the lock, recorded in the ledger and on the version, idempotent,
reconciled when the alias moved outside the ledger, and taken away (canary rollback) with an entry."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry.aliases import ALIASES, compact_verdict, move_alias, retire_alias
from mlops_airflow.registry.ledger import read_ledger
from mlops_airflow.registry.lock import LOCK_SUFFIX

pytestmark = pytest.mark.unit

APPROVAL = {"approved_by": "alice", "approved_at": "2026-11-20T10:00:00+00:00", "policy": "hitl"}
VERDICT = {
    "passed": True,
    "champion_version": "1",
    "reasons": ["long text"] * 10,
    "metrics": {
        "challenger": {"auc": 0.83},
        "delta": 0.13,
        "ci": [0.11, 0.15],
        "mcnemar_p": 0.0001,
        "holdout_rows": 2000,
    },
}
LOG = logging.getLogger("test.aliases")


def _move(client, name, alias, version, *, run_id="run1", task_id="promote_model", try_number=1, **kw):
    ctx = make_context(task_id, run_id=run_id, try_number=try_number)
    kw.setdefault("approval", APPROVAL)
    return move_alias(client, model_name=name, alias=alias, version=version, context=ctx, log=LOG, **kw)


def _aliases(client, name) -> dict:
    return dict(client.get_registered_model(name).aliases)


def _no_lock(client, name) -> bool:
    return not client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")


def test_aliases_and_compact_verdict():
    assert ALIASES == ("champion", "challenger", "canary", "shadow")
    assert compact_verdict(VERDICT) == {
        "passed": True,
        "challenger": {"auc": 0.83},
        "champion_version": "1",
        "delta": 0.13,
        "ci": [0.11, 0.15],
        "mcnemar_p": 0.0001,
    }
    assert compact_verdict(None) is None and compact_verdict({}) is None
    assert compact_verdict({"passed": False}) == {
        "passed": False,
        "challenger": None,
        "champion_version": None,
        "delta": None,
        "ci": None,
        "mcnemar_p": None,
    }


def test_moves_are_recorded_idempotent_and_clear_other_aliases(registry_client, new_version, model_name):
    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    first, changed = _move(client, name, "champion", v1, action="first-champion", evidence_uri="file:///e1.json")
    assert changed and first["seq"] == 1 and first["previous_version"] is None
    assert {
        k: first[k]
        for k in (
            "model",
            "alias",
            "version",
            "action",
            "approved_by",
            "approved_at",
            "approval_policy",
            "evidence_uri",
            "verdict",
        )
    } == {
        "model": name,
        "alias": "champion",
        "version": v1,
        "action": "first-champion",
        "approved_by": "alice",
        "approved_at": APPROVAL["approved_at"],
        "approval_policy": "hitl",
        "evidence_uri": "file:///e1.json",
        "verdict": None,
    }
    assert first["airflow"] == {"dag_id": "test_dag", "run_id": "run1", "task_id": "promote_model", "try_number": "1"}
    assert _aliases(client, name) == {"champion": v1} and _no_lock(client, name)

    again, changed = _move(client, name, "champion", v1, run_id="other-run")
    assert not changed and again == first  # the version already holds it: no second entry

    _move(client, name, "challenger", v2, action="candidate", task_id="register_model")
    entry, changed = _move(
        client,
        name,
        "champion",
        v2,
        verdict=VERDICT,
        evidence_uri="runs:/x/ev.json",
        clear_aliases=("challenger", "canary"),
        run_id="run2",
    )
    assert changed and entry["previous_version"] == v1 and entry["cleared_aliases"] == ["challenger"]
    assert entry["verdict"] == compact_verdict(VERDICT)
    assert _aliases(client, name) == {"champion": v2}
    ledger = read_ledger(client, name)
    assert [(e["seq"], e["alias"], e["version"], e["action"]) for e in ledger] == [
        (1, "champion", v1, "first-champion"),
        (2, "challenger", v2, "candidate"),
        (3, "champion", v2, "promote"),
        (4, "challenger", v2, "cleared"),
    ]
    assert ledger[3]["note"] == f"v{v2} became champion"
    tags = client.get_model_version(name, v2).tags
    assert tags["mlops.promotion.ledger_seq"] == "3" and json.loads(tags["mlops.promotion.champion"])["seq"] == 3
    assert tags["mlops.promotion.previous"] == v1 and tags["mlops.promotion.approved_by"] == "alice"
    assert client.get_registered_model(name).tags["mlops.ledger.head"] == "4"


def test_a_retried_task_does_not_move_the_alias_back(registry_client, new_version, model_name):
    client, name = registry_client, model_name
    v1, v2, v3 = new_version(name), new_version(name), new_version(name)
    _move(client, name, "champion", v1, run_id="first")
    _move(client, name, "champion", v2, run_id="second")
    _move(client, name, "champion", v3, run_id="third")  # another promotion superseded "second"
    entry, changed = _move(client, name, "champion", v2, run_id="second", try_number=2)
    assert not changed and entry["version"] == v2 and entry["seq"] == 2
    assert _aliases(client, name) == {"champion": v3} and len(read_ledger(client, name)) == 3


def test_only_if_unset_does_not_replace_a_holder(registry_client, new_version, model_name):
    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    _move(client, name, "champion", v1, only_if_unset=True)
    entry, changed = _move(client, name, "champion", v2, only_if_unset=True, run_id="racer")
    assert not changed and entry["version"] == v1 and _aliases(client, name) == {"champion": v1}


def test_a_move_made_outside_the_ledger_is_recorded_first(registry_client, new_version, model_name, caplog):
    caplog.set_level(logging.WARNING, logger="test.aliases")
    client, name = registry_client, model_name
    v1, v2, v3 = new_version(name), new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    client.set_registered_model_alias(name, "champion", v2)  # someone used the MLflow UI
    entry, changed = _move(client, name, "champion", v3, run_id="run2")
    assert changed and entry["previous_version"] == v2
    observed = read_ledger(client, name)[1]
    assert (observed["seq"], observed["action"], observed["version"], observed["previous_version"]) == (
        2,
        "observed",
        v2,
        v1,
    )
    assert observed["approved_by"] == "unknown: the alias was moved outside the ledger"
    assert f"Ledger of {name} reconciled: champion=v{v2} recorded as entry 2" in caplog.text
    assert entry["seq"] == 3


def test_a_move_that_died_before_its_ledger_append_is_recorded_late_from_its_intent(
    registry_client, new_version, model_name
):
    from mlops_airflow.registry import tags

    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    intent = {
        "id": "dead-task-1",
        "model": name,
        "alias": "champion",
        "version": v2,
        "previous_version": v1,
        "action": "promote",
        "at": "2026-11-20T10:00:05+00:00",
        "approved_by": "bob",
        "approved_at": "t",
        "evidence_uri": None,
        "airflow": {"dag_id": "ct", "run_id": "dead", "task_id": "promote_model", "try_number": "1"},
    }
    tags.write_intent(client, name, v2, intent)
    client.set_registered_model_alias(name, "champion", v2)  # ... and the worker died here
    entry, changed = _move(client, name, "champion", v2, run_id="retry")
    assert not changed  # v2 holds it already; the ledger now says so
    late = read_ledger(client, name)[-1]
    assert late == {
        **intent,
        "seq": 2,
        "previous_version": v1,
        "note": "recorded late: the move happened, its ledger append did not",
    }
    assert entry == late


def test_retire_alias_takes_it_away_once(registry_client, new_version, model_name):
    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    _move(client, name, "canary", v2, action="canary")
    ctx = make_context("rollback_canary", run_id="canary-run")
    entry, changed = retire_alias(
        client,
        model_name=name,
        alias="canary",
        context=ctx,
        evidence_uri="runs:/c/canary.json",
        reason="canary auc 0.61 < champion 0.80",
        log=LOG,
    )
    assert changed and _aliases(client, name) == {"champion": v1}
    assert {
        k: entry[k]
        for k in ("seq", "alias", "version", "previous_version", "action", "approval_policy", "evidence_uri", "verdict")
    } == {
        "seq": 3,
        "alias": "canary",
        "version": None,
        "previous_version": v2,
        "action": "rollback",
        "approval_policy": "auto-rollback",
        "evidence_uri": "runs:/c/canary.json",
        "verdict": {"passed": False, "reasons": ["canary auc 0.61 < champion 0.80"]},
    }
    assert entry["approved_by"].startswith("policy: automatic rollback")
    assert entry["airflow"]["task_id"] == "rollback_canary"
    rolled = json.loads(client.get_model_version(name, v2).tags["mlops.promotion.canary.rolled_back"])
    assert rolled == {"seq": 3, "at": entry["at"], "reason": "canary auc 0.61 < champion 0.80"}
    assert retire_alias(client, model_name=name, alias="canary", context=ctx, evidence_uri=None, reason="again") == (
        None,
        False,
    )
    assert len(read_ledger(client, name)) == 3 and _no_lock(client, name)


def test_an_unknown_model_is_a_clear_error_and_leaves_no_lock(registry_client):
    name = "alias_model_that_does_not_exist"
    with pytest.raises(RegistryError, match=f"registered model '{name}' does not exist"):
        _move(registry_client, name, "champion", "1")
    with pytest.raises(RegistryError, match="does not exist"):
        retire_alias(
            registry_client, model_name=name, alias="canary", context=make_context(), evidence_uri=None, reason="r"
        )
    assert _no_lock(registry_client, name)


def _intent(name, alias, version, previous, *, run_id="dead", seq, clear=()):
    entry = {
        "id": f"intent-{run_id}",
        "model": name,
        "alias": alias,
        "version": version,
        "previous_version": previous,
        "action": "promote",
        "at": "2026-11-20T10:00:05+00:00",
        "approved_by": "bob",
        "approved_at": "t",
        "approval_policy": "hitl",
        "evidence_uri": None,
        "verdict": None,
        "airflow": {"dag_id": "test_dag", "run_id": run_id, "task_id": "promote_model", "try_number": "1"},
        "seq": seq,
    }
    return {"entry": entry, "holder": f"test_dag/{run_id}/promote_model#1@gone", "clear": list(clear)}


def test_a_holder_killed_after_the_move_is_completed_once_by_its_retry(registry_client, new_version, model_name):
    from mlops_airflow.registry.ledger import LEDGER_PENDING, write_pending

    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    _move(client, name, "challenger", v2, action="candidate", task_id="register_model")
    write_pending(client, name, _intent(name, "champion", v2, v1, seq=3, clear=["challenger"]))
    client.set_registered_model_alias(name, "champion", v2)  # ... and the holder was killed here
    entry, changed = _move(client, name, "champion", v2, run_id="dead", try_number=2, clear_aliases=("challenger",))
    assert changed  # the killed try announced nothing: its retry does
    assert (entry["seq"], entry["id"], entry["previous_version"]) == (3, "intent-dead", v1)
    assert entry["note"].startswith("completed by test_dag/dead/promote_model#2@")
    assert _aliases(client, name) == {"champion": v2}  # the challenger alias was cleared by the completion
    ledger = read_ledger(client, name)
    assert [(e["seq"], e["alias"], e["version"], e["action"]) for e in ledger] == [
        (1, "champion", v1, "promote"),
        (2, "challenger", v2, "candidate"),
        (3, "champion", v2, "promote"),
        (4, "challenger", v2, "cleared"),
    ]
    assert LEDGER_PENDING not in client.get_registered_model(name).tags
    assert client.get_model_version(name, v2).tags["mlops.promotion.ledger_seq"] == "3"
    # A later try of the same task: nothing moves and no entry is written; it announces the move again (at least
    # once: Airflow may not have recorded the earlier try's event), with the same ledger seq.
    again, changed = _move(client, name, "champion", v2, run_id="dead", try_number=3)
    assert changed and again["seq"] == 3 and len(read_ledger(client, name)) == 4


def test_a_holder_killed_before_the_move_leaves_no_entry(registry_client, new_version, model_name, caplog):
    from mlops_airflow.registry.ledger import LEDGER_PENDING, write_pending

    caplog.set_level(logging.WARNING, logger="test.aliases")
    client, name = registry_client, model_name
    v1, v2, v3 = new_version(name), new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    write_pending(client, name, _intent(name, "champion", v2, v1, seq=2))  # killed before the alias moved
    entry, changed = _move(client, name, "champion", v3, run_id="other")
    assert changed and (entry["seq"], entry["version"], entry["previous_version"]) == (2, v3, v1)
    assert [e["version"] for e in read_ledger(client, name)] == [v1, v3]
    assert "so it stopped before the move; nothing moved, nothing recorded" in caplog.text
    assert LEDGER_PENDING not in client.get_registered_model(name).tags
    assert "mlops.promotion.champion" not in client.get_model_version(name, v2).tags  # no trace of a move on v2


def test_a_holder_killed_after_the_append_gets_no_second_entry(registry_client, new_version, model_name):
    from mlops_airflow.registry.ledger import append_entry, write_pending

    client, name = registry_client, model_name
    v1, v2, v3 = new_version(name), new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    _move(client, name, "challenger", v2, action="candidate", task_id="register_model")
    pending = write_pending(client, name, _intent(name, "champion", v2, v1, seq=3, clear=["challenger"]))
    client.set_registered_model_alias(name, "champion", v2)
    append_entry(client, name, 2, pending["entry"])  # killed after the append, before the clearing
    entry, changed = _move(client, name, "champion", v3, run_id="next")
    assert changed and entry["seq"] == 5 and entry["previous_version"] == v2
    ledger = read_ledger(client, name)
    assert [(e["seq"], e["alias"], e["version"], e["action"]) for e in ledger] == [
        (1, "champion", v1, "promote"),
        (2, "challenger", v2, "candidate"),
        (3, "champion", v2, "promote"),
        (4, "challenger", v2, "cleared"),
        (5, "champion", v3, "promote"),
    ]
    assert _aliases(client, name) == {"champion": v3}


def test_a_canary_rollback_killed_after_the_removal_is_completed(registry_client, new_version, model_name):
    from mlops_airflow.registry.ledger import write_pending

    client, name = registry_client, model_name
    v1, v2 = new_version(name), new_version(name)
    _move(client, name, "champion", v1)
    _move(client, name, "canary", v2, action="canary")
    intent = _intent(name, "canary", None, v2, run_id="rb", seq=3)
    intent["entry"].update(action="rollback", approval_policy="auto-rollback")
    write_pending(client, name, {**intent, "reason": "worse"})
    client.delete_registered_model_alias(name, "canary")  # killed here
    ctx = make_context("promote_model", run_id="rb", try_number=2)
    entry, changed = retire_alias(client, model_name=name, alias="canary", context=ctx, evidence_uri=None,
                                  reason="worse", log=LOG)
    assert changed and (entry["seq"], entry["action"], entry["previous_version"]) == (3, "rollback", v2)
    rolled = json.loads(client.get_model_version(name, v2).tags["mlops.promotion.canary.rolled_back"])
    assert rolled["seq"] == 3 and rolled["reason"] == "worse"
    assert len(read_ledger(client, name)) == 3
