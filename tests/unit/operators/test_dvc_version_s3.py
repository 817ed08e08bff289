"""DvcVersionDatasetOperator in the production shape: a per-task clone, the batch and the DVC remote on S3.

The S3 API is real (moto's server on loopback, the ``s3_store`` fixture); the DVC remote is
``s3://<bucket>/dvc`` with the connection's login/password as credentials and ``extra.endpoint_url`` as the
remote's ``endpointurl`` in ``.dvc/config.local`` (never in a tracked file). The remote down during ``dvc push``
fails with the remote's URL and the next step; the retry once it is back lands exactly one commit. Runtime: ~1-2 min.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest
from conftest import free_port, git, make_dvc_repo
from mlops_airflow import storage
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

pytestmark = pytest.mark.unit


def _connect(monkeypatch, url: str, store, endpoint: str) -> None:
    extra = {"repo_url": url, "remote_url": f"{store.root}/dvc", "endpoint_url": endpoint}
    conn = {"conn_type": "dvc", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_DVC_DEFAULT", json.dumps(conn))


@pytest.fixture
def s3_origin(tmp_path, s3_store, monkeypatch) -> dict:
    info = make_dvc_repo(tmp_path)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(info["repo"]), str(bare)], check=True)
    _connect(monkeypatch, bare.as_uri(), s3_store, s3_store.endpoint)
    return {"bare": bare, "url": bare.as_uri(), "store": s3_store}


def _landed(tmp_path: Path, generator, store, day: str) -> tuple[str, Path]:
    df = generator.generate_batch(date.fromisoformat(day), n_customers=60)
    local = generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")
    uri = f"{store.root}/landing/{day}.parquet"
    storage.put_file(local, uri)
    return uri, local


def _op(source: str, day: str) -> DvcVersionDatasetOperator:
    return DvcVersionDatasetOperator(task_id="version", source_path=source, dataset_path="data/events",
                                     file_name=f"{day}.parquet")


def _data_commits(bare: Path) -> list[str]:
    return [c for c in git(bare, "log", "--format=%s", "main").splitlines() if c.startswith("data: ")]


def test_s3_batch_and_s3_remote_from_a_per_task_clone(tmp_path, generator, s3_origin, context):
    store = s3_origin["store"]
    uri, local = _landed(tmp_path, generator, store, "2026-11-01")
    op = _op(uri, "2026-11-01")
    version = op.execute(context())
    assert version["new_commit"] and version["batch_md5"] == file_md5(local) and version["rows"] == 60
    assert any(k.startswith("dvc/files/md5/") for k in store.keys("dvc/")), store.keys()
    assert op.hook.settings.per_task and not op.hook.settings.repo_path.exists(), "the clone outlived the task"
    # The endpoint went into the clone's untracked config only: nothing of it is on the branch.
    assert "endpointurl" not in git(s3_origin["bare"], "show", "main:.dvc/config")
    restored = DvcHook().materialize_version("data/events", version["rev"], tmp_path / "restore")
    assert file_md5(restored / "2026-11-01.parquet") == file_md5(local)


def test_s3_remote_down_then_back_gives_one_commit(tmp_path, generator, s3_origin, context, monkeypatch):
    store = s3_origin["store"]
    uri, _local = _landed(tmp_path, generator, store, "2026-11-02")
    _connect(monkeypatch, s3_origin["url"], store, f"http://127.0.0.1:{free_port()}")  # nothing listens: down
    with pytest.raises(DatasetVersionError) as err:
        _op(uri, "2026-11-02").execute(context())
    message = str(err.value)
    print(f"BAD-INPUT | DVC remote on S3 down (dvc push) | {message}")
    assert f"The DVC remote {store.root}/dvc is unreachable" in message and "Next step:" in message
    assert "retry the task" in message and "testing" not in message  # no credential in the message
    assert err.value.evidence_uri == f"{store.root}/dvc"
    assert _data_commits(s3_origin["bare"]) == [], "a pointer reached git without its data"
    assert storage.exists(uri), "the batch must stay at its source"

    _connect(monkeypatch, s3_origin["url"], store, store.endpoint)  # the remote is back
    version = _op(uri, "2026-11-02").execute(context(try_number=2))
    assert version["new_commit"] and len(_data_commits(s3_origin["bare"])) == 1
    again = _op(uri, "2026-11-02").execute(context(try_number=3))
    assert not again["new_commit"] and again["rev"] == version["rev"]
    assert len(_data_commits(s3_origin["bare"])) == 1, "a retry must not add a second data version"
