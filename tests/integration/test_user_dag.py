"""A user's own CT DAG (tests/user_dag/my_model_dag.py, built with ``continuous_training``) run with ``dag.test()``
against a real MLflow server and a real DVC repository, twice: the first run trains and registers a champion
(scikit-learn, no torch, no Feast), the second a challenger on the changed data that is evaluated on a fresh
holdout and promoted (auto approval). Runtime: ~2-4 min (two tiny trainings in subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, dvc_conn, make_dvc_repo
from unit.operators.test_registry_support import mlflow_conn_json

DAG_FILE = ROOT / "tests" / "user_dag" / "my_model_dag.py"
RUNNER = """
import json, sys
from airflow.utils import db
db.initdb()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
for conf in json.loads(sys.argv[2]):
    dr = bag.get_dag("my_model_ct").test(run_conf=conf)
    print("DAGRUN_STATE", conf["day"], dr.state, flush=True)
"""


@pytest.mark.integration
def test_the_user_dag_trains_registers_evaluates_and_promotes(tmp_path, mlflow_server):
    assert len(DAG_FILE.read_text().splitlines()) <= 40  # the README's promise, imports included
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__MLOPS__DATA_ROOT": str(tmp_path / "data"), "AIRFLOW__MLOPS__PROJECT_ROOT": str(ROOT),
        "AIRFLOW__MLOPS__INCLUDE_DIR": str(ROOT / "include"),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_conn_json(mlflow_server),
        "AIRFLOW_CONN_DVC_DEFAULT": dvc_conn(make_dvc_repo(tmp_path)), "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    })
    runs = [{"day": "2026-11-01"}, {"day": "2026-11-02", "training_window_days": 1}]
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(DAG_FILE.parent), json.dumps(runs)], env=env,
                          capture_output=True, text=True, timeout=1200, cwd=str(ROOT))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and out.count("DAGRUN_STATE") == 2, out[-6000:]
    assert "DAGRUN_STATE 2026-11-01 success" in out and "DAGRUN_STATE 2026-11-02 success" in out, out[-6000:]

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    model = client.get_registered_model("my_classifier")
    assert dict(model.aliases) == {"champion": "2"}, model.aliases
    v1, v2 = (client.get_model_version("my_classifier", v) for v in ("1", "2"))
    assert v2.tags["mlops.task_type"] == "binary_classification" and v2.tags["mlops.label"] == "y"
    run = client.get_run(v2.run_id)
    assert run.data.tags["mlops.entrypoint"] == "tests.user_dag.my_model:train"
    assert run.data.tags["mlops.entrypoint_sha256"] and v1.tags["mlops.dataset_rev"] != v2.tags["mlops.dataset_rev"]
    summary = json.loads((tmp_path / "data" / "runs" / "latest_summary.json").read_text())
    assert summary["evaluation"]["passed"] is True and summary["promotion"]["version"] == "2"
    assert summary["promotion"]["previous_version"] == "1" and summary["feature_skew"] is None
    assert summary["training_set"]["entity_window"]["start"] == "2026-11-02T00:00:00+00:00"
