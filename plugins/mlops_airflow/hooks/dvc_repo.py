"""DVC hook: connection type ``dvc`` -> a git + DVC working copy and its remote.

Connection fields (explicit arguments win, then the connection's extra):
- ``extra.repo_path`` (or host): a fixed local working copy (the local stack); created by cloning
  ``extra.repo_url`` if absent. Every mutation holds an exclusive file lock beside it;
- ``extra.repo_url``: git URL to clone and push to (``file:///x.git``, ``git://``, ``https://``, ssh). With it and
  no fixed ``repo_path`` (or with ``extra.working_copy: "per_task"``) the working copy is **per task**: each use
  of the hook (``working_copy()``, or one call of a reading method) clones the branch into a task-local temporary
  folder (shallow), ``dvc pull``s only the paths the task needs, and removes the clone afterwards. Workers share
  no folder; their pushes are serialised by git (see ``_dvc_publish``: a rejected push re-applies the version on
  the new head and pushes again);
- ``extra.branch``: branch to commit data versions on (default ``main``);
- ``extra.remote``: DVC remote name (default: the repository's default remote; ``storage`` when only
  ``remote_url`` is given);
- ``extra.remote_url``: if set, the remote is (re)configured to it in ``.dvc/config.local`` (e.g.
  ``s3://bucket/dvc``); ``extra.endpoint_url`` becomes its ``endpointurl`` there (MinIO, another S3 API), never in
  a file git tracks;
- login/password: remote credentials, passed to the DVC child process only (as
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for S3-compatible remotes), never into the
  worker's ``os.environ`` and never into a file that git tracks.

DVC and git run as child processes (``python -m dvc``): DVC keeps global state (logging, config
caches) that must not leak between tasks of one worker, and the child gets its own environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from mlops_airflow._io import file_md5  # noqa: F401 - re-exported: callers import it from here
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks import _dvc_publish as publish
from mlops_airflow.hooks._dvc_publish import RETRY_HINT
from mlops_airflow.hooks._dvc_verify import cached_dir_manifest, dir_entries, dir_md5, fetch_verified, verify_output
from mlops_airflow.lineage import dvc_asset, report_lineage

__all__ = ["GIT_IDENTITY", "RETRY_HINT", "DvcHook", "DvcSettings", "dir_entries", "dir_md5", "file_md5"]

GIT_IDENTITY = ["-c", "user.name=airflow-mlops", "-c", "user.email=airflow-mlops@localhost"]
DEFAULT_REMOTE_NAME = "storage"


@dataclass(frozen=True)
class DvcSettings:
    repo_path: Path
    repo_url: str | None
    branch: str
    remote: str | None
    remote_url: str | None
    username: str | None = None
    password: str | None = None
    endpoint_url: str | None = None
    per_task: bool = False

    def __repr__(self) -> str:  # never show credentials
        return (f"DvcSettings(repo_path={str(self.repo_path)!r}, remote={self.remote!r}, branch={self.branch!r}, "
                f"per_task={self.per_task})")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()



class DvcHook(BaseHook):
    """Versions data with DVC in a git working copy (a fixed folder, or a clone per task).

    :param dvc_conn_id: Airflow connection of type ``dvc``.
    :param repo_path: explicit working-copy path; wins over the connection (and makes the working copy fixed).
    """

    conn_name_attr = "dvc_conn_id"
    default_conn_name = "dvc_default"
    conn_type = "dvc"
    hook_name = "DVC repository"

    def __init__(self, dvc_conn_id: str = default_conn_name, repo_path: str | None = None) -> None:
        super().__init__()
        self.dvc_conn_id = dvc_conn_id
        self._explicit_repo_path = repo_path
        self._depth = 0  # open working_copy() scopes
        self._cloned = False

    @cached_property
    def settings(self) -> DvcSettings:
        extra: dict[str, Any] = {}
        login = password = None
        host = None
        try:
            conn = self.get_connection(self.dvc_conn_id)
            extra, login, password, host = conn.extra_dejson, conn.login, conn.password, conn.host
        except Exception:
            if not self._explicit_repo_path:
                raise
        repo_url = extra.get("repo_url") or None
        fixed = self._explicit_repo_path or extra.get("repo_path") or host
        per_task = bool(repo_url) and (not fixed or (extra.get("working_copy") == "per_task"
                                                     and not self._explicit_repo_path))
        if per_task:
            scratch = Path(tempfile.mkdtemp(prefix="mlops-dvc-"))
            weakref.finalize(self, shutil.rmtree, scratch, True)  # a safety net; working_copy() removes the clone
            repo_path = scratch / "repo"
        elif fixed:
            repo_path = Path(fixed).expanduser().resolve()
        else:
            raise ValueError(f"Connection {self.dvc_conn_id!r} names no repository: set extra.repo_url (a clone per "
                             "task) or extra.repo_path (a fixed working copy)")
        remote_url = extra.get("remote_url") or None
        return DvcSettings(
            repo_path=repo_path,
            repo_url=repo_url,
            branch=extra.get("branch", "main"),
            remote=extra.get("remote") or (DEFAULT_REMOTE_NAME if remote_url else None),
            remote_url=remote_url,
            username=login or None,
            password=password or None,
            endpoint_url=extra.get("endpoint_url") or None,
            per_task=per_task,
        )

    # -- processes -------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
        env["DVC_NO_ANALYTICS"] = "1"
        env["GIT_TERMINAL_PROMPT"] = "0"
        s = self.settings
        if s.username:
            env["AWS_ACCESS_KEY_ID"] = s.username
            env["AWS_SECRET_ACCESS_KEY"] = s.password or ""
        return env

    def run_process(self, argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run git/DVC as a child process with the hook's environment (credentials in the child only)."""
        if argv[:1] == ["git"]:
            argv = ["git", *GIT_IDENTITY, *argv[1:]]
        return subprocess.run(argv, cwd=cwd or self.settings.repo_path, env=self._child_env(), capture_output=True,
                              text=True, check=False)

    def fail(self, proc: subprocess.CompletedProcess[str], *, what: str) -> None:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).strip().splitlines()]
        tail = [ln for ln in lines if ln and "Having any troubles" not in ln][-5:]
        where = self.settings.repo_url if self.settings.per_task else self.settings.repo_path
        raise DatasetVersionError(f"{what} failed (exit {proc.returncode}) in {where}: {' | '.join(tail)}{RETRY_HINT}")

    def _run(self, argv: list[str], *, cwd: Path | None = None, what: str) -> str:
        proc = self.run_process(argv, cwd=cwd)
        if proc.returncode != 0:
            self.fail(proc, what=what)
        return proc.stdout

    def git(self, *args: str, what: str | None = None) -> str:
        return self._run(["git", *args], what=what or f"git {args[0]}")

    def dvc(self, *args: str, what: str | None = None) -> str:
        return self._run([sys.executable, "-m", "dvc", *args], what=what or f"dvc {args[0]}")

    # -- working copy ----------------------------------------------------------------------
    @contextlib.contextmanager
    def working_copy(self, *pull_paths: str) -> Iterator[Path]:
        """The working copy for the ``with`` block (re-entrant); ``pull_paths`` are ``dvc pull``ed into a clone.

        Per task: cloned on entry (shallow, the branch only), removed when the outermost block exits, so nothing
        outlives the task's use of it. Fixed: the folder itself (it stays).
        """
        self._depth += 1
        try:
            repo = self.ensure_repo()
            for path in pull_paths if self.settings.per_task else ():  # a fixed working copy has its data
                if (repo / f"{path.rstrip('/')}.dvc").exists():
                    self.pull(path)
            yield repo
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.release()

    def release(self) -> None:
        """Remove a per-task clone (a fixed working copy stays); the next use clones afresh."""
        if self.settings.per_task and self._cloned:
            shutil.rmtree(self.settings.repo_path, ignore_errors=True)
            self._cloned = False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the working copy (held across add/commit/push).

        Fixed: a file lock beside the folder, so two tasks on one machine never interleave. Per task: the clone
        is this task's alone (the scope also keeps it until the block exits); git serialises the pushes.
        """
        if self.settings.per_task:
            with self.working_copy():
                yield
            return
        lock_path = self.settings.repo_path.parent / f".{self.settings.repo_path.name}.airflow.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- repository ------------------------------------------------------------------------
    def ensure_repo(self) -> Path:
        """The working copy: a fixed folder (cloned from ``repo_url`` when absent) or this task's clone."""
        s = self.settings
        if s.per_task:
            if not self._cloned:
                _remove(s.repo_path)
                s.repo_path.parent.mkdir(parents=True, exist_ok=True)
                depth = [] if s.repo_url.startswith("/") else ["--depth", "1"]  # a plain path: git ignores --depth
                self._run(["git", "clone", "-q", *depth, "--single-branch", "--no-tags", "--branch", s.branch,
                           s.repo_url, str(s.repo_path)], cwd=s.repo_path.parent, what=f"git clone {s.repo_url}")
                self._cloned = True
                self._configure_remote()
            return s.repo_path
        if not (s.repo_path / ".dvc").is_dir():
            if not s.repo_url:
                raise DatasetVersionError(
                    f"{s.repo_path} is not a DVC repository and connection {self.dvc_conn_id!r} has no "
                    "extra.repo_url to clone; run `git init && dvc init` there or set repo_url"
                )
            s.repo_path.parent.mkdir(parents=True, exist_ok=True)
            self._run(
                ["git", "clone", "--branch", s.branch, s.repo_url, str(s.repo_path)],
                cwd=s.repo_path.parent,
                what=f"git clone {s.repo_url}",
            )
        self._configure_remote()
        return s.repo_path

    def _configure_remote(self) -> None:
        """The connection's remote (URL, endpoint) in ``.dvc/config.local``: git never tracks it."""
        s = self.settings
        if not (s.remote and s.remote_url):
            return
        if self._local_remote_option(s.remote, "url") != s.remote_url:
            self.dvc("remote", "add", "--local", "--force", s.remote, s.remote_url, what="dvc remote add")
        if s.endpoint_url and self._local_remote_option(s.remote, "endpointurl") != s.endpoint_url:
            self.dvc("remote", "modify", "--local", s.remote, "endpointurl", s.endpoint_url,
                     what="dvc remote modify endpointurl")

    def _local_remote_option(self, name: str, option: str) -> str | None:
        """An option of remote ``name`` in ``.dvc/config.local`` (None when unset): skips a ~2 s DVC call."""
        path = self.settings.repo_path / ".dvc" / "config.local"
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None
        section = f"""['remote "{name}"']"""
        inside = False
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("["):
                inside = stripped == section
            elif inside and stripped.partition("=")[0].strip() == option:
                return stripped.partition("=")[2].strip()
        return None

    def _remote_args(self) -> list[str]:
        return ["-r", self.settings.remote] if self.settings.remote else []

    def pull(self, path: str) -> None:
        """``dvc pull`` of one tracked path (what the task needs, nothing else)."""
        try:
            self.dvc("pull", *self._remote_args(), path, what=f"dvc pull {path}")
        except DatasetVersionError as err:
            url = publish.remote_url(self)
            raise DatasetVersionError(
                f"could not pull {path} from the DVC remote {url}: {str(err).removesuffix(RETRY_HINT)}. Check that "
                f"the remote is reachable and connection {self.dvc_conn_id!r} holds valid credentials, then retry "
                "the task", cause="DVC remote unreachable", evidence_uri=url, next_step="retry once it is back",
            ) from None

    def is_shallow(self) -> bool:
        return (self.settings.repo_path / ".git" / "shallow").is_file()

    def shallow_commits(self) -> set[str]:
        try:
            return set((self.settings.repo_path / ".git" / "shallow").read_text().split())
        except OSError:
            return set()

    def _fetch_rev(self, rev: str) -> None:
        """Make ``rev`` present in a shallow per-task clone (a sha fetched alone; else the whole history)."""
        if not self.settings.per_task or self.rev_exists(rev, fetch=False):
            return
        is_sha = len(rev) >= 7 and all(c in "0123456789abcdef" for c in rev.lower())
        if is_sha and self.run_process(["git", "fetch", "-q", "--depth=1", "origin", rev]).returncode == 0:
            return
        unshallow = ["--unshallow"] if self.is_shallow() else []
        self.run_process(["git", "fetch", "-q", "--tags", *unshallow, "origin",
                          "+refs/heads/*:refs/remotes/origin/*"])

    def newest_file(self, tracked_path: str, suffix: str = ".parquet", exclude: Path | None = None) -> Path | None:
        """The newest ``*suffix`` file of a tracked directory in the working copy (None when it has none).

        Newest = last by relative path: batches named by day (``{{ ds }}.parquet``) sort in time order, and
        modification times are not kept by ``git clone`` / ``dvc checkout``. Names starting with ``.`` or ``_`` are
        skipped, as Arrow's dataset discovery does; ``exclude`` (e.g. the file about to be replaced) too.
        """
        root = self.settings.repo_path / tracked_path
        if not root.is_dir():
            return None
        skip = exclude.resolve() if exclude is not None else None
        files = [
            p for p in root.rglob(f"*{suffix}")
            if p.is_file() and not p.name.startswith((".", "_")) and p.resolve() != skip
        ]
        return max(files, key=lambda p: p.relative_to(root).as_posix()) if files else None

    def head_rev(self) -> str:
        with self.working_copy():
            return self.git("rev-parse", "HEAD").strip()

    def rev_exists(self, rev: str, *, fetch: bool = True) -> bool:
        with self.working_copy():
            if fetch:
                self._fetch_rev(rev)
            proc = self.run_process(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"])
            return proc.returncode == 0

    def read_dvc_file(self, path: str, rev: str | None = None) -> dict[str, Any]:
        """The ``outs`` entry of ``<path>.dvc`` at ``rev`` (working copy when None)."""
        import yaml

        dvc_file = f"{path.rstrip('/')}.dvc"
        where = self.settings.repo_url if self.settings.per_task else self.settings.repo_path
        with self.working_copy():
            if rev is None:
                text = (self.settings.repo_path / dvc_file).read_text()
            else:
                if not self.rev_exists(rev):
                    raise DatasetVersionError(
                        f"DVC revision {rev!r} does not exist in {where}; "
                        f"check the dataset version recorded upstream (git log -- {dvc_file})"
                    )
                text = self.git("show", f"{rev}:{dvc_file}", what=f"read {dvc_file} at {rev}")
        outs = (yaml.safe_load(text) or {}).get("outs") or []
        if not outs:
            raise DatasetVersionError(
                f"{dvc_file} at {rev or 'working copy'} tracks no output (an empty or hand-edited pointer); check "
                f"dataset_path, and `git log -p -- {dvc_file}` in the data repository for who changed it"
            )
        return outs[0]

    def push(self) -> None:
        """``dvc push`` of the data, then ``git push`` of the branch (when there is a ``repo_url``)."""
        publish.push_data(self)
        if self.settings.repo_url:
            self.git("push", "origin", f"HEAD:refs/heads/{self.settings.branch}", what="git push")

    def version_path(self, tracked_path: str, message: str) -> dict[str, Any]:
        """``dvc add`` + git commit (only if changed) + ``dvc push`` + ``git push``; returns the dataset version.

        Idempotent: when the content did not change, no commit is made and the revision that last changed the
        ``.dvc`` file is returned (not HEAD: later commits of other paths, such as training sets or quarantined
        batches, must not change this dataset's version), so a retried task produces the same version. A push
        rejected because another worker moved the branch re-applies the version on the new head
        (``_dvc_publish``). Call it inside ``working_copy()``/``locked()`` (the files to version are there).
        """
        with self.working_copy():
            changed = publish.commit(self, tracked_path, message)
            changed = publish.publish(self, tracked_path, message, changed)
            out = self.read_dvc_file(tracked_path)
            dvc_file = f"{tracked_path.rstrip('/')}.dvc"
            version = {
                "repo": self.settings.repo_url or str(self.settings.repo_path),
                "rev": publish.last_change(self, dvc_file),
                "path": tracked_path,
                "md5": out["md5"],
                "size": int(out.get("size", 0)),
                "nfiles": int(out.get("nfiles", 1)),
                "new_commit": bool(changed),
            }
        report_lineage(self, outputs=[dvc_asset(version)])  # hook-level lineage: this version was written
        return version

    def resolve_rev(self, rev: str) -> str:
        """The full commit sha of ``rev`` (a sha, branch or tag); a clear error when it does not exist."""
        with self.working_copy():
            if not self.rev_exists(rev):
                where = self.settings.repo_url if self.settings.per_task else self.settings.repo_path
                raise DatasetVersionError(
                    f"DVC revision {rev!r} does not exist in {where}; check the dataset version recorded upstream "
                    "(`git log --oneline` in the data repository), or `git fetch` if it was pushed from elsewhere"
                )
            return self.git("rev-parse", f"{rev}^{{commit}}").strip()

    def cached_dir_manifest(self, md5: str) -> list[dict[str, Any]] | None:
        """The ``.dir`` listing ``[{md5, relpath}]`` of a directory output from the local cache, if it is there."""
        return cached_dir_manifest(self.settings.repo_path, md5)

    def verify_output(self, local: Path, expected_md5: str, what: str) -> dict[str, Any]:
        """Check a fetched file or directory against the md5 recorded in its ``.dvc`` file (``_dvc_verify``).

        Returns ``{md5, size, nfiles}`` of what is on disk.
        """
        return verify_output(self.settings.repo_path, local, expected_md5, what)

    def materialize_version(self, path: str, rev: str, dest: Path) -> Path:
        """Write ``path`` as of ``rev`` to ``dest`` (from the cache, else the remote) and verify its hash.

        The data is fetched into a temporary sibling and renamed into place only once verified, so ``dest``
        never holds a partial or unverified copy. Works from a per-task clone (fetched for this call, or the
        open ``working_copy()``).
        """
        with self.working_copy():
            return fetch_verified(self, path, rev, Path(dest))

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.working_copy():
                remotes = self.dvc("remote", "list")
        except Exception as err:  # noqa: BLE001
            return False, str(err)
        where = self.settings.repo_url if self.settings.per_task else str(self.settings.repo_path)
        return True, json.dumps({"repo": where, "remotes": remotes.split()})
