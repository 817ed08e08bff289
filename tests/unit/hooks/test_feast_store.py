"""FeastHook with a per-task feature repository: a real bare git repository (the git server), real DVC with a local
remote, the bundled feature definitions at ``feature_repos/churn`` of that data repository, a real Feast store.

A ``feast`` connection with ``extra.dvc_conn_id`` naming a per-task DVC connection (``repo_url``, no ``repo_path``)
gets, for each ``feature_repo()`` block, a clone of the data repository with the file sources' DVC paths pulled;
the clone is gone when the block exits. The registry and the online store are shared files outside the clones (the
SQL registry and Redis in production). Runtime: ~1 min on a busy 2-core machine (git/DVC/Feast child processes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import pytest
from conftest import git, make_context, make_dvc_repo
from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators.feast_apply import FeastApplyOperator
from mlops_airflow.operators.feast_materialize import FeastMaterializeOperator
from mlops_airflow.operators.feast_training_set import FeastTrainingSetOperator

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
SUBDIR = "feature_repos/churn"
DAYS = ("2026-11-01", "2026-11-02")


@pytest.fixture(scope="module")
def origin(tmp_path_factory, generator) -> dict:
    """The data repository (two daily batches in ``data/customer_events``, DVC-pushed) served as a bare repository,
    the feature definitions at ``feature_repos/churn`` reading ``../../data/customer_events``; feast applied from a
    per-task clone."""
    base = tmp_path_factory.mktemp("feast-per-task")
    info = make_dvc_repo(base)
    repo = info["repo"]
    feature_repo = repo / SUBDIR
    feature_repo.mkdir(parents=True)
    features = (ROOT / "include" / "feast_repo" / "features.py").read_text()
    assert 'path="data/customer_events"' in features
    (feature_repo / "features.py").write_text(features.replace('path="data/customer_events"',
                                                               'path="../../data/customer_events"'))
    shared = base / "shared"  # the registry and the online store: outside every clone
    shared.mkdir()
    (feature_repo / "feature_store.shared.yaml").write_text(
        f"project: per_task_{base.name[-6:].replace('-', '_')}\nprovider: local\nregistry: {shared}/registry.db\n"
        f"online_store:\n  type: sqlite\n  path: {shared}/online.db\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n")
    (repo / ".gitignore").write_text(".feast/\n__pycache__/\n")
    events = repo / "data" / "customer_events"
    events.mkdir(parents=True)
    for day in DAYS:
        frame = generator.generate_batch(date.fromisoformat(day), n_customers=60)
        generator.write_batch(frame, events / f"{day}.parquet")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "add", "-q", "data/customer_events"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*dvc, "push", "-q"], cwd=repo, check=True, capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "definitions and two days")
    bare = base / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    dvc_extra = {"repo_url": bare.as_uri(), "remote": "local", "remote_url": str(info["remote"])}
    conns = {
        "AIRFLOW_CONN_DVC_PT": {"conn_type": "dvc", "extra": dvc_extra},
        "AIRFLOW_CONN_DVC_FIXED": {"conn_type": "dvc", "extra": {"repo_path": str(repo), "remote": "local"}},
        # data_paths derived from the registry's FileSources (../../data/customer_events from feature_repos/churn)
        "AIRFLOW_CONN_FEAST_PT": {"conn_type": "feast", "extra": {
            "dvc_conn_id": "dvc_pt", "repo_subdir": SUBDIR, "feature_store_yaml": "feature_store.shared.yaml"}},
        "AIRFLOW_CONN_FEAST_PT_PATHS": {"conn_type": "feast", "extra": {
            "dvc_conn_id": "dvc_pt", "repo_subdir": SUBDIR + "/", "feature_store_yaml": "feature_store.shared.yaml",
            "data_paths": "data/customer_events"}},  # a form field: comma-separated text
        "AIRFLOW_CONN_FEAST_PT_NONE": {"conn_type": "feast", "extra": {
            "dvc_conn_id": "dvc_pt", "repo_subdir": SUBDIR, "feature_store_yaml": "feature_store.shared.yaml",
            "data_paths": []}},  # nothing pulled: the offline source is missing from the clone
        "AIRFLOW_CONN_FEAST_FIXED": {"conn_type": "feast", "extra": {
            "dvc_conn_id": "dvc_fixed", "repo_subdir": SUBDIR, "feature_store_yaml": "feature_store.shared.yaml"}},
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in conns.items():
            mp.setenv(key, json.dumps(value))
        applied = FeastApplyOperator(task_id="apply", feast_conn_id="feast_pt").execute(make_context())
        yield {**info, "bare": bare, "url": bare.as_uri(), "shared": shared, "applied": applied, "conns": conns}


@pytest.fixture
def conns(origin, monkeypatch, tmp_path):
    for key, value in origin["conns"].items():
        monkeypatch.setenv(key, json.dumps(value))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "task-tmp"))  # where the task's clones go
    (tmp_path / "task-tmp").mkdir()
    return tmp_path / "task-tmp"


def _clones(tmp: Path) -> list[Path]:
    return [p for p in tmp.glob("mlops-dvc-*/repo") if p.exists()]


def test_apply_ran_in_a_clone_and_names_the_git_url_not_a_temp_folder(origin):
    applied = origin["applied"]
    assert applied["command"] == "apply" and applied["repo_path"] == f"{origin['url']}:{SUBDIR}"
    assert any("customer_activity" in line for line in applied["changes"]), applied
    assert (origin["shared"] / "registry.db").is_file()


def test_feature_repo_is_a_clone_with_the_derived_data_pulled_and_removed_after(conns, origin):
    hook = FeastHook(feast_conn_id="feast_pt")
    assert hook.per_task and hook.data_paths is None
    with hook.feature_repo() as repo:
        clone = repo.parents[1]
        assert repo == hook.repo_path == clone / SUBDIR and clone.parent.parent == conns
        assert origin["repo"] not in repo.parents
        assert sorted(p.name for p in (clone / "data" / "customer_events").glob("*.parquet")) == [
            f"{d}.parquet" for d in DAYS]
        with hook.feature_repo() as inner:  # re-entrant: the same clone
            assert inner == repo
        assert repo.is_dir()
        assert "customer_activity" in [fv.name for fv in hook.get_store().list_feature_views()]
    assert not clone.exists() and not _clones(conns), "the per-task clone outlived the block"


def test_materialize_window_reads_the_pulled_source_in_its_own_clone(conns, origin, context):
    result = FeastMaterializeOperator(task_id="m", feast_conn_id="feast_pt_paths", start="2026-11-02T00:00:00+00:00",
                                      end="2026-11-03T00:00:00+00:00").execute(context())
    assert result["rows_read"] == 60 and result["entities_written"] == 60, result
    assert not _clones(conns)
    again = FeastMaterializeOperator(task_id="m", feast_conn_id="feast_pt", start="2026-11-02T00:00:00+00:00",
                                     end="2026-11-03T00:00:00+00:00").execute(context(try_number=2))
    assert {k: again[k] for k in ("rows_read", "entities_written")} == {"rows_read": 60, "entities_written": 60}
    hook = FeastHook(feast_conn_id="feast_pt_paths")
    assert hook.data_paths == ["data/customer_events"] and hook.repo_subdir == SUBDIR
    with hook.feature_repo(data=False):  # definitions only: the registry answers, the online rows are there
        online = hook.get_store().get_online_features(
            features=["customer_activity:monthly_charges"], entity_rows=[{"customer_id": 1}]).to_dict()
    assert online["monthly_charges"][0] is not None


def test_training_set_joins_in_the_clone(conns, origin, context, tmp_path):
    version = {"repo": None, "rev": "local:x", "path": str(Path(origin["repo"]) / "data" / "customer_events")}
    result = FeastTrainingSetOperator(task_id="ts", feast_conn_id="feast_pt", dataset_version=version,
                                      feature_service="churn_model_v1", label_column="churned",
                                      output_dir=str(tmp_path / "sets")).execute(context())
    assert result["rows"] == 120 and len(result["features"]) == 5 and not result.get("null_share")
    assert not _clones(conns)


def test_nothing_pulled_fails_naming_data_paths(conns, origin, context):
    with pytest.raises(FeatureStoreError, match=r"cannot open its offline source .*extra\.data_paths"):
        FeastMaterializeOperator(task_id="m", feast_conn_id="feast_pt_none", start="2026-11-02T00:00:00+00:00",
                                 end="2026-11-03T00:00:00+00:00").execute(context())
    assert not _clones(conns), "a failed task left its clone"


def test_a_fixed_dvc_working_copy_is_used_in_place(conns, origin):
    hook = FeastHook(feast_conn_id="feast_fixed")
    assert not hook.per_task
    with hook.feature_repo() as repo:
        assert repo == (origin["repo"] / SUBDIR).resolve() == hook.repo_path
    assert repo.is_dir() and not _clones(conns)
    # An explicit repo_path wins over the connection's dvc_conn_id (no clone).
    explicit = FeastHook(feast_conn_id="feast_pt", repo_path=str(origin["repo"] / SUBDIR))
    assert not explicit.per_task and explicit.repo_path == (origin["repo"] / SUBDIR).resolve()


def test_outside_feature_repo_a_definitions_clone_serves_registry_lookups(conns, origin):
    hook = FeastHook(feast_conn_id="feast_pt")
    service = hook.get_feature_service(hook.get_store(), "churn_model_v1")
    assert service.name == "churn_model_v1"
    repo = hook.repo_path
    assert repo.is_dir() and not (repo.parents[1] / "data" / "customer_events").exists()  # no data pulled
    del hook
    import gc

    gc.collect()
    assert not repo.exists(), "the definitions clone outlived its hook"


@pytest.mark.parametrize(("extra", "match"), [
    ({"repo_subdir": "../elsewhere"}, "repo_subdir='../elsewhere' leaves the data repository"),
    ({"repo_subdir": SUBDIR, "data_paths": ["/abs/data"]}, "data_paths entry '/abs/data' is not a path inside"),
    ({"repo_subdir": "no/such/folder"}, r"feature_store.shared.yaml not found in no/such/folder of a clone of file:"),
])
def test_bad_connections_fail_naming_the_field(conns, origin, monkeypatch, extra, match):
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_BAD", json.dumps({"conn_type": "feast", "extra": {
        "dvc_conn_id": "dvc_pt", "feature_store_yaml": "feature_store.shared.yaml", **extra}}))
    with pytest.raises(FeatureStoreError, match=match), FeastHook(feast_conn_id="feast_bad").feature_repo():
        pass
    assert not _clones(conns)
