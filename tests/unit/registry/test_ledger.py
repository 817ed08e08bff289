"""The promotion ledger: its one parser (pure), its writer and readers against a real registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.registry.ledger import (
    LEDGER_HEAD,
    LEDGER_PREFIX,
    MAX_TAG_VALUE,
    append_entry,
    event_extra,
    last_entry,
    ledger_from_tags,
    ledger_head,
    previous_holder,
    promotion_history,
    read_ledger,
)

pytestmark = pytest.mark.unit


def _tag(seq: int, entry) -> tuple[str, str]:
    return f"{LEDGER_PREFIX}{seq:06d}", entry if isinstance(entry, str) else json.dumps(entry)


def test_ledger_from_tags_orders_by_seq_and_keeps_unreadable_entries():
    tags = dict(
        [
            _tag(10, {"seq": 10, "alias": "champion", "version": "3"}),
            _tag(2, {"seq": 2, "alias": "champion", "version": "2"}),
            _tag(1, {"alias": "champion", "version": "1"}),  # no seq: the tag's number
            _tag(3, "{not json"),
            _tag(4, "[1, 2]"),
            _tag(5, {"seq": "x", "alias": "canary"}),
            (LEDGER_HEAD, "10"),
            ("mlops.ledger.note", "{}"),
            ("other", "1"),
        ]
    )
    ledger = ledger_from_tags(tags)
    assert [int(e["seq"]) for e in ledger] == [1, 2, 3, 4, 5, 10]
    assert ledger[0] == {"alias": "champion", "version": "1", "seq": 1}
    assert ledger[2] == {"seq": 3, "action": "unreadable", "raw": "{not json"}
    assert ledger[3] == {"seq": 4, "action": "unreadable", "raw": "[1, 2]"}
    assert ledger[4] == {"seq": 5, "alias": "canary"}
    assert ledger_from_tags({}) == []
    assert len(ledger_from_tags(dict([_tag(1, "x" * 1000)]))[0]["raw"]) == 200


def test_last_entry_and_head():
    ledger = [
        {"seq": 1, "alias": "champion", "version": "1"},
        {"seq": 2, "alias": "challenger", "version": "2"},
        {"seq": 3, "alias": "champion", "version": "2", "previous_version": "1"},
        {"seq": 4, "alias": "challenger", "version": "2", "action": "cleared"},
    ]
    assert last_entry(ledger, "champion")["seq"] == 3
    assert last_entry(ledger, "challenger")["seq"] == 2  # a cleared entry did not give the alias to anyone
    assert last_entry(ledger, "canary") is None
    assert ledger_head({LEDGER_HEAD: "4"}, ledger) == 4
    assert ledger_head({LEDGER_HEAD: "2"}, ledger) == 4  # a move died between its entry and the head
    assert ledger_head({LEDGER_HEAD: "9"}, ledger) == 9
    assert ledger_head({}, []) == 0 and ledger_head({LEDGER_HEAD: ""}, []) == 0


def test_append_read_and_previous_holder_on_a_real_model(registry_client, new_version, model_name):
    client = registry_client
    new_version(model_name)
    assert read_ledger(client, model_name) == [] and previous_holder(client, model_name) is None
    first = append_entry(
        client,
        model_name,
        0,
        {"alias": "champion", "version": "1", "previous_version": None, "action": "first-champion"},
    )
    second = append_entry(
        client,
        model_name,
        first["seq"],
        {"alias": "champion", "version": "2", "previous_version": "1", "action": "promote"},
    )
    assert (first["seq"], second["seq"]) == (1, 2)
    tags = client.get_registered_model(model_name).tags
    assert tags[LEDGER_HEAD] == "2" and json.loads(tags[f"{LEDGER_PREFIX}000002"]) == second
    assert read_ledger(client, model_name) == [first, second]
    assert previous_holder(client, model_name) == "1" and previous_holder(client, model_name, "canary") is None
    with pytest.raises(RegistryError, match="registered model 'missing_ledger_model' does not exist"):
        read_ledger(client, "missing_ledger_model")


def test_an_oversized_entry_is_shortened_to_fit_one_tag(registry_client, new_version, model_name):
    new_version(model_name)
    entry = {
        "alias": "champion",
        "version": "1",
        "note": "n" * 3000,
        "approved_by": "a" * 3000,
        "verdict": {"passed": True, "reasons": ["r" * 100] * 20},
    }
    written = append_entry(registry_client, model_name, 0, entry)
    assert written["verdict"] == {"passed": True, "truncated": True}
    assert written["note"] == "n" * 400 + "..." and written["approved_by"] == "a" * 400 + "..."
    stored = registry_client.get_registered_model(model_name).tags[f"{LEDGER_PREFIX}000001"]
    assert len(stored) <= MAX_TAG_VALUE and json.loads(stored) == written
    assert read_ledger(registry_client, model_name) == [written]


def test_promotion_history_merges_ledger_and_version_tags_newest_first():
    model_tags = dict(
        [
            _tag(
                1,
                {
                    "seq": 1,
                    "alias": "champion",
                    "version": 2,
                    "previous_version": 1,
                    "action": "promote",
                    "at": "2026-11-02T00:00:00+00:00",
                    "approved_by": "alice",
                    "evidence_uri": "runs:/e/v.json",
                    "airflow": {"dag_id": "ct", "run_id": "run2", "task_id": "promote"},
                },
            ),
            _tag(2, "{broken"),
            _tag(
                3,
                {
                    "seq": 3,
                    "alias": "canary",
                    "version": "3",
                    "at": "2026-11-03T00:00:00+00:00",
                    "note": "canary",
                    "airflow": "not a mapping",
                },
            ),
        ]
    )
    first = SimpleNamespace(
        version="1",
        tags={
            "mlops.promotion.alias": "champion",
            "mlops.promotion.at": "2026-11-01T00:00:00+00:00",
            "mlops.promotion.approved_by": "policy:first-champion",
            "mlops.promotion.dag_run": "ct/run1",
        },
    )
    already = SimpleNamespace(
        version="2", tags={"mlops.promotion.alias": "champion", "mlops.promotion.at": "2026-11-02T00:00:00+00:00"}
    )
    untagged = SimpleNamespace(version="4", tags=None)
    rows = promotion_history(model_tags, [first, already, untagged])
    assert [(r["seq"], r["alias"], r["version"], r["source"]) for r in rows] == [
        (3, "canary", "3", "ledger"),
        (1, "champion", "2", "ledger"),
        (None, "champion", "1", "version tags"),
        (2, None, None, "ledger"),
    ]
    promote = rows[1]
    assert promote == {
        "seq": 1,
        "at": "2026-11-02T00:00:00+00:00",
        "alias": "champion",
        "version": "2",
        "previous_version": "1",
        "action": "promote",
        "approved_by": "alice",
        "evidence_uri": "runs:/e/v.json",
        "dag_run": "ct/run2",
        "note": None,
        "source": "ledger",
    }
    assert rows[0]["action"] == "promote" and rows[0]["dag_run"] is None and rows[0]["note"] == "canary"
    assert rows[2]["dag_run"] == "ct/run1" and rows[2]["note"] is None
    assert rows[3]["action"] == "unreadable" and rows[3]["note"] == "{broken"
    assert promotion_history({}, []) == []


def test_event_extra_is_the_asset_event_contract():
    entry = {
        "seq": 3,
        "alias": "champion",
        "version": "2",
        "previous_version": "1",
        "action": "promote",
        "at": "t",
        "approved_by": "alice",
        "approved_at": "t0",
        "evidence_uri": "e",
        "airflow": {"x": 1},
        "verdict": {"passed": True},
    }
    assert event_extra(entry, True) == {
        "changed": True,
        "alias": "champion",
        "version": "2",
        "previous_version": "1",
        "action": "promote",
        "at": "t",
        "approved_by": "alice",
        "approved_at": "t0",
        "evidence_uri": "e",
        "seq": 3,
    }
    assert event_extra({}, False) == {
        "changed": False,
        **dict.fromkeys(
            (
                "alias",
                "version",
                "previous_version",
                "action",
                "at",
                "approved_by",
                "approved_at",
                "evidence_uri",
                "seq",
            )
        ),
    }
