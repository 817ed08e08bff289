"""The reference DAGs end to end on a fresh, isolated local stack: a SHORT scenario of what `make demo` runs.

``scripts/local_stack.py demo --scenario include/scenario/short.json`` (4 days, covariate shift 0.3 and concept
drift 1.0 from day 3, 36 h cool-down) with its own stack folder and MLflow port: day 1 trains the first champion
through the CT DAG, the monitoring DAG runs daily, day 3's feature drift emits the retraining asset event (its
prediction drift is reported, informative only), the CT run it triggers trains, evaluates, auto-approves and
promotes a challenger; on day 4 the labels of day 3 (served by v1, no longer champion) show concept drift, which
is reported but raises no retraining event for v2. Then checks the registry: champion lineage (tags,
reproducibility record with the retraining reason), the ledger, the HTML summary; and that a second run changes
nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TRAIN_PYTHON, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo"),
]
SPEC = ROOT / "include" / "scenario" / "short.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({"MLOPS_LOCAL_DIR": str(local), "MLOPS_MLFLOW_PORT": str(free_port())})
    yield local, env
    subprocess.run([sys.executable, str(ROOT / "scripts" / "local_stack.py"), "stop"], env=env, check=False)


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_stack.py"), "demo", "--scenario", str(SPEC)],
        env=env, capture_output=True, text=True, timeout=1500,
    )


def test_short_scenario_drift_retrains_and_promotes_with_lineage(stack):
    local, env = stack
    proc = _demo(env)
    scenario_log = local / "logs" / "scenario.log"
    tail = scenario_log.read_text(errors="replace")[-3000:] if scenario_log.exists() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:] + tail
    out = proc.stdout
    result = json.loads((local / "data" / "scenario" / "short" / "result.json").read_text())
    days = json.loads((local / "data" / "scenario" / "short" / "state.json").read_text())["days"]
    assert [d["n"] for d in days] == [1, 2, 3, 4]

    # Day 1: the first champion through the CT DAG; no drift against its own training data.
    assert days[0]["ct"][0]["trigger"].startswith("manual") and days[0]["ct"][0]["aliases"] == ["champion"]
    assert days[0]["monitoring"]["drift"]["passed"] is True and days[0]["monitoring"]["quality"] is None
    pred1 = days[0]["monitoring"]["prediction_drift"]
    assert pred1["passed"] is True and pred1["own_reference"] is True and pred1["score"] < 1e-9
    # Day 2: nothing happens (no drift, day 1's labels show the expected quality), no retraining.
    assert days[1]["monitoring"]["drift"]["passed"] is True and days[1]["monitoring"]["quality"]["passed"] is True
    assert days[1]["ct"] == [] and days[1]["monitoring"]["retrain_events"] == []
    pred2 = days[1]["monitoring"]["prediction_drift"]
    assert pred2["passed"] is True and pred2["reference_day"] == "2026-11-01" and pred2["own_reference"] is False
    # Day 3: drift -> retraining event -> CT (triggered by the asset event) -> evaluated, approved, promoted.
    mon3 = days[2]["monitoring"]
    assert mon3["drift"]["passed"] is False and mon3["drift"]["drift_share"] >= 0.5
    assert [e["kind"] for e in mon3["retrain_events"]] == ["data_drift"]  # prediction drift emits none
    assert mon3["prediction_drift"]["passed"] is False and mon3["prediction_drift"]["reference_day"] == "2026-11-01"
    assert mon3["quality"]["passed"] is True  # day 2's labels, before the drift
    ct3 = days[2]["ct"][0]
    assert ct3["trigger"].startswith("data_drift") and ct3["proceed"] is True
    assert ct3["reason"].startswith("dataset drift:")
    assert ct3["evaluation"]["passed"] is True and ct3["promotion"]["version"] == ct3["version"] == "2"
    assert ct3["promotion"]["previous_version"] == "1" and "AUTO-APPROVED" in str(ct3["promotion"]["approved_by"])
    # Day 4: v2 serves (its first window: its own prediction reference); day 3's labels, served by v1, show
    # concept drift about v1, which is no longer champion: reported, but no retraining event for v2.
    mon4 = days[3]["monitoring"]
    assert mon4["champion"] == "2" and mon4["quality"]["served_by"] == "1"
    assert mon4["prediction_drift"]["passed"] is True and mon4["prediction_drift"]["own_reference"] is True
    assert mon4["quality"]["concept_drift"] is True and mon4["quality"]["quality_drop"] > 0.05
    # v2 was trained on the 2-day training window (day 3's drifted batch only, not diluted by day 1): against its
    # own training set, day 4's window (same distribution) does not drift.
    assert mon4["drift"]["passed"] is True, mon4["drift"]
    assert mon4["quality"]["retired"] is True and mon4["quality"]["serving_version"] == "2"
    assert mon4["retrain_events"] == [] and days[3]["ct"] == []

    # The printed timeline and the self-contained HTML summary.
    for text in ("day 3 2026-11-03", "-> retrain event (data_drift)", "promote champion v1 -> v2",
                 "PREDICTION DRIFT (informative", "CONCEPT DRIFT",
                 "served by v1, no longer champion (v2 is): no retrain event for v2"):
        assert text in out, (text, out[-3000:])
    page = Path(result["html"]).read_text()
    assert "0.00 vs itself" in page and "prediction drift" in page
    assert page.count("<svg") == 2 and "promoted v2" in page and "http" not in page.split("<pre>")[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")

    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{env['MLOPS_MLFLOW_PORT']}")
    mv = client.get_model_version_by_alias("churn_classifier", "champion")
    assert mv.version == "2"
    tags = mv.tags
    assert tags["mlops.dag_id"] == "mlops_continuous_training" and tags["mlops.promotion.alias"] == "champion"
    assert tags["mlops.retrain.kind"] == "data_drift" and tags["mlops.retrain.reason"].startswith("dataset drift")
    assert tags["mlops.retrain.triggered_by"].startswith("asset mlops://monitoring/churn_classifier from "
                                                         "mlops_monitoring/")
    record_path = client.download_artifacts(mv.run_id, "reproducibility/record.json", str(local))
    record = json.loads(Path(record_path).read_text())
    assert record["dataset"]["md5"] == tags["mlops.dataset_md5"]
    assert record["training_set"]["hash"] == tags["mlops.training_set_hash"]
    assert record["features"]["feature_service"] == "churn_model_v1" and record["runtime"]["device"] == "cpu"
    assert record["model"] == {"name": "churn_classifier", "version": "2"}
    assert record["trigger"]["kind"] == "data_drift" and record["trigger"]["drift_share"] >= 0.5
    assert record["training_set"]["entity_window"] == {"start": "2026-11-02T00:00:00+00:00",
                                                       "end": "2026-11-04T00:00:00+00:00"}
    assert record["trigger"]["decided_at"] == "2026-11-03T23:59:59+00:00"  # the simulated clock
    v1 = client.get_model_version("churn_classifier", "1")
    assert v1.tags["mlops.retrain.triggered_by"] == "manual"
    assert client.get_registered_model("churn_classifier").tags["mlops.last_retrain_at"] == record["trigger"][
        "decided_at"]
    ledger = result["registry"]["ledger"]
    moves = [(e["alias"], e["action"], e["version"]) for e in ledger]
    assert moves[0] == ("champion", "first-champion", "1") and ("champion", "promote", "2") in moves
    assert ("challenger", "candidate", "2") in moves and result["registry"]["aliases"] == {"champion": "2"}

    # Idempotent: a second run trains, registers and promotes nothing; it re-prints the timeline.
    start = time.monotonic()
    again = _demo(env)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "every day of the scenario is done already" in again.stdout and "promote champion v1 -> v2" in again.stdout
    assert time.monotonic() - start < 120
    second = json.loads((local / "data" / "scenario" / "short" / "result.json").read_text())
    assert second["registry"] == result["registry"] and second["ran_days"] == 0
