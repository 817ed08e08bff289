"""``probe_dataset`` and ``DvcNewVersionTrigger`` on real git repositories (a local working copy, a bare "server").

The ``.dvc`` files are written the way ``dvc add`` writes them (``outs[0].md5/size/nfiles``) and committed with
git: what the trigger reads is git history, so no DVC run is needed here (tests/unit/sensors covers a producer
running ``dvc add``/``dvc push`` while the trigger waits). Runtime: a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.triggers.dvc import STATE_KEY, DvcNewVersionTrigger, probe_dataset

pytestmark = pytest.mark.unit
DATASET = "data/events"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit_version(repo: Path, md5: str, size: int, nfiles: int | None = 2, path: str = DATASET) -> str:
    """Commit ``<path>.dvc`` as ``dvc add`` writes it; returns the commit."""
    dvc_file = repo / f"{path}.dvc"
    dvc_file.parent.mkdir(parents=True, exist_ok=True)
    out = {"md5": md5, "size": size, "hash": "md5", "path": Path(path).name}
    if nfiles is not None:
        out["nfiles"] = nfiles
    dvc_file.write_text(json.dumps({"outs": [out]}))  # JSON is YAML
    _git(repo, "add", str(dvc_file))
    _git(repo, "commit", "-q", "-m", f"{path}: {md5}")
    return _git(repo, "rev-parse", "HEAD")


def _commit_other(repo: Path, name: str = "README.md") -> str:
    (repo / name).write_text(f"{name} changed\n")
    _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", f"unrelated {name}")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "data_repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _commit_other(path)
    return path


@pytest.fixture
def origin(repo, tmp_path) -> Path:
    """A bare "git server" the working copy pushes to."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    _git(repo, "remote", "add", "origin", str(bare))
    _git(repo, "push", "-q", "origin", "main")
    return bare


class _StateStore:
    def __init__(self, values=None, broken: bool = False):
        self.values, self.broken = dict(values or {}), broken

    async def aget(self, key, default=None):
        if self.broken:
            raise ValueError("several assets share this trigger")
        return self.values.get(key, default)

    async def aset(self, key, value):
        if self.broken:
            raise KeyError(key)
        self.values[key] = value


async def _next(events, timeout: float = 20):
    return await asyncio.wait_for(events.__anext__(), timeout=timeout)


async def _cancel(task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ------------------------------------------------------------------------------------------ probe_dataset
def test_probe_a_local_repository(repo):
    head = _git(repo, "rev-parse", "HEAD")
    untracked = probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(repo))
    assert untracked == {"head": head, "rev": None, "md5": None, "size": None, "nfiles": None}

    rev = _commit_version(repo, "a" * 32 + ".dir", 120, nfiles=3)
    v1 = probe_dataset(dataset_path=f"/{DATASET}/", branch="main", repo_url=None, repo_path=str(repo))
    assert v1 == {"head": rev, "rev": rev, "md5": "a" * 32 + ".dir", "size": 120, "nfiles": 3}
    # Same head: the previous probe is handed back without reading the .dvc file again.
    assert probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(repo), known=v1) is v1

    rev2 = _commit_version(repo, "b" * 32, 7, nfiles=None)  # a single file: dvc writes no nfiles
    assert probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(repo), known=v1) == {
        "head": rev2,
        "rev": rev2,
        "md5": "b" * 32,
        "size": 7,
        "nfiles": 1,
    }


def test_probe_reads_the_branch_not_the_checkout(repo):
    main_rev = _commit_version(repo, "a" * 32, 1)
    _git(repo, "checkout", "-q", "-b", "feature")
    feature_rev = _commit_version(repo, "c" * 32, 2)
    assert probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(repo))["rev"] == main_rev
    assert (
        probe_dataset(dataset_path=DATASET, branch="feature", repo_url=None, repo_path=str(repo))["rev"] == feature_rev
    )


def test_probe_a_remote_through_a_private_mirror(repo, origin, tmp_path):
    mirror_dir = tmp_path / "mirrors"
    rev = _commit_version(repo, "d" * 32 + ".dir", 50, nfiles=5)
    _git(repo, "push", "-q", "origin", "main")
    before = _git(repo, "status", "--porcelain")
    v = probe_dataset(
        dataset_path=DATASET, branch="main", repo_url=str(origin), repo_path=None, mirror_dir=str(mirror_dir)
    )
    assert v == {"head": rev, "rev": rev, "md5": "d" * 32 + ".dir", "size": 50, "nfiles": 5}
    (mirror,) = mirror_dir.iterdir()
    assert mirror.name.endswith(".git") and (mirror / "HEAD").exists()
    assert _git(mirror, "rev-parse", "refs/watch/main") == rev
    assert _git(repo, "status", "--porcelain") == before  # the working copy is never touched

    # Unrelated commit: the head moves, the dataset's version does not.
    other = _commit_other(repo, "features.py")
    _git(repo, "push", "-q", "origin", "main")
    again = probe_dataset(
        dataset_path=DATASET, branch="main", repo_url=str(origin), repo_path=None, mirror_dir=str(mirror_dir), known=v
    )
    assert again["head"] == other and again["md5"] == v["md5"]

    with pytest.raises(DatasetVersionError, match=r"branch 'dev' not found at .*origin.git; check extra.branch"):
        probe_dataset(
            dataset_path=DATASET, branch="dev", repo_url=str(origin), repo_path=None, mirror_dir=str(mirror_dir)
        )


def test_probe_errors_name_what_failed(tmp_path):
    with pytest.raises(DatasetVersionError, match="names neither extra.repo_url nor extra.repo_path"):
        probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=None)
    not_git = tmp_path / "plain"
    not_git.mkdir()
    with pytest.raises(DatasetVersionError, match=rf"git rev-parse main in {not_git} failed \(exit \d+\)"):
        probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(not_git))
    with pytest.raises(DatasetVersionError, match=r"git ls-remote .*nowhere.git refs/heads/main failed \(exit \d+\)"):
        probe_dataset(
            dataset_path=DATASET,
            branch="main",
            repo_url=str(tmp_path / "nowhere.git"),
            repo_path=None,
            mirror_dir=str(tmp_path / "m"),
        )


# ------------------------------------------------------------------------------------------ the trigger
def test_poll_interval_must_be_positive():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="poll_interval must be > 0 seconds"):
            DvcNewVersionTrigger(dataset_path=DATASET, poll_interval=bad)


def test_serialise_round_trip_keeps_every_argument():
    trigger = DvcNewVersionTrigger(
        dataset_path=DATASET,
        dvc_conn_id=None,
        repo_url="https://git/x.git",
        repo_path="/srv/x",
        branch="prod",
        since_md5="m1",
        poll_interval=2.5,
        once=True,
        mirror_dir="/tmp/m",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "mlops_airflow.triggers.dvc.DvcNewVersionTrigger"
    assert kwargs == {
        "dataset_path": DATASET,
        "dvc_conn_id": None,
        "repo_url": "https://git/x.git",
        "repo_path": "/srv/x",
        "branch": "prod",
        "since_md5": "m1",
        "poll_interval": 2.5,
        "once": True,
        "mirror_dir": "/tmp/m",
    }
    assert DvcNewVersionTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_where_to_look_explicit_arguments_then_the_connection(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DVC_WATCH",
        json.dumps(
            {
                "conn_type": "dvc",
                "host": "/srv/from_host",
                "extra": {"repo_url": "https://git.example.com/data.git", "repo_path": "/srv/data", "branch": "prod"},
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW_CONN_DVC_HOST_ONLY", json.dumps({"conn_type": "dvc", "host": "/srv/from_host"}))

    def target(**kwargs):
        return asyncio.run(DvcNewVersionTrigger(dataset_path=DATASET, **kwargs)._target())

    assert target(dvc_conn_id="dvc_watch") == {
        "dataset_path": DATASET,
        "repo_url": "https://git.example.com/data.git",
        "repo_path": "/srv/data",
        "branch": "prod",
        "mirror_dir": None,
    }
    assert target(dvc_conn_id="dvc_host_only") == {
        "dataset_path": DATASET,
        "repo_url": None,
        "repo_path": "/srv/from_host",
        "branch": "main",
        "mirror_dir": None,
    }
    # Explicit kwargs win and the connection is not read at all (it does not exist here).
    assert target(dvc_conn_id="no_such_conn", repo_path="/x", branch="b", mirror_dir="/m") == {
        "dataset_path": DATASET,
        "repo_url": None,
        "repo_path": "/x",
        "branch": "b",
        "mirror_dir": "/m",
    }
    assert target(dvc_conn_id=None, repo_url="https://g/x.git")["repo_url"] == "https://g/x.git"


def test_a_newer_version_than_since_md5_fires_at_once_and_once_stops(repo):
    rev = _commit_version(repo, "a" * 32 + ".dir", 10)
    store = _StateStore()

    async def scenario():
        trigger = DvcNewVersionTrigger(
            dataset_path=DATASET, repo_path=str(repo), since_md5="old.dir", poll_interval=0.05, once=True
        )
        trigger.asset_state_store = store
        events = trigger.run()
        event = await _next(events)
        with pytest.raises(StopAsyncIteration):
            await _next(events)
        return event

    event = asyncio.run(scenario())
    assert event.payload == {
        "repo": str(repo),
        "path": DATASET,
        "rev": rev,
        "md5": "a" * 32 + ".dir",
        "size": 10,
        "nfiles": 2,
        "previous_md5": "old.dir",
    }
    assert store.values == {STATE_KEY: "a" * 32 + ".dir"}


def test_since_md5_empty_means_any_version_is_new(repo):
    _commit_version(repo, "e" * 32, 3, nfiles=None)

    async def scenario():
        trigger = DvcNewVersionTrigger(
            dataset_path=DATASET, repo_path=str(repo), since_md5="", poll_interval=0.05, once=True
        )
        return await _next(trigger.run())

    event = asyncio.run(scenario())
    assert event.payload["md5"] == "e" * 32 and event.payload["previous_md5"] is None


def test_without_baseline_the_first_poll_sets_it_and_only_a_new_md5_fires(repo):
    _commit_version(repo, "a" * 32, 1)

    async def scenario():
        trigger = DvcNewVersionTrigger(dataset_path=DATASET, repo_path=str(repo), poll_interval=0.05)
        events = trigger.run()
        waiting = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.5)
        assert not waiting.done(), "the first poll only takes the baseline"
        await asyncio.to_thread(_commit_other, repo, "features.py")
        await asyncio.sleep(0.5)
        assert not waiting.done(), "a commit that does not change the dataset does not fire"
        rev = await asyncio.to_thread(_commit_version, repo, "b" * 32, 2)
        first = await asyncio.wait_for(waiting, timeout=20)
        rev3 = await asyncio.to_thread(_commit_version, repo, "c" * 32, 3)
        second = await _next(events)  # a watcher keeps going
        await events.aclose()
        return first, rev, second, rev3

    first, rev, second, rev3 = asyncio.run(scenario())
    assert (first.payload["rev"], first.payload["md5"], first.payload["previous_md5"]) == (rev, "b" * 32, "a" * 32)
    assert (second.payload["rev"], second.payload["previous_md5"]) == (rev3, "b" * 32)


def test_the_asset_state_store_wins_over_since_md5(repo):
    _commit_version(repo, "a" * 32, 1)

    async def scenario():
        trigger = DvcNewVersionTrigger(dataset_path=DATASET, repo_path=str(repo), since_md5="older", poll_interval=0.05)
        trigger.asset_state_store = _StateStore({STATE_KEY: "a" * 32})  # announced before a triggerer restart
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.5)
        done = waiting.done()
        await _cancel(waiting)
        return done

    assert asyncio.run(scenario()) is False


def test_a_store_shared_by_several_assets_is_ignored_not_fatal(repo):
    _commit_version(repo, "a" * 32, 1)

    async def scenario():
        trigger = DvcNewVersionTrigger(
            dataset_path=DATASET, repo_path=str(repo), since_md5="old", poll_interval=0.05, once=True
        )
        trigger.asset_state_store = _StateStore(broken=True)
        return await _next(trigger.run())

    assert asyncio.run(scenario()).payload["md5"] == "a" * 32


def test_a_deferred_sensor_fails_on_a_wrong_configuration_a_watcher_keeps_polling(repo, tmp_path):
    async def sensor():
        trigger = DvcNewVersionTrigger(
            dataset_path=DATASET, repo_path=str(repo), branch="nope", poll_interval=0.05, once=True
        )
        await _next(trigger.run())

    with pytest.raises(DatasetVersionError, match="git rev-parse nope in .*data_repo failed"):
        asyncio.run(sensor())

    not_yet = tmp_path / "not_a_repo_yet"
    not_yet.mkdir()

    async def watcher():
        trigger = DvcNewVersionTrigger(dataset_path=DATASET, repo_path=str(not_yet), poll_interval=0.05)
        waiting = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.5)  # several failed polls
        alive = not waiting.done()
        await _cancel(waiting)
        return alive

    assert asyncio.run(watcher()) is True


def test_a_watcher_that_starts_during_an_outage_takes_the_baseline_when_the_repository_answers(tmp_path):
    late = tmp_path / "late_repo"
    late.mkdir()

    async def scenario():
        trigger = DvcNewVersionTrigger(dataset_path=DATASET, repo_path=str(late), poll_interval=0.05)
        events = trigger.run()
        waiting = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.3)  # failed polls: not a repository yet
        await asyncio.to_thread(_git, late, "init", "-q", "-b", "main")
        await asyncio.to_thread(_commit_version, late, "a" * 32, 1)  # the version that already existed
        await asyncio.sleep(0.5)
        spurious = waiting.done()
        if not spurious:
            await asyncio.to_thread(_commit_version, late, "b" * 32, 2)
            event = await asyncio.wait_for(waiting, timeout=20)
        else:
            event = waiting.result()
        await events.aclose()
        return spurious, event

    spurious, event = asyncio.run(scenario())
    assert not spurious, f"announced the existing version as new: {event.payload}"
    assert (event.payload["md5"], event.payload["previous_md5"]) == ("b" * 32, "a" * 32)


def test_a_missing_repository_folder_is_a_dataset_version_error(tmp_path):
    with pytest.raises(DatasetVersionError, match="missing_repo"):
        probe_dataset(dataset_path=DATASET, branch="main", repo_url=None, repo_path=str(tmp_path / "missing_repo"))
