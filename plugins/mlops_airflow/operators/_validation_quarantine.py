"""Quarantine of a failed batch: a verified move into a fresh folder, its manifest, and an optional DVC version.

The batch is copied (fsync, md5 check) next to a ``quarantine.json`` that says why, and only then deleted. With a
``dvc`` connection the quarantine folder is also versioned in the data repository. stdlib only at module level.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import DataValidationError, MLOpsError
from mlops_airflow.operators._common import safe_part
from mlops_airflow.operators._validation_files import file_md5, fsync_dir, write_atomic

QUARANTINE_FILE = "quarantine.json"


def earlier_quarantine(source: Path, quarantine_dir: str) -> str | None:
    """The newest quarantine folder whose ``quarantine.json`` names ``source``, so a retry points to it."""
    root = Path(quarantine_dir)
    if not root.is_dir():
        return None
    wanted = str(source.absolute())
    for manifest in sorted(root.glob(f"*/{QUARANTINE_FILE}"), reverse=True)[:500]:
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("source") == wanted:
                return str(manifest.parent)
        except (OSError, ValueError):
            continue
    return None


def dispose(
    source: Path,
    data_md5: str | None,
    verdict: dict[str, Any],
    ident: dict[str, str],
    *,
    log: logging.Logger,
    quarantine_on_failure: bool,
    quarantine_dir: str,
    suite_path: str,
    dvc_conn_id: str | None,
    dataset_path: str,
) -> str:
    """Quarantine the batch if asked and possible; return the sentence the failure message uses for it.

    Sets ``verdict["quarantined_to"]`` (and ``verdict["quarantine_version"]`` when versioned in DVC).
    """
    if not source.exists():
        return "Nothing to quarantine."
    if not quarantine_on_failure:
        return f"Batch left in place at {source} (quarantine_on_failure=False)."
    try:
        target = quarantine(source, data_md5, verdict, ident, quarantine_dir=quarantine_dir, suite_path=suite_path)
    except (OSError, DataValidationError) as err:
        log.exception("quarantine of %s failed", source)
        return f"Quarantine FAILED ({err}); the batch is still at {source}."
    verdict["quarantined_to"] = str(target)
    log.warning("batch quarantined to %s", target)
    sentence = f"Batch quarantined to {target}."
    if dvc_conn_id:
        try:
            version = version_quarantine(target.parent, ident, dvc_conn_id=dvc_conn_id, dataset_path=dataset_path)
        except (OSError, MLOpsError) as err:
            log.exception("versioning the quarantine folder %s in DVC failed", target.parent)
            return (
                f"{sentence} Versioning it in DVC ({dvc_conn_id}) FAILED: {err}; the local copy "
                f"is intact - version it by hand (`dvc add {dataset_path}` in the data repository)."
            )
        verdict["quarantine_version"] = version
        update_manifest(target.parent, version)
        sentence += (
            f" Versioned in DVC as {version['entry']} (dataset {version['path']} rev {version['rev'][:12]}, "
            f"md5 {version['md5']})."
        )
    return sentence


def version_quarantine(folder: Path, ident: dict[str, str], *, dvc_conn_id: str, dataset_path: str) -> dict[str, Any]:
    """Copy the quarantine folder into the data repository and version ``dataset_path``.

    The tracked folder only ever grows (one sub-folder per quarantined batch, names never reused), so every
    earlier quarantined batch stays reachable at HEAD and at every older revision.
    """
    import shutil

    from mlops_airflow.hooks.dvc_repo import DvcHook

    hook = DvcHook(dvc_conn_id=dvc_conn_id)
    repo = hook.ensure_repo()
    entry = f"{dataset_path}/{folder.name}"
    dest = repo / entry
    with hook.locked():
        if dest.exists():  # a name clash with another run's folder: never merge or overwrite
            raise DataValidationError(
                f"{dest} already exists in the data repository (a quarantine folder of the same name from "
                f"another run); not overwriting it. Version {folder} by hand under another name"
            )
        tmp = repo / f".{safe_part(dataset_path)}.{folder.name}.tmp"  # outside the tracked folder
        dest.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(folder, tmp)
        for src in (p for p in folder.rglob("*") if p.is_file()):
            if file_md5(src) != file_md5(tmp / src.relative_to(folder)):
                raise DataValidationError(
                    f"md5 mismatch copying {src} into {tmp}: the disk of the data repository may be full or "
                    f"failing; check it (df -h, dmesg), then version {folder} by hand"
                )
        tmp.replace(dest)
        message = (
            f"quarantine: {folder.name} from {ident['dag_id']}/{safe_part(ident['run_id'])} "
            f"({ident['task_id']}, try {ident['try_number']})"
        )
        version = hook.version_path(dataset_path, message)
    keep = ("repo", "rev", "path", "md5", "size", "nfiles", "new_commit")
    return {**{k: version[k] for k in keep}, "entry": entry}


def update_manifest(folder: Path, version: dict[str, Any]) -> None:
    """Record the DVC version next to the local quarantine manifest (the copy in DVC has the original)."""
    side = folder / "quarantine_version.json"
    write_atomic(side, json.dumps(version, indent=2))


def _fresh_folder(root: Path, base: str) -> Path:
    for attempt in range(1000):
        candidate = root / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise DataValidationError(
        f"no free quarantine folder name under {root} for {base} (1000 taken): archive old quarantine "
        "folders or set another quarantine_dir, then retry the task"
    )


def quarantine(
    source: Path,
    data_md5: str | None,
    verdict: dict[str, Any],
    ident: dict[str, str],
    *,
    quarantine_dir: str,
    suite_path: str,
) -> Path:
    """Copy every file of the batch into a fresh folder, fsync, verify md5s, write the manifest, then delete."""
    source = source.absolute()
    root = Path(quarantine_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = _fresh_folder(root, f"{stamp}_{(data_md5 or 'no-md5')[:12]}")

    if source.is_dir():
        pairs = [(p, folder / source.name / p.relative_to(source)) for p in sorted(source.rglob("*")) if p.is_file()]
    else:
        pairs = [(source, folder / source.name)]
    manifest_files = []
    for src, dst in pairs:
        expected = file_md5(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(dst, "xb") as fout:  # "x": never overwrite a quarantined file
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        copied = file_md5(dst)
        if copied != expected:
            raise DataValidationError(
                f"md5 mismatch copying {src} to {dst} ({expected} != {copied}): the original is untouched; the "
                f"disk of {root} may be full or failing - check it (df -h, dmesg), then retry the task"
            )
        fsync_dir(dst.parent)
        manifest_files.append({"path": str(dst.relative_to(folder)), "md5": copied, "bytes": dst.stat().st_size})

    manifest = {
        "source": str(source),
        "quarantined_to": str(folder / source.name),
        "quarantined_at": datetime.now(UTC).isoformat(),
        "data_md5": data_md5,
        "reasons": verdict["reasons"],
        "dag_id": ident["dag_id"],
        "run_id": ident["run_id"],
        "task_id": ident["task_id"],
        "try_number": ident["try_number"],
        "suite_path": suite_path,
        "verdict": {**verdict, "quarantined_to": str(folder / source.name)},
        "files": manifest_files,
    }
    with open(folder / QUARANTINE_FILE, "x", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(folder)

    # Only now, with every copy verified and on disk, remove the original.
    for src, _dst in pairs:
        src.unlink()
    if source.is_dir():
        for sub in sorted((p for p in source.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            sub.rmdir()
        source.rmdir()
    fsync_dir(source.parent)
    return folder / source.name
