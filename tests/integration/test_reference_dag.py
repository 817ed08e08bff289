"""The reference DAG end to end on a fresh, isolated local stack (what `make demo` runs).

Runs ``scripts/local_stack.py demo`` with its own stack folder and MLflow port, then checks the
registry: the model version, its alias and its lineage tags, and the reproducibility record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TRAIN_PYTHON, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    local = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({"MLOPS_LOCAL_DIR": str(local), "MLOPS_MLFLOW_PORT": str(free_port())})
    yield local, env
    subprocess.run([sys.executable, str(ROOT / "scripts" / "local_stack.py"), "stop"], env=env, check=False)


def test_reference_dag_registers_a_champion_with_lineage(stack):
    local, env = stack
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_stack.py"), "demo", "--day", "2026-11-10"],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "=== mlops_continuous_training: run summary ===" in proc.stdout
    summary = json.loads((local / "data" / "runs" / "latest_summary.json").read_text())
    assert summary["validation"]["passed"] is True
    assert summary["model"]["aliases"] == ["champion"]

    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{env['MLOPS_MLFLOW_PORT']}")
    mv = client.get_model_version_by_alias("churn_classifier", "champion")
    assert mv.version == summary["model"]["version"] and mv.run_id == summary["mlflow_run"]["run_id"]
    tags = mv.tags
    assert tags["mlops.dataset_md5"] == summary["dataset_version"]["md5"]
    assert tags["mlops.dataset_rev"] == summary["dataset_version"]["rev"]
    assert tags["mlops.training_set_hash"] == summary["training_set"]["hash"]
    assert tags["mlops.dag_id"] == "mlops_continuous_training" and tags["mlops.run_id"] == summary["dag_run"]
    assert tags["mlops.promotion.alias"] == "champion"

    record_path = client.download_artifacts(mv.run_id, "reproducibility/record.json", str(local))
    record = json.loads(Path(record_path).read_text())
    assert record["dataset"]["md5"] == tags["mlops.dataset_md5"]
    assert record["features"]["feature_service"] == "churn_model_v1"
    assert record["training_set"]["hash"] == summary["training_set"]["hash"]
    assert record["runtime"]["device"] == "cpu" and record["code"]["airflow_lock_sha256"]
    assert record["model"] == {"name": "churn_classifier", "version": mv.version}

    # The drift verdict is in XCom-sized JSON and its report exists.
    assert Path(summary["drift"]["report_path"]).is_file()

    # A second run of the same day reuses the data version (no new DVC commit) and keeps the champion.
    proc2 = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_stack.py"), "demo", "--day", "2026-11-10"],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc2.returncode == 0, proc2.stdout[-4000:]
    second = json.loads((local / "data" / "runs" / "latest_summary.json").read_text())
    assert second["dataset_version"]["rev"] == summary["dataset_version"]["rev"]
    assert second["training_set"]["hash"] == summary["training_set"]["hash"]
    assert client.get_model_version_by_alias("churn_classifier", "champion").version == mv.version
