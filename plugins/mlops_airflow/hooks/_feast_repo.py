"""Where a Feast feature repository lives inside a DVC data repository, and which DVC paths its file sources read.

Used by ``FeastHook`` for a connection with ``extra.dvc_conn_id``: the feature repository is the folder
``repo_subdir`` of that data repository (a per-task clone when the DVC connection is per task), and the DVC-tracked
paths its ``FileSource``s read are pulled into the clone. No heavy import at module level.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import FeatureStoreError


def repo_subdir(value: Any, conn_id: str) -> str:
    """``extra.repo_subdir`` as a normalised relative POSIX path inside the data repository ("." = its root)."""
    text = str(value or ".").strip() or "."
    norm = posixpath.normpath(text.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm == "..":
        raise FeatureStoreError(
            f"connection {conn_id!r}: extra.repo_subdir={text!r} leaves the data repository; set it to the feature "
            "repository's folder relative to the repository root (\".\" for the root)"
        )
    return norm


def data_paths(value: Any, conn_id: str) -> list[str] | None:
    """``extra.data_paths``: a JSON list, or a comma/newline separated string (a form field); None = derive them.

    Each is a DVC-tracked path relative to the data repository's root (what ``dvc pull`` takes there).
    """
    if value in (None, ""):
        return None
    items = value if isinstance(value, list | tuple) else str(value).replace("\n", ",").split(",")
    paths = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        norm = posixpath.normpath(text.replace("\\", "/")).rstrip("/")
        if norm.startswith(("/", "../")) or norm in ("..", "."):
            raise FeatureStoreError(
                f"connection {conn_id!r}: extra.data_paths entry {text!r} is not a path inside the data repository; "
                "list the DVC-tracked folders the file sources read, relative to its root (e.g. data/events)"
            )
        paths.append(norm)
    return paths


def tracked_path(clone: Path, rel: str) -> str | None:
    """The DVC-tracked path that holds ``rel`` (itself or a parent folder with a ``.dvc`` file), None if none."""
    parts = rel.split("/")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end])
        if (clone / f"{candidate}.dvc").is_file():
            return candidate
    return None


def source_data_paths(store: Any, clone: Path, subdir: str, conn_id: str) -> list[str]:
    """The DVC paths the store's ``FileSource``s read (relative local paths only; URIs and absolute paths skipped).

    The sources come from the registry (the feature views' batch sources and the registered data sources). A
    relative source path is resolved against the feature repository (``subdir`` of the clone) and mapped to the
    DVC-tracked path that holds it (one without a ``.dvc`` file is in git already, or not versioned yet).
    """
    from feast.infra.offline_stores.file_source import FileSource

    try:
        sources = [fv.batch_source for fv in store.list_feature_views()]
        sources += list(store.list_data_sources())
    except Exception as err:  # noqa: BLE001 - any registry failure: the same next step
        raise FeatureStoreError(
            f"connection {conn_id!r}: could not list the file sources to pull ({type(err).__name__}: {err}); set "
            "extra.data_paths to the DVC-tracked paths they read (e.g. [\"data/events\"])"
        ) from err
    found: list[str] = []
    for source in sources:
        if not isinstance(source, FileSource):
            continue
        uri = str(getattr(source.file_options, "uri", "") or source.path or "")
        if not uri or "://" in uri or uri.startswith("/"):
            continue  # an object store or an absolute path: nothing to pull into the clone
        rel = posixpath.normpath(posixpath.join(subdir, uri))
        if rel.startswith("../") or rel == "..":
            continue
        tracked = tracked_path(clone, rel)
        if tracked is None:
            continue  # in git (already in the clone), or not versioned yet: the read names the path
        if tracked not in found:
            found.append(tracked)
    return found
