"""Fetching a dataset version from DVC and checking it against the hash its ``.dvc`` file records (stdlib only).

A single file's DVC md5 is the md5 of its bytes; a directory's is ``<md5>.dir``, the md5 of DVC's JSON listing of
its files (dvc-data 3). ``verify_output`` recomputes either and, for a directory that differs, names the files
that are missing, unexpected or changed (from the listing in the working copy's cache, when it is there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_airflow._io import file_md5
from mlops_airflow.exceptions import DatasetVersionError

DvcHook = Any  # a mlops_airflow.hooks.dvc_repo.DvcHook (not imported: the hook imports this module)


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


def cached_dir_manifest(repo: Path, md5: str) -> list[dict[str, Any]] | None:
    """The ``.dir`` listing ``[{md5, relpath}]`` of a directory output from ``repo``'s cache, if it is there."""
    if not md5.endswith(".dir"):
        return None
    h = md5.removesuffix(".dir")
    for cache in (repo / ".dvc" / "cache" / "files" / "md5", repo / ".dvc" / "cache"):
        path = cache / h[:2] / f"{h[2:]}.dir"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return None
    return None


def verify_output(repo: Path, local: Path, expected_md5: str, what: str) -> dict[str, Any]:
    """``{md5, size, nfiles}`` of ``local`` once it matches ``expected_md5``; ``DatasetVersionError`` otherwise."""
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
            manifest = cached_dir_manifest(repo, expected_md5)
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


def _remove_path(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fetch_verified(hook: DvcHook, path: str, rev: str, dest: Path) -> Path:
    """``dvc get`` of ``path`` at ``rev`` into a temporary sibling of ``dest``, verified, then renamed to ``dest``."""
    from mlops_airflow.hooks._dvc_publish import RETRY_HINT, remote_url
    from mlops_airflow.lineage import dvc_asset, report_lineage

    expected = hook.read_dvc_file(path, rev)["md5"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    what = f"{path}@{rev[:12]}"
    tmp = dest.with_name(f".{dest.name}.fetching")
    _remove_path(tmp)
    argv = ["get", ".", path, "--rev", rev, "-o", str(tmp), "--force"]
    if hook.settings.remote:
        argv += ["--remote", hook.settings.remote]
    if hook.settings.remote_url:  # `dvc get` opens the revision's tree: pass the override explicitly
        argv += ["--remote-config", f"url={hook.settings.remote_url}"]
        if hook.settings.endpoint_url:
            argv.append(f"endpointurl={hook.settings.endpoint_url}")
    try:
        hook.dvc(*argv, what=f"dvc get {what}")
    except DatasetVersionError as err:
        _remove_path(tmp)
        raise DatasetVersionError(
            f"could not fetch {what} (md5 {expected}): it is not in the local cache and the DVC remote "
            f"{hook.settings.remote or '(default)'} ({remote_url(hook)}) did not deliver it - is the remote reachable "
            "and are the "
            f"credentials on connection {hook.dvc_conn_id!r} right? Nothing was written to {dest}. Cause: "
            f"{str(err).removesuffix(RETRY_HINT)}. Fix the remote or the credentials, then retry the task"
        ) from None
    try:
        hook.verify_output(tmp, expected, what)
    except DatasetVersionError:
        _remove_path(tmp)
        raise
    _remove_path(dest)
    tmp.replace(dest)
    repo = hook.settings.repo_url or str(hook.settings.repo_path)
    report_lineage(hook, inputs=[dvc_asset({"repo": repo, "path": path, "rev": rev, "md5": expected})])
    return dest

