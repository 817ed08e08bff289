"""The retraining trigger's contract (asset-event extra, alias name) and the guard rails' pure functions.

The operator side (``RetrainGuardOperator`` against a real registry, Airflow's own event accessor) is in
tests/unit/operators/test_monitoring_retrain.py; here every input shape the functions accept, and their errors.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlops_airflow.monitoring.retrain import (
    EXTRA_KEYS,
    LAST_RETRAIN_TAG,
    decide_retrain,
    load_gate_verdict,
    parse_time,
    retrain_alias_name,
    retrain_event_extra,
    trigger_from_events,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
URI = "mlops://monitoring/churn"


def test_constants_and_alias_name():
    assert LAST_RETRAIN_TAG == "mlops.last_retrain_at"
    assert EXTRA_KEYS == ("reason", "kind", "drifted_columns", "drift_share", "quality_drop", "verdict_uri")
    assert retrain_alias_name(URI) == "mlops-retrain::mlops://monitoring/churn"


def test_event_extra_is_small_json_with_every_contract_key():
    extra = retrain_event_extra(
        kind="data_drift",
        reason="dataset drift",
        verdict_uri="file:///v.json",
        drifted_columns=("a", "b"),
        drift_share=0.123456789,
        model_version="4",
        decided_at=NOW,
        dropped=None,
    )
    assert extra == {
        "reason": "dataset drift",
        "kind": "data_drift",
        "drifted_columns": ["a", "b"],
        "drift_share": 0.123457,
        "quality_drop": None,
        "verdict_uri": "file:///v.json",
        "model_version": "4",
        "decided_at": str(NOW),
    }
    assert json.loads(json.dumps(extra)) == extra
    quality = retrain_event_extra(kind="quality", reason="roc_auc dropped", verdict_uri=None, quality_drop="0.16")
    assert set(EXTRA_KEYS) <= set(quality) and quality["quality_drop"] == 0.16 and quality["drift_share"] is None
    assert quality["drifted_columns"] == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (NOW, NOW),
        (datetime(2026, 11, 10, 12, 0), NOW),  # naive = UTC
        ("2026-11-10T12:00:00Z", NOW),
        ("2026-11-10T12:00:00+00:00", NOW),
        ("2026-11-10T13:00:00+01:00", datetime(2026, 11, 10, 13, 0, tzinfo=timezone(timedelta(hours=1)))),
        ("2026-11-10 12:00:00", NOW),
        (int(NOW.timestamp() * 1000), NOW),  # MLflow's epoch milliseconds
        (float(NOW.timestamp() * 1000), NOW),
        (str(int(NOW.timestamp() * 1000)), NOW),
        (" 2026-11-10T12:00:00Z ", NOW),
    ],
)
def test_parse_time(value, expected):
    parsed = parse_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


def test_parse_time_rejects_text_that_is_no_time():
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_gate_verdict_from_every_form(tmp_path: Path):
    verdict = {"passed": True, "reasons": [], "evidence_uri": "file:///r.json"}
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(verdict))
    assert load_gate_verdict(verdict) == verdict and load_gate_verdict(verdict) is not verdict
    assert load_gate_verdict(json.dumps(verdict)) == verdict
    assert load_gate_verdict(repr(verdict)) == verdict  # a dict rendered by Jinja
    assert load_gate_verdict(f"  {json.dumps(verdict)}\n") == verdict
    assert load_gate_verdict(str(path)) == verdict == load_gate_verdict(path.as_uri())
    for empty in (None, "", "None"):
        assert load_gate_verdict(empty) is None


def test_gate_verdict_from_the_object_store(s3_store):
    from mlops_airflow import storage

    verdict = {"passed": False, "reasons": ["3 expectations failed"]}
    uri = storage.write_json(f"{s3_store.root}/validation/gate.json", verdict)
    assert load_gate_verdict(uri) == verdict
    with pytest.raises(ValueError, match=r"data gate verdict file .*none.json.* does not exist"):
        load_gate_verdict(f"{s3_store.root}/validation/none.json")


def test_gate_verdict_never_guesses(tmp_path: Path):
    with pytest.raises(ValueError, match="data gate verdict must be a JSON object, got list"):
        load_gate_verdict('[{"passed": true}]')
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"data gate verdict file .*list.json.* holds list, not a JSON object"):
        load_gate_verdict(str(listed))
    with pytest.raises(ValueError, match=r"data gate verdict file .*missing.json.* does not exist"):
        load_gate_verdict(tmp_path / "missing.json")
    with pytest.raises((ValueError, SyntaxError)):
        load_gate_verdict("{not: valid")
    broken = tmp_path / "broken.json"
    broken.write_text("{oops")
    with pytest.raises(ValueError):
        load_gate_verdict(str(broken))


def _ev(uri: str, when, extra: dict, run: str = "r1", as_mapping: bool = False):
    fields = {
        "asset": {"uri": uri} if as_mapping else SimpleNamespace(uri=uri),
        "extra": extra,
        "source_dag_id": "mlops_monitoring",
        "source_run_id": run,
        "source_task_id": "check_drift",
        "timestamp": when,
    }
    return fields if as_mapping else SimpleNamespace(**fields)


def test_trigger_from_plain_mappings_newest_event_wins_and_duplicates_go():
    older = _ev(
        URI, "2026-11-10T08:00:00Z", {"reason": "concept drift", "kind": "quality"}, run="early", as_mapping=True
    )
    newer = _ev(URI, NOW, {"reason": "dataset drift", "kind": "data_drift"}, run="late")
    from airflow.sdk import Asset, AssetAlias

    # Airflow lists an event reached through an alias under the alias too: counted once.
    trigger = trigger_from_events({Asset(URI): [newer, older], AssetAlias(retrain_alias_name(URI)): [newer]})
    assert trigger["reason"] == "dataset drift"
    assert trigger["triggered_by"] == f"asset {URI} from mlops_monitoring/late/check_drift"
    assert trigger["asset_extra"] == {"reason": "dataset drift", "kind": "data_drift"}
    assert [(e["source_run_id"], e["reason"]) for e in trigger["events"]] == [
        ("early", "concept drift"),
        ("late", "dataset drift"),
    ]
    assert trigger["events"][1]["timestamp"] == NOW.isoformat() and "extra" not in trigger["events"][0]
    json.dumps(trigger)


def test_trigger_without_reason_or_source_still_says_what_fired():
    bare = SimpleNamespace(
        asset=None, extra=None, source_dag_id=None, source_run_id=None, source_task_id=None, timestamp=None
    )
    trigger = trigger_from_events({"mlops://monitoring/other": [bare]})
    assert trigger["reason"] == "asset event on mlops://monitoring/other"
    assert trigger["triggered_by"] == "asset mlops://monitoring/other"
    assert trigger["asset_extra"] == {} and trigger["events"][0]["timestamp"] is None
    for nothing in (None, {}, {URI: []}):
        assert trigger_from_events(nothing) == {
            "reason": "manual trigger (no triggering asset event)",
            "triggered_by": "manual",
            "asset_extra": {},
            "events": [],
        }


def _decide(**kw):
    base = {
        "model_name": "churn",
        "trigger": {
            "reason": "dataset drift",
            "triggered_by": f"asset {URI}",
            "asset_extra": {"kind": "data_drift"},
            "events": [{"x": 1}],
        },
        "gate": {"passed": True},
        "last_retrain_at": None,
        "now": NOW,
        "cooldown": timedelta(hours=6),
    }
    return decide_retrain(**{**base, **kw})


def test_decision_is_json_ready_and_hands_the_reason_on():
    decision = _decide(last_retrain_at=NOW - timedelta(hours=7), last_retrain_source="tag mlops.last_retrain_at")
    assert decision == {
        "proceed": True,
        "blocked_by": [],
        "model_name": "churn",
        "reason": "dataset drift",
        "triggered_by": f"asset {URI}",
        "asset_extra": {"kind": "data_drift"},
        "events": [{"x": 1}],
        "last_retrain_at": (NOW - timedelta(hours=7)).isoformat(),
        "last_retrain_source": "tag mlops.last_retrain_at",
        "cooldown_s": 21600,
        "next_allowed_at": (NOW - timedelta(hours=1)).isoformat(),
        "data_gate": {"passed": True, "evidence_uri": None, "reasons": []},
        "decided_at": NOW.isoformat(),
    }
    json.dumps(decision)
    first = _decide(gate=None)
    assert first["proceed"] and first["data_gate"] is None and first["last_retrain_at"] is None
    assert first["next_allowed_at"] is None and first["last_retrain_source"] is None


def test_a_gate_must_say_passed_true():
    reasons = [f"expectation {i} failed" for i in range(8)]
    for gate in ({"passed": False, "reasons": reasons}, {"passed": None}, {"passed": "true"}, {}):
        decision = _decide(gate=gate)
        assert decision["proceed"] is False
        assert decision["blocked_by"][0].startswith("the latest data gate failed (")
    decision = _decide(gate={"passed": False, "reasons": reasons, "evidence_uri": "file:///g.json"})
    assert (
        "(expectation 0 failed; expectation 1 failed; expectation 2 failed; evidence file:///g.json)"
        in decision["blocked_by"][0]
    )
    assert decision["data_gate"]["reasons"] == reasons[:5]
    assert "no reasons given" in _decide(gate={"passed": False})["blocked_by"][0]


@pytest.mark.parametrize(
    ("cooldown", "ago", "text"),
    [
        (timedelta(days=2), timedelta(days=1), "cool-down 2d; next retraining allowed at {next} (in 1d)"),
        (
            timedelta(hours=6),
            timedelta(hours=1, minutes=30),
            "cool-down 6.0h; next retraining allowed at {next} (in 4.5h)",
        ),
        (timedelta(minutes=30), timedelta(minutes=10), "cool-down 30min; next retraining allowed at {next} (in 20min)"),
        (timedelta(seconds=90), timedelta(seconds=45), "cool-down 2min; next retraining allowed at {next} (in 45s)"),
    ],
)
def test_cooldown_message_in_human_units(cooldown, ago, text):
    last = NOW - ago
    decision = _decide(cooldown=cooldown, last_retrain_at=last)
    (reason,) = decision["blocked_by"]
    assert reason.startswith(f"cool-down: churn was last retrained at {last.isoformat()} (registry), ")
    assert reason.endswith(text.format(next=(last + cooldown).isoformat()))
    assert decision["next_allowed_at"] == (last + cooldown).isoformat()


def test_cooldown_ends_exactly_at_next_allowed():
    assert _decide(last_retrain_at=NOW - timedelta(hours=6))["proceed"] is True
    assert _decide(last_retrain_at=NOW - timedelta(hours=6) + timedelta(seconds=1))["proceed"] is False


def test_manual_runs_skip_the_cooldown_unless_asked():
    manual = {"reason": "manual trigger (no triggering asset event)", "triggered_by": "manual"}
    ok = _decide(trigger=manual, last_retrain_at=NOW)
    assert ok["proceed"] and ok["next_allowed_at"] is None
    assert not _decide(trigger=manual, last_retrain_at=NOW, cooldown_applies_to_manual=True)["proceed"]
    both = _decide(trigger=manual, gate=None, require_gate=True, last_retrain_at=NOW, cooldown_applies_to_manual=True)
    assert [b.split(" ")[0] for b in both["blocked_by"]] == ["no", "cool-down:"]
