"""DVC hook: connection type ``dvc`` -> a git + DVC working copy and its remote.

Connection fields (explicit arguments win, then the connection's extra):
- ``extra.repo_path`` (or host): local working copy; created by cloning ``extra.repo_url`` if absent;
- ``extra.repo_url``: git URL to clone and push to (optional for a purely local repository);
- ``extra.branch``: branch to commit data versions on (default ``main``);
- ``extra.remote``: DVC remote name (default: the repository's default remote);
- ``extra.remote_url``: if set, the remote is (re)configured to it in ``.dvc/config.local``;
- login/password: remote credentials, passed to the DVC child process only (as
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for S3-compatible remotes), never into the
  worker's ``os.environ`` and never into a file that git tracks.

DVC and git run as child processes (``python -m dvc``): DVC keeps global state (logging, config
caches) that must not leak between tasks of one worker, and the child gets its own environment.
Every mutation of the working copy holds an exclusive file lock, so two runs never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from mlops_airflow.exceptions import DatasetVersionError

GIT_IDENTITY = ["-c", "user.name=airflow-mlops", "-c", "user.email=airflow-mlops@localhost"]


@dataclass(frozen=True)
class DvcSettings:
    repo_path: Path
    repo_url: str | None
    branch: str
    remote: str | None
    remote_url: str | None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"DvcSettings(repo_path={str(self.repo_path)!r}, remote={self.remote!r}, branch={self.branch!r})"


def file_md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DvcHook(BaseHook):
    """Versions data with DVC in a git working copy.

    :param dvc_conn_id: Airflow connection of type ``dvc``.
    :param repo_path: explicit working-copy path; wins over the connection.
    """

    conn_name_attr = "dvc_conn_id"
    default_conn_name = "dvc_default"
    conn_type = "dvc"
    hook_name = "DVC repository"

    def __init__(self, dvc_conn_id: str = default_conn_name, repo_path: str | None = None) -> None:
        super().__init__()
        self.dvc_conn_id = dvc_conn_id
        self._explicit_repo_path = repo_path

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Working copy path", "login": "Remote access key", "password": "Remote secret"},
            "placeholders": {
                "extra": '{"repo_path": "/data/repo", "repo_url": "git@host:org/data.git", '
                '"branch": "main", "remote": "storage", "remote_url": "s3://bucket/dvc"}'
            },
        }

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
        repo_path = self._explicit_repo_path or extra.get("repo_path") or host
        if not repo_path:
            raise ValueError(f"Connection {self.dvc_conn_id!r} names no repository: set extra.repo_path")
        return DvcSettings(
            repo_path=Path(repo_path).expanduser().resolve(),
            repo_url=extra.get("repo_url"),
            branch=extra.get("branch", "main"),
            remote=extra.get("remote"),
            remote_url=extra.get("remote_url"),
            username=login or None,
            password=password or None,
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

    def _run(self, argv: list[str], *, cwd: Path | None = None, what: str) -> str:
        proc = subprocess.run(
            argv,
            cwd=cwd or self.settings.repo_path,
            env=self._child_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise DatasetVersionError(
                f"{what} failed (exit {proc.returncode}) in {self.settings.repo_path}: {' | '.join(tail)}"
            )
        return proc.stdout

    def git(self, *args: str, what: str | None = None) -> str:
        return self._run(["git", *GIT_IDENTITY, *args], what=what or f"git {args[0]}")

    def dvc(self, *args: str, what: str | None = None) -> str:
        return self._run([sys.executable, "-m", "dvc", *args], what=what or f"dvc {args[0]}")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock on the working copy (held across add/commit/push)."""
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
        """The working copy, cloned from ``repo_url`` when it is not there yet."""
        s = self.settings
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
        if s.remote and s.remote_url:
            self.dvc("remote", "add", "--local", "--force", s.remote, s.remote_url, what="dvc remote add")
        return s.repo_path

    def head_rev(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def rev_exists(self, rev: str) -> bool:
        try:
            self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except DatasetVersionError:
            return False
        return True

    def read_dvc_file(self, path: str, rev: str | None = None) -> dict[str, Any]:
        """The ``outs`` entry of ``<path>.dvc`` at ``rev`` (working copy when None)."""
        import yaml

        dvc_file = f"{path.rstrip('/')}.dvc"
        if rev is None:
            text = (self.settings.repo_path / dvc_file).read_text()
        else:
            if not self.rev_exists(rev):
                raise DatasetVersionError(
                    f"DVC revision {rev!r} does not exist in {self.settings.repo_path}; "
                    "check the dataset version recorded upstream (git log -- {dvc_file})"
                )
            text = self.git("show", f"{rev}:{dvc_file}", what=f"read {dvc_file} at {rev}")
        outs = (yaml.safe_load(text) or {}).get("outs") or []
        if not outs:
            raise DatasetVersionError(f"{dvc_file} at {rev or 'working copy'} tracks no output")
        return outs[0]

    def push(self) -> None:
        args = ["push"] + (["-r", self.settings.remote] if self.settings.remote else [])
        self.dvc(*args, what="dvc push (is the remote reachable and writable?)")
        if self.settings.repo_url:
            self.git("push", "origin", f"HEAD:{self.settings.branch}", what="git push")

    def version_path(self, tracked_path: str, message: str) -> dict[str, Any]:
        """``dvc add`` + git commit (only if changed) + ``dvc push``; returns the dataset version.

        Idempotent: when the content did not change, no commit is made and the current revision
        is returned, so a retried task produces the same version.
        """
        self.dvc("add", tracked_path, what=f"dvc add {tracked_path}")
        dvc_file = f"{tracked_path.rstrip('/')}.dvc"
        gitignore = str(Path(tracked_path).parent / ".gitignore")
        to_stage = [dvc_file] + ([gitignore] if (self.settings.repo_path / gitignore).exists() else [])
        self.git("add", *to_stage)
        changed = self.git("status", "--porcelain", "--", *to_stage).strip()
        if changed:
            self.git("commit", "-m", message, "--", *to_stage, what="git commit of the data version")
        self.push()
        out = self.read_dvc_file(tracked_path)
        return {
            "repo": self.settings.repo_url or str(self.settings.repo_path),
            "rev": self.head_rev(),
            "path": tracked_path,
            "md5": out["md5"],
            "size": int(out.get("size", 0)),
            "nfiles": int(out.get("nfiles", 1)),
            "new_commit": bool(changed),
        }

    def materialize_version(self, path: str, rev: str, dest: Path) -> Path:
        """Write ``path`` as of ``rev`` to ``dest`` (from the cache, else the remote) and verify its hash."""
        expected = self.read_dvc_file(path, rev)["md5"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.dvc("get", ".", path, "--rev", rev, "-o", str(dest), "--force", what=f"dvc get {path}@{rev}")
        if not expected.endswith(".dir"):  # a single file: DVC's md5 is the file's md5
            actual = file_md5(dest)
            if actual != expected:
                raise DatasetVersionError(
                    f"{path}@{rev}: content md5 {actual} does not match the recorded {expected}; "
                    "the DVC cache or remote is corrupt - run `dvc fetch --rev {rev}` and `dvc status -c`"
                )
        return dest

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.ensure_repo()
            remotes = self.dvc("remote", "list")
        except Exception as err:  # noqa: BLE001
            return False, str(err)
        return True, json.dumps({"repo": str(self.settings.repo_path), "remotes": remotes.split()})
