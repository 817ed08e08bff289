"""Commit a data version and publish it: ``dvc push`` of the data, then ``git push`` of its pointer.

Workers share no working copy, so two of them may version (different days of) one dataset at once from two
clones of the same head. Pushes are serialised by git itself: the first ``git push`` wins; the other is
rejected as a non-fast-forward and then fetches the new remote head, resets its clone to it, pulls that version
of the dataset, puts its own files back on top (re-applies its version), runs ``dvc add`` + commit again and
pushes again: at most ``PUSH_ATTEMPTS`` times, each retry logged. When the new head already records the same
content (a retry of a task whose first try landed), nothing is committed: the version is adopted.

The data always goes to the DVC remote before its pointer goes to git, so a pointer on the branch never names
data that the remote lacks. stdlib only at module level.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from mlops_airflow._io import file_md5
from mlops_airflow.exceptions import DatasetVersionError

DvcHook = Any  # a mlops_airflow.hooks.dvc_repo.DvcHook (not imported: the hook imports this module)
RETRY_HINT = "; fix the cause these lines name, then retry the task"

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 5
# What git prints when another worker moved the branch first (or holds its ref lock at that instant).
_RACE_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
                 "stale info", "[remote rejected]")
_STASH = ".mlops-reapply"


def commit(hook: DvcHook, tracked_path: str, message: str) -> bool:
    """``dvc add`` + ``git commit`` of the pointer when it changed; True when a commit was made."""
    hook.dvc("add", tracked_path, what=f"dvc add {tracked_path}")
    dvc_file = f"{tracked_path.rstrip('/')}.dvc"
    gitignore = str(Path(tracked_path).parent / ".gitignore")
    to_stage = [dvc_file] + ([gitignore] if (hook.settings.repo_path / gitignore).exists() else [])
    hook.git("add", *to_stage)
    changed = bool(hook.git("status", "--porcelain", "--", *to_stage).strip())
    if changed:
        hook.git("commit", "-m", message, "--", *to_stage, what="git commit of the data version")
    return changed


def remote_url(hook: DvcHook) -> str:
    """The URL of the DVC remote the hook pushes to (the connection's, else the repository's config)."""
    s = hook.settings
    if s.remote_url:
        return s.remote_url
    try:
        listing = hook.dvc("remote", "list", what="dvc remote list")
    except DatasetVersionError:
        return s.remote or "(default remote)"
    remotes = dict(line.split(None, 1) for line in listing.splitlines() if len(line.split(None, 1)) == 2)
    if s.remote and s.remote in remotes:
        return remotes[s.remote].split()[0]
    return next(iter(remotes.values()), "(default remote)").split()[0]


def push_data(hook: DvcHook) -> None:
    """``dvc push``; an unreachable remote becomes one error naming its URL and the next step."""
    s = hook.settings
    args = ["push"] + (["-r", s.remote] if s.remote else [])
    try:
        hook.dvc(*args, what="dvc push")
    except DatasetVersionError as err:
        url = remote_url(hook)
        kept = ("nothing reached git: the data repository's branch is unchanged, and the batch is still at its "
                "source" if s.per_task else
                f"the data and its commit stay in {s.repo_path} and its cache; nothing reached git")
        next_step = (f"check that the DVC remote {url} is up and reachable from this worker and that connection "
                     f"{hook.dvc_conn_id!r} holds valid credentials for it, then retry the task (clear it): the "
                     "retry versions the same content, in one commit")
        raise DatasetVersionError(
            f"{str(err).removesuffix(RETRY_HINT)}. The DVC remote {url} is unreachable or not writable with the "
            f"credentials of connection {hook.dvc_conn_id!r}; nothing is lost: {kept}. Next step: {next_step}",
            cause="DVC remote unreachable", evidence_uri=url, next_step=next_step,
        ) from None


def _git_push(hook: DvcHook) -> str | None:
    """``git push`` of HEAD to the branch: None when it landed, git's complaint when another worker was first."""
    s = hook.settings
    proc = hook.run_process(["git", "push", "origin", f"HEAD:refs/heads/{s.branch}"])
    if proc.returncode == 0:
        return None
    text = (proc.stderr or "") + (proc.stdout or "")
    if any(marker in text for marker in _RACE_MARKERS):
        return " | ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip())[-400:]
    hook.fail(proc, what=f"git push to {s.repo_url}")
    return None  # unreachable: fail() raises


def publish(hook: DvcHook, tracked_path: str, message: str, changed: bool) -> bool:
    """Push the data, then the commit, re-applying the version on a newer head when the push is rejected.

    Returns whether the version that landed is a new commit (False: the head already had this content).
    """
    push_data(hook)
    if not hook.settings.repo_url:
        return changed
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        rejected = _git_push(hook)
        if rejected is None:
            return changed
        if attempt == PUSH_ATTEMPTS:
            raise DatasetVersionError(
                f"git push of {tracked_path} to {hook.settings.repo_url} ({hook.settings.branch}) was rejected "
                f"{PUSH_ATTEMPTS} times: other workers keep moving the branch ({rejected}). Nothing is lost: the "
                "data is on the DVC remote and nothing half-done is on the branch. Clear the task (a retry adopts "
                "a version that landed meanwhile)", cause="push contention", next_step="clear the task",
            )
        log.warning(
            "git push of %s rejected (another worker moved %s first): retry %d of %d - fetching the new head, "
            "re-applying this version on it (%s)", tracked_path, hook.settings.branch, attempt, PUSH_ATTEMPTS - 1,
            rejected,
        )
        rebase(hook, tracked_path)
        changed = commit(hook, tracked_path, message)
        if changed:
            push_data(hook)
        else:
            log.info("the new head already records this content of %s: adopting its version", tracked_path)
            return False
    return changed


def rebase(hook: DvcHook, tracked_path: str) -> None:
    """Reset the working copy to the remote head and put this task's files of ``tracked_path`` back on top."""
    s = hook.settings
    repo = s.repo_path
    here = repo / tracked_path
    stash = repo / _STASH / Path(tracked_path).name
    if stash.parent.exists():
        shutil.rmtree(stash.parent)
    stash.parent.mkdir(parents=True)
    if here.exists():
        here.rename(stash)  # same filesystem: a rename, not a copy
    fetch = ["fetch", "-q", "--depth=1"] if hook.is_shallow() else ["fetch", "-q"]
    hook.git(*fetch, "origin", s.branch, what=f"git fetch {s.repo_url} {s.branch}")
    hook.git("reset", "-q", "--hard", "FETCH_HEAD", what="git reset to the new remote head")
    if (repo / f"{tracked_path.rstrip('/')}.dvc").exists():
        hook.pull(tracked_path)
    if stash.is_file() or stash.is_symlink():
        here.parent.mkdir(parents=True, exist_ok=True)
        if here.exists():
            here.unlink()
        stash.rename(here)
    elif stash.is_dir():
        for src in sorted(p for p in stash.rglob("*") if p.is_file()):
            dest = here / src.relative_to(stash)
            if dest.is_file() and file_md5(dest) == file_md5(src):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                dest.unlink()
            src.rename(dest)
    shutil.rmtree(stash.parent, ignore_errors=True)


def last_change(hook: DvcHook, dvc_file: str) -> str:
    """The commit that last changed ``dvc_file``; a shallow clone is deepened until it can tell."""
    for deepen in (16, 256, 0):
        rev = hook.git("log", "-1", "--format=%H", "--", dvc_file).strip()
        if not rev or not hook.is_shallow() or rev not in hook.shallow_commits():
            return rev or hook.head_rev()
        # A shallow clone's boundary commit seems to add every file: look further back before answering.
        args = ["fetch", "-q", f"--deepen={deepen}"] if deepen else ["fetch", "-q", "--unshallow"]
        hook.git(*args, "origin", hook.settings.branch, what="git fetch (deepen the clone)")
    return hook.git("log", "-1", "--format=%H", "--", dvc_file).strip() or hook.head_rev()
