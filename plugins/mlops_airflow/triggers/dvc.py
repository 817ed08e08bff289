"""Wait for a new version of a DVC-tracked dataset: an async, serialisable event trigger.

``DvcNewVersionTrigger`` is a ``BaseEventTrigger``, so it serves both ways Airflow 3 waits for data:

- in an ``AssetWatcher`` (``Asset("dvc://data_repo/data/events", watchers=[AssetWatcher(name=...,
  trigger=DvcNewVersionTrigger(...))])``): it runs in the triggerer for as long as a DAG is scheduled on the
  asset and turns every new version into an asset event whose extra is ``{"from_trigger": True, "payload":
  {repo, path, rev, md5, size, nfiles, previous_md5}}``; the last md5 it announced is kept in the asset's
  state store (Airflow 3.3), so a triggerer restart neither repeats nor misses a version;
- behind ``DvcNewVersionSensor`` (deferrable, ``once=True``): it fires once and the sensor resumes.

What counts as a new version: the ``outs[0].md5`` of ``<path>.dvc`` on ``branch`` differs from the last one seen.
Other commits (feature definitions, a README) do not fire. How it looks:

- connection with ``extra.repo_url`` (production: a git server): ``git ls-remote`` (cheap) each poll; only when
  the branch head moves, a shallow fetch of that commit into a private bare mirror (``mirror_dir``) and
  ``git show <sha>:<path>.dvc``. The workers' working copies are never touched;
- a purely local repository (``extra.repo_path`` only, the local stack): ``git rev-parse`` and ``git show`` on it,
  read-only.

No credentials are stored in the trigger's kwargs: it reads the connection in the triggerer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from mlops_airflow.exceptions import DatasetVersionError

STATE_KEY = "dvc_last_md5"
GIT_TIMEOUT_S = 120


def _git(argv: list[str], cwd: str | Path | None = None, what: str = "git") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        proc = subprocess.run(
            ["git", *argv], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=GIT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise DatasetVersionError(f"{what} timed out after {GIT_TIMEOUT_S}s; is the git server reachable?") from None
    except OSError as err:  # a missing working copy (cwd) or no git binary: retryable like any git failure
        raise DatasetVersionError(f"{what} could not run in {cwd}: {err}; check repo_path and that git is installed") \
            from None
    if proc.returncode != 0:
        tail = " | ".join(ln for ln in (proc.stderr or proc.stdout).strip().splitlines()[-3:] if ln.strip())
        raise DatasetVersionError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def probe_dataset(
    *,
    dataset_path: str,
    branch: str,
    repo_url: str | None,
    repo_path: str | None,
    mirror_dir: str | None = None,
    known: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The dataset's current version on ``branch``: ``{rev, md5, size, nfiles}``; None when it is not tracked yet.

    ``known`` (the previous probe) short-cuts the work when the branch head has not moved.
    """
    import yaml

    dvc_file = f"{dataset_path.strip('/')}.dvc"
    ref = f"refs/heads/{branch}"
    if repo_url:
        heads = _git(["ls-remote", repo_url, ref], what=f"git ls-remote {repo_url} {ref}").split()
        if not heads:
            raise DatasetVersionError(
                f"branch {branch!r} not found at {repo_url}; check extra.branch of the dvc connection"
            )
        sha = heads[0]
        if known and known.get("head") == sha:
            return known
        mirror = Path(mirror_dir or Path(tempfile.gettempdir()) / "mlops-dvc-watch")
        mirror = mirror / (hashlib.sha1(repo_url.encode(), usedforsecurity=False).hexdigest()[:16] + ".git")
        if not (mirror / "HEAD").exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            _git(["init", "-q", "--bare", str(mirror)], what=f"git init {mirror}")
        _git(["fetch", "-q", "--depth=1", repo_url, f"+{ref}:refs/watch/{branch}"], cwd=mirror,
             what=f"git fetch {repo_url} {branch}")
        cwd: str | Path = mirror
    else:
        if not repo_path:
            raise DatasetVersionError("the dvc connection names neither extra.repo_url nor extra.repo_path")
        sha = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo_path,
                   what=f"git rev-parse {branch} in {repo_path}").strip()
        if known and known.get("head") == sha:
            return known
        cwd = repo_path
    try:
        text = _git(["show", f"{sha}:{dvc_file}"], cwd=cwd, what=f"git show {sha[:12]}:{dvc_file}")
    except DatasetVersionError:
        return {"head": sha, "rev": None, "md5": None, "size": None, "nfiles": None}  # not tracked (yet)
    outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
    out = outs[0]
    return {
        "head": sha,
        "rev": sha,
        "md5": out.get("md5"),
        "size": int(out["size"]) if out.get("size") is not None else None,
        "nfiles": int(out.get("nfiles", 1)) if out.get("md5") else None,
    }


class DvcNewVersionTrigger(BaseEventTrigger):
    """Fires when ``<dataset_path>.dvc`` on the branch records a content hash other than the last one seen.

    :param dataset_path: the tracked path inside the data repository, e.g. ``data/events``.
    :param dvc_conn_id: connection of type ``dvc`` (``extra.repo_url`` / ``repo_path`` / ``branch``), read in
        the triggerer.
    :param repo_url: explicit git URL to watch (wins over the connection).
    :param repo_path: explicit local repository to watch when there is no ``repo_url``.
    :param branch: explicit branch (default: the connection's, else ``main``).
    :param since_md5: the version already known; a different md5 on the first poll fires at once. Without it
        (and without stored state) the first poll only sets the baseline.
    :param poll_interval: seconds between polls.
    :param once: stop after the first event (a deferred sensor); False keeps watching (an AssetWatcher).
    :param mirror_dir: where the bare mirror of a remote repository lives (default: the temp folder).
    """

    def __init__(
        self,
        *,
        dataset_path: str,
        dvc_conn_id: str | None = "dvc_default",
        repo_url: str | None = None,
        repo_path: str | None = None,
        branch: str | None = None,
        since_md5: str | None = None,
        poll_interval: float = 60.0,
        once: bool = False,
        mirror_dir: str | None = None,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        self.dataset_path = dataset_path
        self.dvc_conn_id = dvc_conn_id
        self.repo_url = repo_url
        self.repo_path = repo_path
        self.branch = branch
        self.since_md5 = since_md5
        self.poll_interval = poll_interval
        self.once = once
        self.mirror_dir = mirror_dir

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset_path": self.dataset_path,
                "dvc_conn_id": self.dvc_conn_id,
                "repo_url": self.repo_url,
                "repo_path": self.repo_path,
                "branch": self.branch,
                "since_md5": self.since_md5,
                "poll_interval": self.poll_interval,
                "once": self.once,
                "mirror_dir": self.mirror_dir,
            },
        )

    async def _target(self) -> dict[str, Any]:
        """Where to look: explicit kwargs first, then the connection's extra."""
        extra: dict[str, Any] = {}
        host = None
        if self.dvc_conn_id and not (self.repo_url or self.repo_path):
            from airflow.sdk import BaseHook

            conn = await BaseHook.aget_connection(self.dvc_conn_id)
            extra, host = conn.extra_dejson, conn.host
        return {
            "dataset_path": self.dataset_path,
            "repo_url": self.repo_url or (None if self.repo_path else extra.get("repo_url")),
            "repo_path": self.repo_path or extra.get("repo_path") or host,
            "branch": self.branch or extra.get("branch") or "main",
            "mirror_dir": self.mirror_dir,
        }

    async def _stored_md5(self) -> str | None:
        store = self.asset_state_store
        if store is None:
            return None
        try:
            value = await store.aget(STATE_KEY)
        except (ValueError, KeyError):  # several assets share this trigger: no single accessor
            return None
        return value if isinstance(value, str) else None

    async def _store_md5(self, md5: str) -> None:
        store = self.asset_state_store
        if store is None:
            return
        try:
            await store.aset(STATE_KEY, md5)
        except (ValueError, KeyError):
            self.log.warning("could not record %s in the asset state store", md5)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        target = await self._target()
        where = target["repo_url"] or target["repo_path"]
        stored = await self._stored_md5()
        baseline = stored if stored is not None else self.since_md5  # "" = nothing tracked yet: any md5 is new
        self.log.info(
            "watching %s:%s@%s for a new DVC version (baseline md5 %s, every %ss)",
            where, self.dataset_path, target["branch"], baseline or "from the first poll", self.poll_interval,
        )
        known: dict[str, Any] | None = None
        first = True
        while True:
            try:
                known = await asyncio.to_thread(probe_dataset, known=known, **target)
            except DatasetVersionError as err:
                if first and self.once:  # a deferred sensor: a wrong URL/branch is a configuration error
                    raise
                # A watcher keeps polling through outages of the git server (it has no task to fail).
                self.log.warning("poll failed, retrying in %ss: %s", self.poll_interval, err)
            else:
                md5 = known.get("md5") if known else None
                if baseline is None:  # the first successful poll sets it, even after failed ones
                    baseline = md5 or ""
                    self.log.info("baseline %s at %s", md5, (known or {}).get("rev"))
                elif md5 and md5 != baseline:
                    payload = {
                        "repo": where,
                        "path": self.dataset_path,
                        "rev": known["rev"],
                        "md5": md5,
                        "size": known["size"],
                        "nfiles": known["nfiles"],
                        "previous_md5": baseline or None,
                    }
                    self.log.info("new version of %s: md5 %s at %s", self.dataset_path, md5, known["rev"])
                    await self._store_md5(md5)
                    baseline = md5
                    yield TriggerEvent(payload)
                    if self.once:
                        return
            first = False
            await asyncio.sleep(self.poll_interval)
