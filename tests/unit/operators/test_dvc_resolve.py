"""DvcResolveVersionOperator: fetch a dataset version to a local path and prove its content hash.

One real git + DVC repository (local remote) with one directory version, shared by the module; the failure
cases work on copies so they cannot disturb each other. Runtime: ~35 s on an idle 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks.dvc_repo import dir_entries, dir_md5, file_md5
from mlops_airflow.operators.dvc_version import DvcResolveVersionOperator, DvcVersionDatasetOperator

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def versioned(tmp_path_factory, generator):
    from conftest import dvc_conn, make_context, make_dvc_repo

    base = tmp_path_factory.mktemp("resolve")
    info = make_dvc_repo(base)
    info["conn"] = dvc_conn(info)
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = info["conn"]
    df = generator.generate_batch(date.fromisoformat("2026-11-01"), n_customers=150)
    generator.write_batch(df, info["repo"] / "data" / "events" / "2026-11-01.parquet")  # already in place
    src = generator.write_batch(generator.generate_batch(date.fromisoformat("2026-11-02"), n_customers=150),
                                base / "landing" / "2026-11-02.parquet")
    info["version"] = DvcVersionDatasetOperator(task_id="v", source_path=str(src), dataset_path="data/events",
                                                file_name="2026-11-02.parquet").execute(make_context())
    info["base"] = base
    yield info
    os.environ.pop("AIRFLOW_CONN_DVC_DEFAULT", None)


@pytest.fixture(autouse=True)
def _conn(request):
    if "versioned" in request.fixturenames:
        os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = request.getfixturevalue("versioned")["conn"]


def _copy(info, name: str) -> dict:
    """A private copy of the repository, cache and remote, with its own connection id."""
    dst = info["base"] / name
    shutil.copytree(info["repo"], dst / "data_repo", symlinks=True)
    shutil.copytree(info["remote"], dst / "remote")
    extra = {"repo_path": str(dst / "data_repo"), "remote": "local", "remote_url": str(dst / "remote")}
    os.environ[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps({"conn_type": "dvc", "extra": extra})
    return {"repo": dst / "data_repo", "remote": dst / "remote", "conn_id": name}


def test_resolves_a_directory_version_and_verifies_it(versioned, tmp_path, context):
    v = versioned["version"]
    op = DvcResolveVersionOperator(task_id="resolve", dataset_version=json.dumps(v), local_dir=str(tmp_path))
    got = op.execute(context())
    local = Path(got["local_path"])
    assert local == (tmp_path / v["rev"][:12] / "events").absolute()
    assert sorted(p.name for p in local.iterdir()) == ["2026-11-01.parquet", "2026-11-02.parquet"]
    assert dir_md5(dir_entries(local)) == v["md5"] == got["md5"]
    assert (got["rows"], got["nfiles"], got["size"], got["reused"]) == (300, 2, v["size"], False)
    json.dumps(got)
    # A retry reuses the verified copy; a tampered copy is detected and fetched again.
    assert op.execute(context())["reused"] is True
    (local / "2026-11-01.parquet").write_bytes(b"tampered")
    again = op.execute(context())
    assert again["reused"] is False and dir_md5(dir_entries(local)) == v["md5"]


def test_resolves_path_at_a_branch_name_to_the_commit(versioned, tmp_path, context):
    got = DvcResolveVersionOperator(task_id="r", dataset_path="data/events", rev="main",
                                    local_dir=str(tmp_path)).execute(context())
    assert got["rev"] == versioned["version"]["rev"] and got["md5"] == versioned["version"]["md5"]
    # The extra of a watcher's asset event ({from_trigger, payload}) is accepted as it is.
    event_extra = {"from_trigger": True, "payload": {"path": "data/events", "rev": "main"}}
    again = DvcResolveVersionOperator(task_id="r", dataset_version=event_extra, local_dir=str(tmp_path)).execute(
        context())
    assert again["rev"] == got["rev"] and again["reused"] is True


def test_unknown_revision_is_a_clear_error(versioned, tmp_path, context):
    op = DvcResolveVersionOperator(task_id="r", dataset_path="data/events", rev="0badc0de", local_dir=str(tmp_path))
    with pytest.raises(DatasetVersionError, match=r"revision '0badc0de' does not exist.*git log") as err:
        op.execute(context())
    print(f"BAD-INPUT | DVC revision that does not exist (resolve) | {err.value}")
    assert not any(tmp_path.iterdir())


def test_corrupt_cache_fails_the_hash_check_and_names_the_file(versioned, tmp_path, context):
    copy = _copy(versioned, "dvc_corrupt")
    victim = copy["repo"] / "data/events/2026-11-02.parquet"
    cached = copy["repo"] / ".dvc/cache/files/md5" / file_md5(victim)[:2] / file_md5(victim)[2:]
    cached.chmod(0o644)
    cached.write_bytes(b"bit rot")
    shutil.rmtree(copy["remote"])  # no good copy anywhere
    op = DvcResolveVersionOperator(task_id="r", dataset_version=versioned["version"], local_dir=str(tmp_path),
                                   dvc_conn_id=copy["conn_id"])
    with pytest.raises(DatasetVersionError) as err:
        op.execute(context())
    message = str(err.value)
    assert "does not match the recorded" in message and "2026-11-02.parquet" in message and "dvc fetch" in message
    assert not any((tmp_path / versioned["version"]["rev"][:12]).glob("events*")), "an unverified copy was kept"


def test_unreachable_remote_on_resolve_is_a_clear_error(versioned, tmp_path, context):
    copy = _copy(versioned, "dvc_offline")
    shutil.rmtree(copy["repo"] / ".dvc/cache")  # a fresh worker: nothing cached locally
    conn = json.loads(os.environ["AIRFLOW_CONN_DVC_OFFLINE"])
    conn["extra"]["remote_url"] = str(tmp_path / "unmounted-bucket")
    os.environ["AIRFLOW_CONN_DVC_OFFLINE"] = json.dumps(conn)
    op = DvcResolveVersionOperator(task_id="r", dataset_version=versioned["version"], local_dir=str(tmp_path / "out"),
                                   dvc_conn_id="dvc_offline")
    with pytest.raises(DatasetVersionError, match=r"could not fetch data/events@.*remote local.*reachable") as err:
        op.execute(context())
    print(f"BAD-INPUT | unreachable remote (resolve/pull) | {err.value}")
    assert not (tmp_path / "out" / versioned["version"]["rev"][:12] / "events").exists()
    # Nothing lost: the data repository still has the version's pointer and the data.
    assert (copy["repo"] / "data/events.dvc").is_file() and (copy["repo"] / "data/events/2026-11-01.parquet").is_file()


def test_resolves_to_an_object_store_and_a_retry_reuses_the_upload(versioned, s3_store, context):
    """No shared disk: the version is verified in the task's own folder, uploaded under the URI with a marker
    written last, and XCom names the URI (no worker path); a retry finds the marker and fetches nothing."""
    v = versioned["version"]
    root = f"{s3_store.root}/resolved"
    op = DvcResolveVersionOperator(task_id="resolve", dataset_version=json.dumps(v), local_dir=root)
    first = op.execute(context("resolve"))
    sha12 = first["rev"][:12]
    assert first["uri"] == f"{root}/{sha12}/events" and first["local_path"] is None and not first["reused"]
    keys = s3_store.keys(f"resolved/{sha12}/")
    assert f"resolved/{sha12}/events/2026-11-01.parquet" in keys
    assert f"resolved/{sha12}/events/2026-11-02.parquet" in keys
    assert f"resolved/{sha12}/events.verified.json" in keys
    assert first["nfiles"] == 2 and first["rows"] == 300
    again = DvcResolveVersionOperator(task_id="resolve", dataset_version=v, local_dir=root).execute(
        context("resolve", try_number=2))
    assert again["reused"] is True and {k: again[k] for k in ("md5", "nfiles", "rows", "uri")} == {
        k: first[k] for k in ("md5", "nfiles", "rows", "uri")}
