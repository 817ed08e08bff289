"""Quarantine of a failed batch: a verified copy into a fresh folder, its manifest, and an optional DVC version.

The quarantine folder is a URI (``file://`` or ``s3://``, through ``mlops_airflow.storage``). Every file of the
batch is copied there and checked (a local copy is fsynced and its md5 recomputed; an object's md5 is read back
from the store), a ``quarantine.json`` says why, and only then is the original removed: bad data is kept, never
lost, and the quarantine is complete before the gate fails. With a ``dvc`` connection the quarantine folder is also
versioned in the data repository. stdlib only at module level.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from mlops_airflow import storage
from mlops_airflow._io import file_md5, fsync_dir
from mlops_airflow.exceptions import DataValidationError, MLOpsError
from mlops_airflow.operators._common import safe_part

QUARANTINE_FILE = "quarantine.json"


def shown(uri: str | Path) -> str:
    """A location as a person reads it in a message: a local file as its path, anything else as its URI."""
    text = storage.to_uri(uri)
    return str(storage.local_path(text)) if storage.is_local(text) else text


def _folders(root: str) -> list[str]:
    """URIs of the folders directly under ``root`` (newest name last); ``[]`` when absent."""
    if storage.is_local(root):
        path = storage.local_path(root)
        return sorted(p.as_uri() for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    base = storage.object_path(root)
    if not base.exists():
        return []
    return sorted(storage.to_uri(p) for p in base.iterdir() if p.is_dir())


def earlier_quarantine(source_uri: str, quarantine_dir: str) -> str | None:
    """The newest quarantine folder whose ``quarantine.json`` names the batch, so a retry points to it."""
    wanted = {storage.to_uri(source_uri), shown(source_uri)}  # URIs now; plain paths in older manifests
    try:
        folders = _folders(storage.to_uri(quarantine_dir))
    except (OSError, MLOpsError):
        return None
    for folder in sorted(folders, reverse=True)[:500]:
        try:
            if storage.read_json(storage.join(folder, QUARANTINE_FILE)).get("source") in wanted:
                return shown(folder)
        except (OSError, ValueError, MLOpsError):
            continue
    return None


class FailedBatch(NamedTuple):
    """A batch that failed the gate: where it landed, its files on this worker's disk as ``(local copy, path
    relative to the batch)`` (``""`` for a single file), its md5, the verdict and the run's identity."""

    source_uri: str
    files: list[tuple[Path, str]]
    data_md5: str | None
    verdict: dict[str, Any]
    ident: dict[str, str]


def dispose(
    batch: FailedBatch,
    *,
    log: logging.Logger,
    quarantine_on_failure: bool,
    quarantine_dir: str,
    suite_path: str,
    dvc_conn_id: str | None,
    dataset_path: str,
) -> str:
    """Quarantine the batch if asked and possible; return the sentence the failure message uses for it.

    Sets ``verdict["quarantined_to"]`` (a URI; and ``verdict["quarantine_version"]`` when versioned in DVC).
    """
    source_uri, verdict, ident = batch.source_uri, batch.verdict, batch.ident
    if not batch.files:
        return "Nothing to quarantine."
    if not quarantine_on_failure:
        return f"Batch left in place at {shown(source_uri)} (quarantine_on_failure=False)."
    try:
        folder, kept = quarantine(batch, quarantine_dir=quarantine_dir, suite_path=suite_path)
    except (OSError, MLOpsError) as err:
        log.exception("quarantine of %s failed", source_uri)
        return f"Quarantine FAILED ({err}); the batch is still at {shown(source_uri)}."
    verdict["quarantined_to"] = kept
    log.warning("batch quarantined to %s", kept)
    sentence = f"Batch quarantined to {shown(kept)}."
    if dvc_conn_id:
        try:
            version = version_quarantine(folder, ident, dvc_conn_id=dvc_conn_id, dataset_path=dataset_path)
        except (OSError, MLOpsError) as err:
            log.exception("versioning the quarantine folder %s in DVC failed", folder)
            return (
                f"{sentence} Versioning it in DVC ({dvc_conn_id}) FAILED: {err}; the local copy "
                f"is intact - version it by hand (`dvc add {dataset_path}` in the data repository)."
            )
        verdict["quarantine_version"] = version
        storage.write_json(storage.join(folder, "quarantine_version.json"), version)
        sentence += (
            f" Versioned in DVC as {version['entry']} (dataset {version['path']} rev {version['rev'][:12]}, "
            f"md5 {version['md5']})."
        )
    return sentence


def version_quarantine(folder: str, ident: dict[str, str], *, dvc_conn_id: str, dataset_path: str) -> dict[str, Any]:
    """Copy the quarantine folder (a URI) into the data repository and version ``dataset_path``.

    The tracked folder only ever grows (one sub-folder per quarantined batch, names never reused), so every
    earlier quarantined batch stays reachable at HEAD and at every older revision.
    """
    import shutil

    from mlops_airflow.hooks.dvc_repo import DvcHook

    hook = DvcHook(dvc_conn_id=dvc_conn_id)
    name = storage.name(folder)
    entry = f"{dataset_path}/{name}"
    with storage.local_copy(folder) as local, hook.working_copy(dataset_path) as repo, hook.locked():
        dest = repo / entry
        if dest.exists():  # a name clash with another run's folder: never merge or overwrite
            raise DataValidationError(
                f"{entry} already exists in the data repository (a quarantine folder of the same name from "
                f"another run); not overwriting it. Version {shown(folder)} by hand under another name"
            )
        tmp = repo / f".{safe_part(dataset_path)}.{name}.tmp"  # outside the tracked folder
        dest.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(local, tmp)
        for src in (p for p in local.rglob("*") if p.is_file()):
            if file_md5(src) != file_md5(tmp / src.relative_to(local)):
                raise DataValidationError(
                    f"md5 mismatch copying {src} into {tmp}: the disk of the data repository may be full or "
                    f"failing; check it (df -h, dmesg), then version {shown(folder)} by hand"
                )
        tmp.replace(dest)
        message = (
            f"quarantine: {name} from {ident['dag_id']}/{safe_part(ident['run_id'])} "
            f"({ident['task_id']}, try {ident['try_number']})"
        )
        version = hook.version_path(dataset_path, message)
    keep = ("repo", "rev", "path", "md5", "size", "nfiles", "new_commit")
    return {**{k: version[k] for k in keep}, "entry": entry}


def _fresh_folder(root: str, base: str) -> str:
    for attempt in range(1000):
        candidate = storage.join(root, base if attempt == 0 else f"{base}_{attempt}")
        if storage.is_local(candidate):
            try:
                storage.local_path(candidate).mkdir(parents=True)
            except FileExistsError:
                continue
            return candidate
        if not storage.exists(candidate):
            return candidate
    raise DataValidationError(
        f"no free quarantine folder name under {shown(root)} for {base} (1000 taken): archive old quarantine "
        "folders or set another quarantine_dir, then retry the task"
    )


def _copy_verified(src: Path, dst: str) -> dict[str, Any]:
    """Copy one file to ``dst`` and prove it arrived whole (never overwriting a quarantined file)."""
    expected = file_md5(src)
    if storage.is_local(dst):
        target = storage.local_path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(target, "xb") as fout:  # "x": never overwrite a quarantined file
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        fsync_dir(target.parent)
    else:
        if storage.exists(dst):
            raise DataValidationError(f"{dst} already exists: not overwriting a quarantined file; retry the task")
        storage.put_file(src, dst)
    copied = storage.md5(dst)  # read back from the disk or the store
    if copied != expected:
        raise DataValidationError(
            f"md5 mismatch copying {src.name} to {shown(dst)} ({expected} != {copied}): the original is untouched; "
            "the quarantine store may be full or failing - check it, then retry the task"
        )
    return {"md5": copied, "bytes": src.stat().st_size}


def quarantine(batch: FailedBatch, *, quarantine_dir: str, suite_path: str) -> tuple[str, str]:
    """Copy every file into a fresh folder, verify it, write the manifest, then remove the original.

    Returns ``(folder URI, URI of the kept batch)``.
    """
    source_uri, files, data_md5 = storage.to_uri(batch.source_uri), batch.files, batch.data_md5
    verdict, ident = batch.verdict, batch.ident
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = _fresh_folder(storage.to_uri(quarantine_dir), f"{stamp}_{(data_md5 or 'no-md5')[:12]}")
    kept = storage.join(folder, storage.name(source_uri))
    manifest_files = []
    for src, rel in files:
        dst = storage.join(kept, rel) if rel else kept
        facts = _copy_verified(src, dst)
        manifest_files.append({"path": dst.removeprefix(folder + "/"), **facts})
    manifest = {
        "source": source_uri,
        "quarantined_to": kept,
        "quarantined_at": datetime.now(UTC).isoformat(),
        "data_md5": data_md5,
        "reasons": verdict["reasons"],
        "dag_id": ident["dag_id"],
        "run_id": ident["run_id"],
        "task_id": ident["task_id"],
        "try_number": ident["try_number"],
        "suite_path": suite_path,
        "verdict": {**verdict, "quarantined_to": kept},
        "files": manifest_files,
    }
    storage.write_atomic(storage.join(folder, QUARANTINE_FILE), json.dumps(manifest, indent=2, default=str))
    if storage.is_local(folder):
        fsync_dir(storage.local_path(folder))
    _remove_original(source_uri, files)  # only now, with every copy verified and stored
    return folder, kept


def _remove_original(source_uri: str, files: list[tuple[Path, str]]) -> None:
    if not storage.is_local(source_uri):
        for _src, rel in files:
            storage.remove(storage.join(source_uri, rel) if rel else source_uri)
        return
    source = storage.local_path(source_uri)
    for _src, rel in files:
        (source / rel if rel else source).unlink()
    if source.is_dir():
        for sub in sorted((p for p in source.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            sub.rmdir()
        source.rmdir()
    fsync_dir(source.parent)
