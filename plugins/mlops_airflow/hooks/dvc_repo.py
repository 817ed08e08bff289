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

from mlops_airflow._io import file_md5  # noqa: F401 - re-exported: callers import it from here
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.lineage import dvc_asset, report_lineage

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


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def dir_entries(root: Path) -> list[dict[str, str]]:
    """DVC's listing of a directory: ``[{"md5", "relpath"}]`` of every file, sorted by relative POSIX path."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return sorted(({"md5": file_md5(p), "relpath": p.relative_to(root).as_posix()} for p in files),
                  key=lambda e: e["relpath"])


def dir_md5(entries: list[dict[str, str]]) -> str:
    """A directory output's DVC hash: md5 of ``json.dumps(listing, sort_keys=True)`` plus ``.dir`` (dvc-data 3)."""
    import hashlib

    digest = hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest() + ".dir"


RETRY_HINT = "; fix the cause these lines name, then retry the task"

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
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).strip().splitlines()]
            tail = [ln for ln in lines if ln and "Having any troubles" not in ln][-5:]
            raise DatasetVersionError(
                f"{what} failed (exit {proc.returncode}) in {self.settings.repo_path}: {' | '.join(tail)}{RETRY_HINT}"
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
        if s.remote and s.remote_url and self._local_remote_url(s.remote) != s.remote_url:
            self.dvc("remote", "add", "--local", "--force", s.remote, s.remote_url, what="dvc remote add")
        return s.repo_path

    def _local_remote_url(self, name: str) -> str | None:
        """The url of remote ``name`` in ``.dvc/config.local`` (None when unset): skips a ~2 s DVC call per task."""
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
            elif inside and stripped.partition("=")[0].strip() == "url":
                return stripped.partition("=")[2].strip()
        return None

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
        args = ["push"] + (["-r", self.settings.remote] if self.settings.remote else [])
        try:
            self.dvc(*args, what="dvc push")
        except DatasetVersionError as err:
            try:
                head = self.head_rev()[:12]
            except DatasetVersionError:
                head = "HEAD"
            raise DatasetVersionError(
                f"{str(err).removesuffix(RETRY_HINT)}. The DVC remote {self.settings.remote or '(default)'} is "
                "unreachable or not writable with "
                f"the credentials of connection {self.dvc_conn_id!r}; nothing is lost: the data and its commit "
                f"({head}) stay in {self.settings.repo_path} and its cache. Fix the remote, then "
                "retry the task (it pushes the same version without a new commit)"
            ) from None
        if self.settings.repo_url:
            self.git("push", "origin", f"HEAD:{self.settings.branch}", what="git push")

    def version_path(self, tracked_path: str, message: str) -> dict[str, Any]:
        """``dvc add`` + git commit (only if changed) + ``dvc push``; returns the dataset version.

        Idempotent: when the content did not change, no commit is made and the revision that last changed the
        ``.dvc`` file is returned (not HEAD: later commits of other paths, such as training sets or quarantined
        batches, must not change this dataset's version), so a retried task produces the same version.
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
        version = {
            "repo": self.settings.repo_url or str(self.settings.repo_path),
            "rev": self.git("log", "-1", "--format=%H", "--", dvc_file).strip() or self.head_rev(),
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
        if not self.rev_exists(rev):
            raise DatasetVersionError(
                f"DVC revision {rev!r} does not exist in {self.settings.repo_path}; check the dataset version "
                "recorded upstream (`git log --oneline` in the data repository), or `git fetch` if it was pushed "
                "from elsewhere"
            )
        return self.git("rev-parse", f"{rev}^{{commit}}").strip()

    def cached_dir_manifest(self, md5: str) -> list[dict[str, Any]] | None:
        """The ``.dir`` listing ``[{md5, relpath}]`` of a directory output from the local cache, if it is there."""
        if not md5.endswith(".dir"):
            return None
        h = md5.removesuffix(".dir")
        for cache in (self.settings.repo_path / ".dvc" / "cache" / "files" / "md5", self.settings.repo_path / ".dvc"
                      / "cache"):
            path = cache / h[:2] / f"{h[2:]}.dir"
            if path.is_file():
                try:
                    return json.loads(path.read_text())
                except ValueError:
                    return None
        return None

    def verify_output(self, local: Path, expected_md5: str, what: str) -> dict[str, Any]:
        """Check a fetched file or directory against the md5 recorded in its ``.dvc`` file.

        A single file's md5 is the md5 of its bytes. A directory's is ``<md5>.dir``: the md5 of DVC's JSON
        listing of its files (``dir_md5``); on a mismatch the listing in the cache names the differing files.
        Returns ``{md5, size, nfiles}`` of what is on disk.
        """
        if expected_md5.endswith(".dir"):
            if not local.is_dir():
                raise DatasetVersionError(
                    f"{what}: expected a directory (md5 {expected_md5}) at {local}, found none; the DVC cache or "
                    "remote holds something else under that hash - run `dvc status -c` for that revision, then retry"
                )
            entries = dir_entries(local)
            actual = dir_md5(entries)
            size = sum((local / e["relpath"]).stat().st_size for e in entries)
            if actual != expected_md5:
                detail = ""
                manifest = self.cached_dir_manifest(expected_md5)
                if manifest is not None:
                    want = {e["relpath"]: e["md5"] for e in manifest}
                    have = {e["relpath"]: e["md5"] for e in entries}
                    missing = sorted(set(want) - set(have))
                    extra = sorted(set(have) - set(want))
                    changed = sorted(p for p in set(want) & set(have) if want[p] != have[p])
                    detail = f" (missing {missing[:5]}, unexpected {extra[:5]}, changed {changed[:5]})"
                raise DatasetVersionError(
                    f"{what}: directory md5 {actual} does not match the recorded {expected_md5}{detail}; the DVC "
                    "cache or remote is corrupt - run `dvc fetch` for that revision and `dvc status -c`, then retry"
                )
            return {"md5": actual, "size": size, "nfiles": len(entries)}
        if not local.is_file():
            raise DatasetVersionError(
                f"{what}: expected a file (md5 {expected_md5}) at {local}, found none; the DVC cache or remote "
                "holds something else under that hash - run `dvc status -c` for that revision, then retry"
            )
        actual = file_md5(local)
        if actual != expected_md5:
            raise DatasetVersionError(
                f"{what}: content md5 {actual} does not match the recorded {expected_md5}; the DVC cache or remote "
                "is corrupt - run `dvc fetch` for that revision and `dvc status -c`, then retry"
            )
        return {"md5": actual, "size": local.stat().st_size, "nfiles": 1}

    def materialize_version(self, path: str, rev: str, dest: Path) -> Path:
        """Write ``path`` as of ``rev`` to ``dest`` (from the cache, else the remote) and verify its hash.

        The data is fetched into a temporary sibling and renamed into place only once verified, so ``dest``
        never holds a partial or unverified copy.
        """
        expected = self.read_dvc_file(path, rev)["md5"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        what = f"{path}@{rev[:12]}"
        tmp = dest.with_name(f".{dest.name}.fetching")
        _remove(tmp)
        argv = ["get", ".", path, "--rev", rev, "-o", str(tmp), "--force"]
        if self.settings.remote:
            argv += ["--remote", self.settings.remote]
        if self.settings.remote_url:  # `dvc get` opens the revision's tree: pass the override explicitly
            argv += ["--remote-config", f"url={self.settings.remote_url}"]
        try:
            self.dvc(*argv, what=f"dvc get {what}")
        except DatasetVersionError as err:
            _remove(tmp)
            raise DatasetVersionError(
                f"could not fetch {what} (md5 {expected}): it is not in the local cache and the DVC remote "
                f"{self.settings.remote or '(default)'} did not deliver it - is the remote reachable and are the "
                f"credentials on connection {self.dvc_conn_id!r} right? Nothing was written to {dest}. Cause: "
                f"{str(err).removesuffix(RETRY_HINT)}. Fix the remote or the credentials, then retry the task"
            ) from None
        try:
            self.verify_output(tmp, expected, what)
        except DatasetVersionError:
            _remove(tmp)
            raise
        _remove(dest)
        tmp.replace(dest)
        repo = self.settings.repo_url or str(self.settings.repo_path)
        report_lineage(self, inputs=[dvc_asset({"repo": repo, "path": path, "rev": rev, "md5": expected})])
        return dest

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.ensure_repo()
            remotes = self.dvc("remote", "list")
        except Exception as err:  # noqa: BLE001
            return False, str(err)
        return True, json.dumps({"repo": str(self.settings.repo_path), "remotes": remotes.split()})
