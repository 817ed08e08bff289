"""operators._monitoring_runs: one logging flow over MLflow's REST API and MlflowClient. The REST backend is
exercised by the drift and quality tests against the ``mlflow_server`` fixture; here the client backend, on a
real SQLite tracking store with local artifacts (a store the server does not proxy)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators._monitoring import _Evidence
from mlops_airflow.operators._monitoring_runs import _ClientRuns, log_check_run

pytestmark = pytest.mark.unit


def test_the_client_backend_logs_once_and_a_retry_reuses_the_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hook = MlflowHook(tracking_uri=uri)
    assert isinstance(_ClientRuns(hook), _ClientRuns) and not uri.startswith("http")
    files = _Evidence(tmp_path / "r.html", tmp_path / "v.json", "file:///store/r.html", "file:///store/v.json", "qa")
    files.report_path.write_text("<html>report</html>")
    keys = {"mlops.kind": "unit", "mlops.dag_id": "d", "mlops.run_id": "r", "mlops.task_id": "t"}
    verdicts = []
    for _ in range(2):  # the task, then its retry
        verdict = {"passed": False, "retrain_event": {"verdict_uri": None}}
        log_check_run(hook, logging.getLogger("test"), experiment="runs-tests", keys=keys, run_name="unit d r",
                      verdict=verdict, files=files, metrics={"share": 0.5, "nan": float("nan")},
                      tags={"mlops.passed": "false"}, where=uri)
        verdicts.append(verdict)
    assert verdicts[0]["mlflow_run_id"] == verdicts[1]["mlflow_run_id"]
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("runs-tests").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics == {"share": 0.5}
    assert run.data.tags["mlops.kind"] == "unit" and run.data.tags["mlops.passed"] == "false"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "qa")} == {"qa/r.html", "qa/v.json"}
    assert verdicts[1]["evidence_uri"] == f"{run.info.artifact_uri}/qa/r.html"
    assert verdicts[1]["retrain_event"]["verdict_uri"] == verdicts[1]["verdict_uri"].replace("r.html", "v.json")
