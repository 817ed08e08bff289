"""DvcHook with a per-task working copy: clones of a bare git repository (``file://``), real DVC, a local remote.

Each use of the hook clones the branch (shallow) into a temporary folder of its own and removes it afterwards;
two workers that version at once both land: the second push is rejected as a non-fast-forward, re-applied on the
new head and pushed again. Runtime: ~1-2 min on a busy 2-core machine (every step is a git/DVC child process).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from datetime import date
from pathlib import Path

import pytest
from conftest import git, make_dvc_repo
from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

pytestmark = pytest.mark.unit


@pytest.fixture
def origin(tmp_path, monkeypatch) -> dict:
    """A bare data repository (the git server) and a ``dvc`` connection with ``repo_url`` only (per task)."""
    info = make_dvc_repo(tmp_path)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(info["repo"]), str(bare)], check=True)
    url = bare.as_uri()
    extra = {"repo_url": url, "remote": "local", "remote_url": str(info["remote"])}
    monkeypatch.setenv("AIRFLOW_CONN_DVC_DEFAULT", json.dumps({"conn_type": "dvc", "extra": extra}))
    return {**info, "bare": bare, "url": url}


def _commits(bare: Path) -> list[str]:
    return git(bare, "log", "--format=%s", "main").splitlines()


def _batch(tmp_path: Path, generator, day: str) -> Path:
    df = generator.generate_batch(date.fromisoformat(day), n_customers=80)
    return generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")


def _place(repo: Path, src: Path) -> None:
    dest = repo / "data" / "events" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())


def test_per_task_clone_is_shallow_private_and_removed(tmp_path, generator, origin):
    hook = DvcHook()
    assert hook.settings.per_task and origin["repo"] not in hook.settings.repo_path.parents
    src = _batch(tmp_path, generator, "2026-11-01")
    with hook.working_copy("data/events") as repo:
        assert repo == hook.settings.repo_path and (repo / ".git" / "shallow").is_file()
        _place(repo, src)
        version = hook.version_path("data/events", "data: first day")
    assert not hook.settings.repo_path.exists(), "the per-task clone outlived its use"
    assert version["repo"] == origin["url"] and version["new_commit"] and version["nfiles"] == 1
    assert _commits(origin["bare"])[0] == "data: first day"
    assert git(origin["bare"], "rev-parse", "main").strip() == version["rev"]

    # Reading a version from another task: its own clone, fetched for the call and removed after it.
    reader = DvcHook()
    restored = reader.materialize_version("data/events", version["rev"], tmp_path / "restore" / "events")
    assert file_md5(restored / src.name) == file_md5(src)
    assert not reader.settings.repo_path.exists()
    assert reader.resolve_rev("HEAD") == version["rev"] and not reader.settings.repo_path.exists()


def test_rejected_push_is_reapplied_on_the_new_head(tmp_path, generator, origin, caplog):
    """Two clones of one head; the second push is rejected, re-applied on the first's commit and lands."""
    first, second = _batch(tmp_path, generator, "2026-11-01"), _batch(tmp_path, generator, "2026-11-02")
    worker_a, worker_b = DvcHook(), DvcHook()
    assert worker_a.settings.repo_path != worker_b.settings.repo_path
    caplog.set_level(logging.WARNING, logger="mlops_airflow.hooks._dvc_publish")
    with worker_a.working_copy("data/events") as repo_a, worker_b.working_copy("data/events") as repo_b:
        _place(repo_a, first)
        _place(repo_b, second)
        version_b = worker_b.version_path("data/events", "data: day 2")  # lands first
        version_a = worker_a.version_path("data/events", "data: day 1")  # rejected once, then re-applied
    retries = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of" in retries[0], retries
    assert _commits(origin["bare"])[:2] == ["data: day 1", "data: day 2"]
    assert version_a["rev"] == git(origin["bare"], "rev-parse", "main").strip() != version_b["rev"]
    assert version_a["nfiles"] == 2 and version_a["new_commit"]
    both = DvcHook().materialize_version("data/events", version_a["rev"], tmp_path / "both")
    assert {p.name: file_md5(p) for p in both.iterdir()} == {first.name: file_md5(first),
                                                            second.name: file_md5(second)}


def _op(source: Path, day: str) -> DvcVersionDatasetOperator:
    return DvcVersionDatasetOperator(task_id="version", source_path=str(source), dataset_path="data/events",
                                     file_name=f"{day}.parquet")


def test_concurrent_versionings_of_two_days_both_land(tmp_path, generator, origin, context):
    days = ["2026-11-03", "2026-11-04"]
    sources = {day: _batch(tmp_path, generator, day) for day in days}
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(day: str) -> None:
        try:
            results[day] = _op(sources[day], day).execute(context(run_id=f"run_{day}"))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(day,)) for day in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    data_commits = [c for c in _commits(origin["bare"]) if c.startswith("data: ")]
    assert len(data_commits) == 2, data_commits
    head = git(origin["bare"], "rev-parse", "main").strip()
    assert head in {r["rev"] for r in results.values()}
    files = DvcHook().materialize_version("data/events", head, tmp_path / "head")
    assert sorted(p.name for p in files.iterdir()) == [f"{d}.parquet" for d in days]
    assert all(r["new_commit"] for r in results.values())


def test_retry_adopts_the_version_already_on_the_remote_head(tmp_path, generator, origin, context):
    src = _batch(tmp_path, generator, "2026-11-05")
    first = _op(src, "2026-11-05").execute(context())
    # Another path changes after it: the dataset's version stays the commit that last changed it.
    with DvcHook().working_copy() as repo:
        (repo / "README.md").write_text("data repository\n")
        git(repo, "add", "README.md")
        git(repo, "commit", "-qm", "readme")
        git(repo, "push", "-q", "origin", "HEAD:main")
    count = len(_commits(origin["bare"]))
    again = _op(src, "2026-11-05").execute(context(try_number=2))
    assert not again["new_commit"] and (again["rev"], again["md5"]) == (first["rev"], first["md5"])
    assert len(_commits(origin["bare"])) == count


def test_fixed_repo_path_keeps_the_shared_working_copy(tmp_path, dvc_repo):
    hook = DvcHook()
    assert not hook.settings.per_task and hook.settings.repo_path == dvc_repo["repo"].resolve()
    with hook.working_copy() as repo:
        assert repo == dvc_repo["repo"].resolve()
    assert repo.is_dir(), "a fixed working copy is never removed"
