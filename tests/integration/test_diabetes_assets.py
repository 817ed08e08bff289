"""The diabetes example's assets (include/diabetes) against the real components, in ~a minute.

On a fresh local-stack data repository (``scripts/local_stack.py``'s ``init_data_repo`` + ``feast_apply`` with
its own ``MLOPS_LOCAL_DIR``): daily batches from ``data.py`` pass the GX suite through the pack's validation gate
(and a broken one fails it), the shifted days are detectably drifted (mean shift) and the normal days not, the
diabetes Feast repository at ``feature_repos/diabetes`` reads ``data/diabetes`` (point-in-time join through the
``feast_diabetes`` connection of the stack) without leaking into the churn repository at the root, and
``train.py`` logs a scikit-learn regressor to a real MLflow server under the training env contract; that model
is worse on a concept-drifted holdout.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from datetime import date, timedelta

import pytest
from conftest import ROOT, make_context

pytestmark = pytest.mark.integration
DIABETES = ROOT / "include" / "diabetes"
START = date(2026, 11, 1)
SHIFT = 0.5  # covariate shift of the drifted days (standard deviations)


def _load_data_module():
    spec = importlib.util.spec_from_file_location("diabetes_data", DIABETES / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data():
    return _load_data_module()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, data):
    """A local-stack data repository with both Feast repositories applied, and 3 normal + 2 shifted days in it."""
    local = tmp_path_factory.mktemp("diabetes-stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN", "MLOPS_"))}
    env["MLOPS_LOCAL_DIR"] = str(local)
    code = ("import json, sys; sys.path.insert(0, 'scripts'); import local_stack as s; s.init_data_repo(); "
            "s.feast_apply(); print('CONN=' + s.stack_env()['AIRFLOW_CONN_FEAST_DIABETES'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    conn = next(line[5:] for line in proc.stdout.splitlines() if line.startswith("CONN="))
    repo = local / "data_repo"
    days = {START + timedelta(days=i): (SHIFT if i >= 3 else 0.0) for i in range(5)}
    frames = {}
    for day, shift in days.items():
        frames[day] = data.daily_batch(day, covariate_shift=shift)
        data.write_batch(frames[day], repo / "data" / "diabetes" / f"{day.isoformat()}.parquet")
    return {"local": local, "repo": repo, "conn": conn, "frames": frames, "shifts": days}


def test_batches_are_deterministic_keyed_and_keep_holdout_patients_apart(data):
    a, b = data.daily_batch(START), data.daily_batch(START, unused_knob=1)
    assert a.equals(b) and 300 <= len(a) <= 500 and list(a.columns) == data.SCHEMA_COLUMNS
    assert not a.duplicated(["patient_id", "event_timestamp"]).any()
    assert (a["event_timestamp"].dt.date == START).all() and str(a["event_timestamp"].dt.tz) == "UTC"
    assert a["target"].dtype == "float64" and a["patient_id"].dtype == "int64"
    hold = data.holdout_batch(START)
    assert not set(hold["patient_id"]) & set(a["patient_id"]), "holdout patients must never be trained on"
    assert not hold.equals(data.holdout_batch(START + timedelta(days=1)))


def test_suite_passes_normal_and_shifted_days_and_fails_a_broken_batch(tmp_path, data):
    from mlops_airflow.exceptions import DataValidationError
    from mlops_airflow.operators.data_validation import DataValidationGateOperator

    def gate(df, name):
        path = data.write_batch(df, tmp_path / "landing" / f"{name}.parquet")
        return DataValidationGateOperator(
            task_id="validate", data_path=str(path), suite_path=str(DIABETES / "gx" / "suite.json"),
            quarantine_dir=str(tmp_path / "quarantine"), results_dir=str(tmp_path / "results"),
            key_columns=["patient_id"], timestamp_column="event_timestamp",
        ).execute(make_context("validate"))

    shifted = data.daily_batch(START, covariate_shift=2.0, concept_drift=1.0)  # beyond the demo's knobs
    verdict = gate(shifted, "shifted")
    assert verdict["passed"] and verdict["metrics"]["failed"] == 0
    broken = data.daily_batch(START)
    broken.loc[:4, "bmi"] = 120.0
    broken.loc[5, "target"] = None
    with pytest.raises(DataValidationError) as err:
        gate(broken, "broken")
    assert "bmi" in str(err.value) and "target" in str(err.value)


def test_shifted_days_are_drifted_and_normal_days_not(stack, data):
    from scipy import stats

    frames, shifts = stack["frames"], stack["shifts"]
    reference = frames[START]
    for day, frame in frames.items():
        if day == START:
            continue
        for column in data.SHIFTED:
            smd = (frame[column].mean() - reference[column].mean()) / reference[column].std()
            p = stats.ttest_ind(frame[column], reference[column], equal_var=False).pvalue
            if shifts[day]:
                assert smd > 0.6 * SHIFT and p < 1e-6, (day, column, smd, p)
            else:
                assert abs(smd) < 0.2 and p > 1e-3, (day, column, smd, p)
        unshifted = (frame["s1"].mean() - reference["s1"].mean()) / reference["s1"].std()
        assert abs(unshifted) < 0.2, (day, unshifted)


def test_feast_repo_lives_in_the_data_repo_and_joins_point_in_time(stack, tmp_path, monkeypatch, data):
    import pandas as pd
    from feast import FeatureStore
    from mlops_airflow.hooks.feast_store import FeastHook

    repo = stack["repo"]
    assert "feature_repos/" in (repo / ".feastignore").read_text()
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert {"feature_repos/diabetes/features.py", "feature_repos/diabetes/feature_store.yaml"} <= set(tracked)
    churn = FeatureStore(repo_path=str(repo))
    assert churn.project == "churn" and [s.name for s in churn.list_feature_services()] == ["churn_model_v1"]

    monkeypatch.setenv("AIRFLOW_CONN_FEAST_DIABETES", stack["conn"])
    hook = FeastHook(feast_conn_id="feast_diabetes")
    assert hook.repo_path == (repo / "feature_repos" / "diabetes").resolve()
    store = hook.get_store()
    assert store.project == "diabetes"
    service = store.get_feature_service("diabetes_v1")
    entities = pd.concat(stack["frames"].values(), ignore_index=True)
    rows = entities[["patient_id", "event_timestamp", "target"]]
    joined = store.get_historical_features(entity_df=rows, features=service).to_df()
    assert len(joined) == len(rows) and not joined[data.FEATURES].isna().any().any()
    check = joined.merge(entities, on=["patient_id", "event_timestamp"], suffixes=("", "_src"))
    assert len(check) == len(rows) and (check["bmi"] == check["bmi_src"]).all()
    # Materialisation reads the same relative FileSource path (the pack's windowed Arrow reader).
    first_day = pd.Timestamp(START, tz="UTC").to_pydatetime()
    facts = hook.materialize_window(store, "patient_measurements", first_day, first_day + timedelta(days=1))
    day1 = stack["frames"][START]
    assert facts["mode"] == "arrow" and facts["rows_read"] == len(day1)
    assert facts["entities_written"] == day1["patient_id"].nunique()
    newest = day1.sort_values("event_timestamp").drop_duplicates("patient_id", keep="last").iloc[0]
    online = store.get_online_features(features=service, entity_rows=[{"patient_id": int(newest["patient_id"])}])
    assert online.to_dict()["bmi"] == [newest["bmi"]]
    normal = joined[joined["event_timestamp"] < pd.Timestamp(START + timedelta(days=3), tz="UTC")]
    out = tmp_path / "training_set.parquet"
    normal.sort_values(["event_timestamp", "patient_id"]).reset_index(drop=True).to_parquet(out, index=False)
    stack["training_set"] = out


def test_train_py_logs_a_regressor_under_the_env_contract(stack, mlflow_server, data, monkeypatch):
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    training_set = stack.get("training_set")
    if training_set is None:
        pytest.skip("needs the training set of the Feast test")
    digest = hashlib.sha256(training_set.read_bytes()).hexdigest()
    config = {"features": data.FEATURES, "label": "target", "task_type": "regression",
              "entity_columns": ["patient_id"], "seed": 42}
    tags = {"airflow.dag_id": "test_diabetes", "airflow.run_id": f"r-{digest[:8]}", "airflow.task_id": "train"}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")},
        "MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": "test-diabetes-assets",
        "MLOPS_TRAINING_SET_URI": training_set.as_uri(), "MLOPS_TRAINING_SET_HASH": digest,
        "MLOPS_DATASET_VERSION": json.dumps({"path": "data/diabetes", "rev": "0" * 40, "md5": "x.dir"}),
        "MLOPS_TRAINING_CONFIG": json.dumps(config), "MLOPS_RUN_TAGS": json.dumps(tags),
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    proc = subprocess.run([sys.executable, "include/diabetes/train.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TRAINING DONE" in proc.stdout

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("test-diabetes-assets")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`airflow.run_id` = '{tags['airflow.run_id']}'")
    assert run.info.status == "FINISHED"
    metrics, rtags = run.data.metrics, run.data.tags
    assert {"val_rmse", "val_mae", "val_r2"} <= set(metrics) and 30 < metrics["val_rmse"] < 70
    assert metrics["val_r2"] > 0.2
    assert rtags["mlops.task_type"] == "regression" and rtags["mlops.label"] == "target"
    assert rtags["mlops.entrypoint"] == "include/diabetes/train.py"
    assert rtags["mlops.entrypoint_sha256"] == hashlib.sha256((DIABETES / "train.py").read_bytes()).hexdigest()
    assert rtags["mlops.training_set_hash"] == digest

    mlflow.set_tracking_uri(mlflow_server)
    # MLflow 3 loads no scikit-learn model (pickle or skops) without this opt-in; we logged it ourselves.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    model = mlflow.pyfunc.load_model(rtags["mlops.model_uri"])
    meta = model.metadata.metadata
    assert meta["task_type"] == "regression" and meta["entity_columns"] == ["patient_id"]
    assert meta["features"] == data.FEATURES and meta["label"] == "target"

    def rmse(frame):
        return float(np.sqrt(np.mean((np.asarray(model.predict(frame[data.FEATURES])) - frame["target"]) ** 2)))

    day = START + timedelta(days=3)
    normal, drifted = rmse(data.holdout_batch(day)), rmse(data.holdout_batch(day, concept_drift=1.0))
    assert normal < 70 and drifted > 1.2 * normal, (normal, drifted)
