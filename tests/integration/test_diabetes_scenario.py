"""The regression example end to end on a fresh, isolated local stack: ``include/scenario/diabetes_short.json``.

``scripts/local_stack.py demo --scenario include/scenario/diabetes_short.json`` (3 days, covariate shift 2.0 of
bmi, bp and s5 from day 2, a 1-day training window) with its own stack folder and MLflow port: day 1 trains the
first champion through ``mlops_diabetes_ct`` (scikit-learn, in the venv of ``include/diabetes/requirements.txt``,
no torch), ``mlops_diabetes_monitoring`` runs daily; day 2's feature drift emits the retraining asset event, the
CT run it triggers trains a challenger, evaluates it against the champion on a fresh holdout (regression: RMSE,
paired bootstrap and paired t-test), auto-approves and promotes it. Every scoring step (evaluation, batch
scoring, quality) runs in the model's own training environment, found from its training run. Then the
reproduce DAG rebuilds the champion's training set from its record and checks the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
SPEC = ROOT / "include" / "scenario" / "diabetes_short.json"
MODEL = "diabetes_regressor"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({"MLOPS_LOCAL_DIR": str(local), "MLOPS_MLFLOW_PORT": str(free_port()),
                # The model's venv (keyed by its requirements' sha256) is shared between stacks: built once.
                "AIRFLOW__MLOPS__TRAINING_ENVS_DIR": os.environ.get(
                    "MLOPS_TRAINING_ENVS_DIR", str(ROOT / ".local" / "training_envs"))})
    yield local, env
    subprocess.run([sys.executable, str(ROOT / "scripts" / "local_stack.py"), "stop"], env=env, check=False)


def _stack(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "local_stack.py"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_diabetes_scenario_drift_retrains_and_promotes_a_regressor(stack):
    local, env = stack
    proc = _stack(env, "demo", "--scenario", str(SPEC))
    scenario_log = local / "logs" / "scenario.log"
    tail = scenario_log.read_text(errors="replace")[-4000:] if scenario_log.exists() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:] + tail
    out = proc.stdout
    days = json.loads((local / "data" / "scenario" / "diabetes_short" / "state.json").read_text())["days"]
    assert [d["n"] for d in days] == [1, 2, 3]

    # Day 1: the first champion (val_rmse under the spec's 70), no drift against its own training set.
    ct1 = days[0]["ct"][0]
    assert ct1["trigger"].startswith("manual") and ct1["aliases"] == ["champion"] and ct1["version"] == "1"
    assert ct1["metric"] == "val_rmse" and ct1["metric_value"] < 70
    assert ct1["entrypoint"] == "include/diabetes/train.py"
    assert days[0]["monitoring"]["drift"]["passed"] is True and days[0]["monitoring"]["quality"] is None
    assert days[0]["monitoring"]["prediction_drift"]["column"] == "prediction"

    # Day 2: the covariate shift drifts bmi, bp, s5 (3 of 10: the spec's drift_share_threshold 0.3) ->
    # retraining event -> CT -> evaluation (regression: rmse, paired t) -> promotion of the challenger.
    mon2 = days[1]["monitoring"]
    assert mon2["drift"]["passed"] is False, mon2["drift"]
    assert {"bmi", "bp", "s5"} <= set(mon2["drift"]["drifted_columns"]) and mon2["drift"]["drift_share"] >= 0.3
    assert [e["kind"] for e in mon2["retrain_events"]] == ["data_drift"]
    assert mon2["quality"]["metric"] == "rmse" and mon2["quality"]["passed"] is True  # day 1's labels, no shift
    ct2 = days[1]["ct"][0]
    assert ct2["trigger"].startswith("data_drift") and ct2["proceed"] is True, ct2
    assert ct2["reason"].startswith("dataset drift:")
    assert ct2["evaluation"]["passed"] is True, ct2["evaluation"]
    assert ct2["promotion"]["version"] == ct2["version"] == "2" and ct2["promotion"]["previous_version"] == "1"
    assert "AUTO-APPROVED" in str(ct2["promotion"]["approved_by"])
    # Each version's data lineage: its DVC revision and md5, and its training-set hash.
    assert ct1["data"]["path"] == ct2["data"]["path"] == "data/diabetes"
    assert ct1["data"]["rev"] != ct2["data"]["rev"] and ct1["training_set_hash"] != ct2["training_set_hash"]

    # Day 3: v2 serves; day 2's labels (served by v1, no longer champion) are judged but emit no event for v2.
    mon3 = days[2]["monitoring"]
    assert mon3["champion"] == "2" and mon3["quality"]["served_by"] == "1" and mon3["quality"]["retired"] is True
    assert mon3["drift"]["passed"] is True, mon3["drift"]  # v2 trained on the shifted day: no drift against it
    assert mon3["retrain_events"] == [] and days[2]["ct"] == []

    for text in ("day 2 2026-11-02", "-> retrain event (data_drift)", "promote champion v1 -> v2",
                 "rmse delta=", "val_rmse=", "rmse=", "  data   v1: data/diabetes rev ",
                 "  data   v2: data/diabetes rev ",
                 f"training set {ct2['training_set_hash'][:16]}", f"md5 {ct2['data']['md5']}"):
        assert text in out, (text, out[-3000:])
    result = json.loads((local / "data" / "scenario" / "diabetes_short" / "result.json").read_text())
    page = Path(result["html"]).read_text()
    assert "diabetes_regressor" in page and "Model versions: data lineage" in page and ct2["training_set_hash"][
        :16] in page

    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{env['MLOPS_MLFLOW_PORT']}")
    mv = client.get_model_version_by_alias(MODEL, "champion")
    assert mv.version == "2"
    assert mv.tags["mlops.task_type"] == "regression" and mv.tags["mlops.label"] == "target"
    assert mv.tags["mlops.dag_id"] == "mlops_diabetes_ct" and mv.tags["mlops.retrain.kind"] == "data_drift"

    # The evaluation evidence: a regression verdict on rmse with the paired t-test (no McNemar).
    evidence_path = client.download_artifacts(mv.run_id, "evaluation", str(local / "evidence"))
    evidence = [json.loads(p.read_text()) for p in Path(evidence_path).glob("*.json")]
    verdict = next(e for e in evidence if e.get("task_type") == "regression")
    assert verdict.get("primary_metric", "rmse") == "rmse" and "paired_t" in json.dumps(verdict)
    assert "mcnemar" not in json.dumps(verdict).lower()

    # The record names the code that trained it (include/diabetes/train.py and its sha256) and its environment.
    record_path = client.download_artifacts(mv.run_id, "reproducibility/record.json", str(local))
    record = json.loads(Path(record_path).read_text())
    train_py = ROOT / "include" / "diabetes" / "train.py"
    assert record["code"]["entrypoint"] == "include/diabetes/train.py"
    assert record["code"]["training_entrypoint_sha256"] == hashlib.sha256(train_py.read_bytes()).hexdigest()
    requirements = ROOT / "include" / "diabetes" / "requirements.txt"
    req_sha = hashlib.sha256(requirements.read_bytes()).hexdigest()
    assert record["code"]["training_lock_sha256"] == req_sha
    assert record["code"]["requirements"] == "include/diabetes/requirements.txt"
    assert record["task"]["task_type"] == "regression" and record["features"]["feature_service"] == "diabetes_v1"
    assert record["dataset"]["md5"] == ct2["data"]["md5"] and record["training_set"]["hash"] == ct2[
        "training_set_hash"]

    # The training environment: the venv of the model's requirements, scikit-learn and no torch.
    python = Path(env["AIRFLOW__MLOPS__TRAINING_ENVS_DIR"]) / req_sha[:16] / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, sklearn; "
                            "print(u.find_spec('torch') is None)"], capture_output=True, text=True, check=False)
    assert probe.stdout.strip() == "True", probe.stdout + probe.stderr
    log_text = scenario_log.read_text(errors="replace")
    assert f"in its training environment {python}" in log_text  # scoring found the model's venv by its hash

    # Reproduce the champion: its training set rebuilt from the record (DVC revision, Feast repo of the model).
    repro = _stack(env, "exec", "--", str(ROOT / ".venv" / "bin" / "airflow"), "dags", "test", "mlops_reproduce",
                   "-c", json.dumps({"model_name": MODEL, "version": "2"}), timeout=900)
    text = repro.stdout + repro.stderr
    assert repro.returncode == 0 and "SUMMARY reproduce-check match=True" in text, text[-5000:]
    assert f"hash={record['training_set']['hash'][:16]}" in text
