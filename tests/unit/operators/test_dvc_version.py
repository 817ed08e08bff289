"""DvcVersionDatasetOperator and DvcHook against real git + DVC repositories with a local remote."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date

import pytest
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

pytestmark = pytest.mark.unit


def _batch(tmp_path, generator, day="2026-11-01", **knobs):
    df = generator.generate_batch(date.fromisoformat(day), n_customers=300, **knobs)
    return generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")


def _op(source, day="2026-11-01", **kw):
    from airflow.sdk import Asset

    return DvcVersionDatasetOperator(
        task_id="version", source_path=str(source), dataset_path="data/events", file_name=f"{day}.parquet",
        outlets=[Asset("dvc://data_repo/data/events")], **kw,
    )


def _commits(repo) -> int:
    return int(subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout)


def test_new_version_is_committed_pushed_and_announced(tmp_path, generator, dvc_repo, context):
    src = _batch(tmp_path, generator)
    ctx = context()
    version = _op(src).execute(ctx)
    repo, remote = dvc_repo["repo"], dvc_repo["remote"]
    assert version["md5"].endswith(".dir") and version["rows"] == 300 and version["new_commit"]
    assert version["rev"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                            text=True).stdout.strip()
    assert version["batch_md5"] == file_md5(src)
    assert any(p.is_file() for p in remote.rglob("*")), "dvc push left the remote empty"
    json.dumps(version)  # XCom-safe
    (event,) = ctx["outlet_events"].values()
    assert event.extra["md5"] == version["md5"] and event.extra["rows"] == 300 and event.extra["rev"]


def test_retry_gives_same_version_without_new_commit(tmp_path, generator, dvc_repo, context):
    src = _batch(tmp_path, generator)
    first = _op(src).execute(context())
    n = _commits(dvc_repo["repo"])
    again = _op(src).execute(context(try_number=2))
    assert (again["rev"], again["md5"]) == (first["rev"], first["md5"])
    assert not again["new_commit"] and _commits(dvc_repo["repo"]) == n
    # Commits of other paths (training sets, quarantined batches) do not change this dataset's version.
    other = tmp_path / "other.parquet"
    other.write_bytes(src.read_bytes())
    DvcVersionDatasetOperator(task_id="o", source_path=str(other), dataset_path="data/other.parquet").execute(context())
    third = _op(src).execute(context(try_number=3))
    assert third["rev"] == first["rev"] and not third["new_commit"]


def test_second_batch_makes_a_new_version_and_old_one_stays_reachable(tmp_path, generator, dvc_repo, context):
    v1 = _op(_batch(tmp_path, generator, "2026-11-01")).execute(context())
    v2 = _op(_batch(tmp_path, generator, "2026-11-02"), day="2026-11-02").execute(context())
    assert v2["rev"] != v1["rev"] and v2["md5"] != v1["md5"] and v2["rows"] == 600
    hook = DvcHook()
    old = hook.materialize_version("data/events", v1["rev"], tmp_path / "restore")
    assert sorted(p.name for p in old.iterdir()) == ["2026-11-01.parquet"]


def test_different_content_is_never_overwritten(tmp_path, generator, dvc_repo, context):
    _op(_batch(tmp_path, generator)).execute(context())
    dest = dvc_repo["repo"] / "data/events/2026-11-01.parquet"
    before = file_md5(dest)
    other = _batch(tmp_path / "other", generator, covariate_shift=1.0)
    with pytest.raises(DatasetVersionError, match="refusing to overwrite"):
        _op(other).execute(context())
    assert file_md5(dest) == before


def test_missing_source_is_a_clear_error(tmp_path, dvc_repo, context):
    with pytest.raises(DatasetVersionError, match="does not exist: nothing to version"):
        _op(tmp_path / "nope.parquet").execute(context())


def test_corrupt_parquet_is_not_versioned_and_stays_in_place(tmp_path, dvc_repo, context):
    src = tmp_path / "landing" / "2026-11-01.parquet"
    src.parent.mkdir(parents=True)
    src.write_bytes(os.urandom(1024))
    md5, commits = file_md5(src), _commits(dvc_repo["repo"])
    with pytest.raises(DatasetVersionError, match=r"is not readable Parquet.*nothing was versioned") as err:
        _op(src).execute(context())
    print(f"BAD-INPUT | corrupt Parquet (DVC versioning) | {err.value}")
    assert file_md5(src) == md5 and _commits(dvc_repo["repo"]) == commits
    assert not (dvc_repo["repo"] / "data/events/2026-11-01.parquet").exists()


def test_unknown_revision(dvc_repo, tmp_path):
    with pytest.raises(DatasetVersionError, match="revision 'deadbeef' does not exist") as err:
        DvcHook().materialize_version("data/events", "deadbeef", tmp_path / "x")
    print(f"BAD-INPUT | DVC revision that does not exist (hook) | {err.value}")
    assert "git log" in str(err.value) and not (tmp_path / "x").exists()


def test_unreachable_remote_fails_and_keeps_the_data(tmp_path, generator, dvc_repo, context):
    conn = json.loads(os.environ["AIRFLOW_CONN_DVC_DEFAULT"])
    good_remote = conn["extra"]["remote_url"]
    conn["extra"]["remote_url"] = "/proc/no-such-remote"  # not writable
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = json.dumps(conn)
    src = _batch(tmp_path, generator)
    with pytest.raises(DatasetVersionError, match=r"dvc push failed.*unreachable or not writable.*nothing is lost") \
            as err:
        _op(src).execute(context())
    print(f"BAD-INPUT | unreachable remote (dvc push) | {err.value}")
    assert "retry the task" in str(err.value)
    # Nothing lost: the batch, its copy in the repository, the commit and the DVC cache are all there.
    assert src.exists() and (dvc_repo["repo"] / "data/events/2026-11-01.parquet").exists()
    commits = _commits(dvc_repo["repo"])
    # The remote is back: the retry pushes the same version, without a new commit.
    conn["extra"]["remote_url"] = good_remote
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = json.dumps(conn)
    version = _op(src).execute(context(try_number=2))
    assert not version["new_commit"] and _commits(dvc_repo["repo"]) == commits
    assert any(p.is_file() for p in dvc_repo["remote"].rglob("*")), "the retry did not push"


def test_single_file_dataset_hash_is_verified(tmp_path, generator, dvc_repo, context):
    src = _batch(tmp_path, generator)
    op = DvcVersionDatasetOperator(task_id="v", source_path=str(src), dataset_path="data/one.parquet")
    version = op.execute(context())
    restored = DvcHook().materialize_version("data/one.parquet", version["rev"], tmp_path / "r" / "one.parquet")
    assert file_md5(restored) == version["md5"] == file_md5(src)
