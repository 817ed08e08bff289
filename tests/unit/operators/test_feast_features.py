"""Feast operators against a real feature repository (the bundled one) inside a real DVC repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest
from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator
from mlops_airflow.operators.feast_features import (
    FeastApplyOperator,
    FeastMaterializeOperator,
    FeastTrainingSetOperator,
    parse_instant,
)

pytestmark = pytest.mark.unit
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def feature_repo(generator, tmp_path_factory):
    """The bundled feature definitions in a DVC repo holding two versioned daily batches; feast applied."""
    from conftest import dvc_conn, make_context, make_dvc_repo

    tmp_path = tmp_path_factory.mktemp("feast")
    info = make_dvc_repo(tmp_path)
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = dvc_conn(info)
    context = make_context
    repo = info["repo"]
    for name in ("feature_store.yaml", "features.py", ".feastignore"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    versions = []
    for day in ("2026-11-01", "2026-11-02"):
        df = generator.generate_batch(date.fromisoformat(day), n_customers=200)
        src = generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")
        versions.append(DvcVersionDatasetOperator(
            task_id="v", source_path=str(src), dataset_path="data/customer_events", file_name=f"{day}.parquet",
        ).execute(context()))
    FeastApplyOperator(task_id="apply").execute(context())
    yield {"repo": repo, "versions": versions, "dvc_conn": dvc_conn(info)}
    os.environ.pop("AIRFLOW_CONN_FEAST_DEFAULT", None)
    os.environ.pop("AIRFLOW_CONN_DVC_DEFAULT", None)


@pytest.fixture(autouse=True)
def _connections(request):
    if "feature_repo" in request.fixturenames:
        repo = request.getfixturevalue("feature_repo")
        os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = repo["dvc_conn"]
        os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps(
            {"conn_type": "feast", "extra": {"repo_path": str(repo["repo"])}})


def test_materialize_then_training_set_is_point_in_time_and_reproducible(feature_repo, tmp_path, context):
    window = FeastMaterializeOperator(
        task_id="m", start="2026-11-02T00:00:00+00:00", end="2026-11-03T00:00:00+00:00", overlap=timedelta(hours=6),
    ).execute(context())
    assert window["start"] == "2026-11-01T18:00:00+00:00" and window["feature_views"] == ["customer_activity"]

    v1, v2 = feature_repo["versions"]
    op = FeastTrainingSetOperator(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                  output_dir=str(tmp_path / "sets"))
    first = op.execute(context())
    assert first["rows"] == 400 and first["features"] == sorted(first["features"]) and len(first["features"]) == 5
    assert first["dataset"]["rev"] == v2["rev"] and len(first["definitions_hash"]) == 64
    again = op.execute(context(try_number=2))
    assert again["hash"] == first["hash"] and again["uri"] == first["uri"]
    # An older data version gives its own (smaller) training set, rebuilt from that revision.
    old = FeastTrainingSetOperator(task_id="ts", dataset_version=v1, feature_service="churn_model_v1",
                                   output_dir=str(tmp_path / "sets")).execute(context())
    assert old["rows"] == 200 and old["hash"] != first["hash"]

    import pandas as pd

    df = pd.read_parquet(first["uri"])
    raw = pd.read_parquet(feature_repo["repo"] / "data" / "customer_events")
    merged = df.merge(raw, on=["customer_id", "event_timestamp"], suffixes=("", "_raw"))
    assert (merged["monthly_charges"] == merged["monthly_charges_raw"]).all()  # point-in-time = same event


def test_unknown_feature_service_names_the_known_ones(feature_repo, tmp_path, context):
    v = feature_repo["versions"][0]
    with pytest.raises(FeatureStoreError, match=r"'no_such_service' does not exist.*churn_model_v1"):
        FeastTrainingSetOperator(task_id="ts", dataset_version=v, feature_service="no_such_service",
                                 output_dir=str(tmp_path)).execute(context())


def test_window_validation():
    with pytest.raises(FeatureStoreError, match="has no timezone"):
        parse_instant("2026-11-01T00:00:00", "start")
    with pytest.raises(FeatureStoreError, match="in the future"):
        FeastMaterializeOperator(task_id="m", start="2026-01-01T00:00:00+00:00",
                                 end="2999-01-01T00:00:00+00:00").execute({})


def test_repo_without_feature_store_yaml_is_a_clear_error(tmp_path):
    from mlops_airflow.hooks.feast_store import FeastHook

    with pytest.raises(FeatureStoreError, match="feature_store.yaml not found"):
        _ = FeastHook(repo_path=str(tmp_path)).repo_path


def test_feast_cli_module_exists():
    """The hook runs `python -m feast.cli.cli apply`; make sure that entry still exists."""
    proc = subprocess.run([sys.executable, "-m", "feast.cli.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "apply" in proc.stdout
