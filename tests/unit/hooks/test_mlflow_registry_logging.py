"""A successful MLflow call writes nothing to stderr (Airflow 3 records a task's stderr at ERROR, issue #15)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, tempfile
    logging.basicConfig(stream=sys.stdout, level=logging.INFO)  # the task log: records go here, at their level
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    hook = MlflowHook(tracking_uri=sys.argv[1])
    client = hook.get_client()
    exp = client.create_experiment("stderr-check-" + next(tempfile._get_candidate_names()))
    run = client.create_run(exp)
    uri = hook.log_json_artifact(client, run.info.run_id, {"a": 1}, "evidence/a.json")
    assert hook.load_json_artifact(client, run.info.run_id, "evidence/a.json") == {"a": 1}
    client.download_artifacts(run.info.run_id, "evidence", tempfile.mkdtemp())  # a progress bar, if enabled
    client.create_registered_model("stderr-check-" + run.info.run_id[:8])
    client.create_model_version("stderr-check-" + run.info.run_id[:8], f"runs:/{run.info.run_id}/evidence",
                                run.info.run_id)
    print("OK", uri)
    """
)


def test_mlflow_calls_write_nothing_to_stderr(mlflow_server: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(ROOT / "plugins")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mlflow_server], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout
    assert proc.stderr.strip() == "", f"MLflow wrote to stderr (shown as ERROR in the task log):\n{proc.stderr}"
