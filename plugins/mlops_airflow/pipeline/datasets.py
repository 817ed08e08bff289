"""The stages a spec without Feast or without DVC uses instead (run inside tasks; heavy imports inside functions).

- :func:`version_locally`: no DVC: the landed batch is copied into the model's dataset folder
  (``<data_root>/datasets/<model>/``, through :mod:`mlops_airflow.storage`: ``file://`` or ``s3://``), and the
  version is the md5 of that folder's files (``{repo: None, rev: "local:<md5[:12]>", path, md5, rows, files}``);
- :func:`build_training_set`: no Feast: the training set is the dataset version's rows (keys, features, label),
  in a training window, sorted, content-hashed, written to ``<output_dir>/<model>/<hash[:16]>.parquet`` (a URI):
  the same result shape as ``FeastTrainingSetOperator`` (``feature_service`` None), so training, registration
  and the reproducibility record read it the same way.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlops_airflow import storage
from mlops_airflow.exceptions import DatasetVersionError, FeatureStoreError

_DATA = (".parquet", ".csv")


def _parquet_rows(uri: str) -> int:
    """Rows of one Parquet artefact from its footer (a remote file: only the footer's byte ranges are read)."""
    import pyarrow.parquet as pq

    if storage.is_local(uri):
        return int(pq.ParquetFile(storage.local_path(uri)).metadata.num_rows)
    with storage.object_path(uri).open("rb") as fh:
        return int(pq.ParquetFile(fh).metadata.num_rows)


def version_locally(landed: str | Path, dataset_dir: str | Path) -> dict[str, Any]:
    """Copy ``landed`` into ``dataset_dir`` (same name) and version the folder by the md5 of its files.

    :param landed: URI (or local path) of the landed batch.
    :param dataset_dir: URI (or local folder) of the model's dataset, ``<data_root>/datasets/<model>``.
    :return: ``{repo: None, rev: "local:<md5[:12]>", path: <dataset URI>, md5, rows, files, file}``.
    """
    source, folder = storage.to_uri(landed), storage.to_uri(dataset_dir)
    dest = storage.join(folder, storage.name(source))
    source_md5 = storage.md5(source)
    if storage.exists(dest):
        if storage.md5(dest) != source_md5:
            raise DatasetVersionError(
                f"{dest} already holds a different batch for {storage.name(source)}; a dataset file is never "
                "overwritten. Move it away if the new batch is a correction, then re-run",
                cause="dataset file differs", evidence_uri=dest,
                next_step="move the older file away if the new batch is a correction, then clear the task",
            )
    else:
        with storage.local_copy(source) as local:
            sent = storage.put_file(local, dest)
        if sent["md5"] != source_md5:
            storage.remove(dest)
            raise DatasetVersionError(
                f"copying {source} to {dest} changed its content (md5 {sent['md5']} != {source_md5}); nothing was "
                "versioned. Clear the task to retry", cause="copy corrupted", evidence_uri=dest,
                next_step="clear the task (a retry copies the batch again)",
            )
    files = storage.listdir(folder)
    files = [f for f in files if f.endswith(_DATA)]
    digest = hashlib.md5(usedforsecurity=False)
    for f in files:
        digest.update(f"{storage.name(f)}:{source_md5 if f == dest else storage.md5(f)}\n".encode())
    md5 = digest.hexdigest()
    rows = sum(_parquet_rows(f) for f in files) if all(f.endswith(".parquet") for f in files) else None
    return {"repo": None, "rev": f"local:{md5[:12]}", "path": folder, "md5": md5, "rows": rows,
            "files": len(files), "file": storage.name(dest)}


def _read_version(version: dict[str, Any], dvc_conn_id: str | None) -> Any:
    import pandas as pd

    if version.get("repo") is None and str(version.get("rev", "")).startswith("local:"):
        files = storage.listdir(version["path"], ".parquet")
        if not files:
            raise FeatureStoreError(
                f"dataset {version['path']} holds no Parquet file: nothing to build a training set from. Check "
                "[mlops] data_root and that version_dataset ran for this model", evidence_uri=version["path"],
                cause="dataset empty", next_step="re-run the loop from land_batch",
            )
        return pd.concat([storage.read_table(f) for f in files], ignore_index=True)
    from mlops_airflow.hooks.dvc_repo import DvcHook

    hook = DvcHook(dvc_conn_id=dvc_conn_id) if dvc_conn_id else DvcHook()
    with tempfile.TemporaryDirectory(prefix="mlops-dataset-") as tmp:
        local = hook.materialize_version(version["path"], version["rev"], Path(tmp) / "data")
        return pd.read_parquet(local)


def build_training_set(
    version: dict[str, Any], *, model_name: str, output_dir: str | Path, features: Sequence[str], label: str,
    entity_columns: Sequence[str], timestamp_column: str, task_type: str, entity_start: str | None = None,
    entity_end: str | None = None, dvc_conn_id: str | None = None,
) -> dict[str, Any]:
    """The training set of ``version`` (see the module docstring); fails naming a missing column."""
    import pandas as pd

    from mlops_airflow.operators.feast_training_set import frame_hash

    df = _read_version(version, dvc_conn_id)
    where = f"{version['path']}@{str(version['rev'])[:12]}"
    keys = [*entity_columns, timestamp_column]
    wanted = {"entity_columns": list(entity_columns), "timestamp_column": [timestamp_column],
              "features": list(features), "label": [label]}
    missing = {k: [c for c in cols if c not in df.columns] for k, cols in wanted.items()}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        raise FeatureStoreError(
            f"dataset {where} lacks the columns ModelSpec names ({missing}); it has {list(df.columns)}. Nothing was "
            "written. Fix the spec's column names, or version batches that have them"
        )
    unset = (None, "", "None")
    window = None
    if entity_start not in unset or entity_end not in unset:
        ts = df[timestamp_column]
        aware = getattr(ts.dt, "tz", None) is not None

        def bound(value: Any) -> Any:  # a day without a zone is UTC's, like every timestamp the loop writes
            stamp = pd.Timestamp(value)
            return stamp.tz_localize("UTC") if aware and stamp.tzinfo is None else stamp

        keep = pd.Series(True, index=df.index)
        if entity_start not in unset:
            keep &= ts >= bound(entity_start)
        if entity_end not in unset:
            keep &= ts < bound(entity_end)
        window = {"start": None if entity_start in unset else str(entity_start),
                  "end": None if entity_end in unset else str(entity_end)}
        df = df[keep]
    if df.empty:
        raise FeatureStoreError(
            f"dataset {where} has no rows in the training window {window}: nothing was written. Widen the window "
            "(param training_window_days) or check that the day's batch was versioned"
        )
    df = df[[*keys, *features, label]].sort_values(keys, kind="stable").reset_index(drop=True)
    dups = df.duplicated(keys, keep=False)
    if dups.any():
        raise FeatureStoreError(
            f"dataset {where}: {int(dups.sum())} rows share an entity key and timestamp ({keys}); the training set "
            "would hold them twice. Nothing was written. Deduplicate upstream (the validation gate checks this)"
        )
    digest = frame_hash(df)
    out = storage.join(output_dir, model_name, f"{digest[:16]}.parquet")
    if not storage.exists(out):  # content-addressed: a retry, or the same rows again, writes nothing
        storage.write_table(out, df)
    null_share = df[list(features)].isna().mean()
    return {
        "uri": out, "hash": digest, "rows": len(df), "columns": list(df.columns), "features": list(features),
        "label": label, "task_type": task_type, "entity_columns": list(entity_columns),
        "timestamp_column": timestamp_column, "feature_service": None, "project": None, "definitions_hash": None,
        "dataset": {k: version.get(k) for k in ("repo", "rev", "path", "md5")}, "entity_window": window,
        "null_share": {c: round(float(v), 6) for c, v in null_share.items() if v > 0}, "dvc": None,
    }
