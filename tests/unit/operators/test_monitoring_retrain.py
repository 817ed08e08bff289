"""The continuous-training trigger and its guard rails: real Airflow 3 asset-event objects, a real MLflow registry.

The registry is MLflow on a SQLite file (the same store code the server runs, without starting a server); the
triggering events are Airflow's own ``TriggeringAssetEventsAccessor`` of ``AssetEventDagRunReferenceResult``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.retrain import (
    EXTRA_KEYS,
    LAST_RETRAIN_TAG,
    decide_retrain,
    load_gate_verdict,
    retrain_alias_name,
    retrain_event_extra,
    trigger_from_events,
)
from mlops_airflow.operators.monitoring import RetrainGuardOperator

pytestmark = pytest.mark.unit

MODEL = "churn_classifier"
URI = f"mlops://monitoring/{MODEL}"
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def _event(extra: dict[str, Any], when: datetime, run_id: str = "scheduled__2026-11-10") -> Any:
    return AssetEventDagRunReferenceResult(
        asset={"name": URI, "uri": URI, "extra": {}},
        extra=extra,
        source_task_id="check_drift",
        source_dag_id="mlops_monitoring",
        source_run_id=run_id,
        source_map_index=-1,
        source_aliases=[{"name": retrain_alias_name(URI)}],
        timestamp=when,
    )


def _drift_extra(reason: str = "dataset drift: 3 of 5 columns drifted (share 0.60 >= 0.50)") -> dict[str, Any]:
    return retrain_event_extra(
        kind="data_drift", reason=reason, verdict_uri="file:///tmp/drift_verdict.json",
        drifted_columns=["monthly_charges", "support_calls", "payment_delay_days"], drift_share=0.6,
    )


# -- pure functions -----------------------------------------------------------------------------------------------


def test_trigger_reads_airflow_s_triggering_asset_events() -> None:
    older = _event(retrain_event_extra(kind="quality", reason="concept drift: roc_auc dropped 0.160",
                                       verdict_uri="file:///q.json", quality_drop=0.16), NOW - timedelta(hours=2),
                   run_id="older")
    newer = _event(_drift_extra(), NOW)
    events = TriggeringAssetEventsAccessor.build([older, newer])  # each event also sits under its alias

    trigger = trigger_from_events(events)
    assert trigger["reason"].startswith("dataset drift: 3 of 5 columns drifted")
    assert trigger["triggered_by"] == f"asset {URI} from mlops_monitoring/scheduled__2026-11-10/check_drift"
    assert set(EXTRA_KEYS) <= set(trigger["asset_extra"])
    assert trigger["asset_extra"]["drifted_columns"] == ["monthly_charges", "support_calls", "payment_delay_days"]
    assert [e["source_run_id"] for e in trigger["events"]] == ["older", "scheduled__2026-11-10"]
    assert trigger["events"][0]["reason"].startswith("concept drift")
    json.dumps(trigger)  # XCom-ready

    manual = trigger_from_events(None)
    assert manual["triggered_by"] == "manual" and manual["asset_extra"] == {}


def test_decide_blocks_on_failed_gate_and_cooldown() -> None:
    trigger = trigger_from_events(TriggeringAssetEventsAccessor.build([_event(_drift_extra(), NOW)]))
    gate_failed = {"passed": False, "reasons": ["expect_column_values_to_not_be_null(usage_hours): 812 nulls"],
                   "evidence_uri": "file:///validation/result.json"}

    ok = decide_retrain(model_name=MODEL, trigger=trigger, gate={"passed": True},
                        last_retrain_at=NOW - timedelta(days=3), now=NOW, cooldown=timedelta(days=1))
    assert ok["proceed"] is True and ok["blocked_by"] == []
    assert ok["next_allowed_at"] == (NOW - timedelta(days=2)).isoformat()

    blocked = decide_retrain(model_name=MODEL, trigger=trigger, gate=gate_failed,
                             last_retrain_at=NOW - timedelta(hours=5), now=NOW, cooldown=timedelta(days=1),
                             last_retrain_source="version 4 creation time")
    assert blocked["proceed"] is False
    gate_reason, cooldown_reason = blocked["blocked_by"]
    assert gate_reason.startswith("the latest data gate failed (expect_column_values_to_not_be_null(usage_hours)")
    assert "evidence file:///validation/result.json" in gate_reason
    assert cooldown_reason == (
        f"cool-down: {MODEL} was last retrained at {(NOW - timedelta(hours=5)).isoformat()} (version 4 creation "
        f"time), cool-down 1d; next retraining allowed at {(NOW + timedelta(hours=19)).isoformat()} (in 19.0h)"
    )

    manual = trigger_from_events({})
    assert decide_retrain(model_name=MODEL, trigger=manual, gate=None, last_retrain_at=NOW, now=NOW,
                          cooldown=timedelta(days=1))["proceed"] is True
    assert decide_retrain(model_name=MODEL, trigger=manual, gate=None, last_retrain_at=NOW, now=NOW,
                          cooldown=timedelta(days=1), cooldown_applies_to_manual=True)["proceed"] is False
    no_gate = decide_retrain(model_name=MODEL, trigger=trigger, gate=None, last_retrain_at=None, now=NOW,
                             cooldown=timedelta(days=1), require_gate=True)
    assert no_gate["blocked_by"][0].startswith("no data-gate verdict found")


def test_gate_verdict_inputs(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"passed": False, "reasons": ["x"]}))
    assert load_gate_verdict(str(path))["passed"] is False
    assert load_gate_verdict(path.as_uri())["reasons"] == ["x"]
    assert load_gate_verdict("{'passed': True, 'reasons': []}") == {"passed": True, "reasons": []}  # Jinja repr
    assert load_gate_verdict("None") is None and load_gate_verdict(None) is None
    with pytest.raises(ValueError, match="does not exist"):
        load_gate_verdict(str(tmp_path / "nope.json"))


# -- the operator, with a real MLflow registry ------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry')}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, source=str(tmp_path_factory.mktemp("model")))
    client.create_registered_model("tagged_model", tags={LAST_RETRAIN_TAG: "2026-01-01T00:00:00+00:00"})
    client.create_model_version("tagged_model", source=str(tmp_path_factory.mktemp("model2")))
    return uri


def _context(events: list[Any] | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(xcom={}, task_id="retrain_guard")
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    return {"dag": SimpleNamespace(dag_id="mlops_retrain"), "run_id": "asset_triggered__1", "ti": ti,
            "triggering_asset_events": TriggeringAssetEventsAccessor.build(events or [])}


def _guard(registry: str, **kwargs: Any) -> RetrainGuardOperator:
    return RetrainGuardOperator(task_id="retrain_guard", tracking_uri=registry, **kwargs)


def test_guard_skips_within_the_cooldown_of_the_newest_version(registry: str, capsys: pytest.CaptureFixture) -> None:
    context = _context([_event(_drift_extra(), datetime.now(UTC))])
    with pytest.raises(AirflowSkipException, match=r"proceed=False .*cool-down: churn_classifier was last retrained"):
        _guard(registry, model_name=MODEL, cooldown=timedelta(hours=6)).execute(context)
    decision = context["ti"].xcom["decision"]
    assert decision["proceed"] is False and decision["last_retrain_source"] == "version 1 creation time"
    assert decision["reason"].startswith("dataset drift")
    assert "SUMMARY retrain-guard model=churn_classifier proceed=False" in capsys.readouterr().out

    returned = _guard(registry, model_name=MODEL, cooldown=timedelta(hours=6), on_block="return").execute(context)
    assert returned["proceed"] is False


def test_guard_proceeds_and_hands_on_the_reason(registry: str) -> None:
    extra = _drift_extra()
    decision = _guard(registry, model_name=MODEL, cooldown=timedelta(0), data_gate={"passed": True}).execute(
        _context([_event(extra, datetime.now(UTC))])
    )
    assert decision["proceed"] is True
    assert decision["reason"] == extra["reason"] and decision["asset_extra"] == extra
    assert decision["triggered_by"].startswith(f"asset {URI} from mlops_monitoring/")
    assert decision["data_gate"] == {"passed": True, "evidence_uri": None, "reasons": []}

    # The registered-model tag wins over the version's creation time (set by the training step after a retrain).
    tagged = _guard(registry, model_name="tagged_model", cooldown=timedelta(days=7)).execute(
        _context([_event(extra, datetime.now(UTC))])
    )
    assert tagged["proceed"] is True and tagged["last_retrain_source"] == f"tag {LAST_RETRAIN_TAG}"
    # A model not registered yet has never been retrained.
    first = _guard(registry, model_name="brand_new", cooldown=timedelta(days=7)).execute(_context())
    assert first["proceed"] is True and first["last_retrain_at"] is None


def test_guard_blocks_on_a_failed_gate_and_rejects_garbage(registry: str) -> None:
    gate = json.dumps({"passed": False, "reasons": ["3 expectations failed"], "evidence_uri": "file:///v.json"})
    with pytest.raises(AirflowSkipException, match=r"the latest data gate failed \(3 expectations failed"):
        _guard(registry, model_name="brand_new", data_gate=gate).execute(_context())
    with pytest.raises(MonitoringError, match="cannot read the data-gate verdict"):
        _guard(registry, model_name="brand_new", data_gate="[1, 2]").execute(_context())
    with pytest.raises(MonitoringError, match=r"cannot read the last retraining of 'x' from the MLflow registry"):
        RetrainGuardOperator(task_id="g", model_name="x", tracking_uri="http://127.0.0.1:9").execute(_context())


def test_guard_counts_the_cooldown_on_a_simulated_clock(registry: str) -> None:
    """``as_of`` (the demo's simulated day) and a cool-down in hours, both as rendered templates."""
    event = [_event(_drift_extra(), NOW)]
    # tagged_model was last retrained 2026-01-01T00:00Z: 47 h later is within a 48 h cool-down, 49 h is not.
    with pytest.raises(AirflowSkipException, match=r"next retraining allowed at 2026-01-03T00:00:00\+00:00"):
        _guard(registry, model_name="tagged_model", cooldown="48", as_of="2026-01-02T23:00:00+00:00").execute(
            _context(event))
    decision = _guard(registry, model_name="tagged_model", cooldown=48.0, as_of="2026-01-03T01:00:00+00:00").execute(
        _context(event))
    assert decision["proceed"] is True and decision["decided_at"] == "2026-01-03T01:00:00+00:00"
    # Empty as_of = the wall clock (a real deployment); a templated cool-down is checked at execute, not parse.
    assert _guard(registry, model_name="tagged_model", cooldown="24", as_of="").execute(_context(event))["proceed"]
    RetrainGuardOperator(task_id="g", model_name=MODEL, cooldown="{{ params.cooldown_hours }}")
    with pytest.raises(ValueError, match="cooldown must be a timedelta or a number of hours, got 'soon'"):
        _guard(registry, model_name="tagged_model", cooldown="soon")
    rendered_badly = _guard(registry, model_name="tagged_model", cooldown="{{ params.cooldown_hours }}")
    rendered_badly.cooldown = "soon"  # what a bad template renders to
    with pytest.raises(MonitoringError, match="cannot read cooldown='soon'"):
        rendered_badly.execute(_context(event))
    with pytest.raises(ValueError, match="must not be negative"):
        RetrainGuardOperator(task_id="g", model_name=MODEL, cooldown=-1)
