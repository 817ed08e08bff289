"""``FeastTrainingSetOperator``: a point-in-time training set from a DVC data version and a feature service."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import storage
from mlops_airflow._io import copy_atomic
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks.dvc_repo import DvcHook
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators._common import as_dict
from mlops_airflow.operators._feast_common import parse_instant, read_version

if TYPE_CHECKING:
    from airflow.sdk import Context


def definitions_hash(store: Any, service: Any) -> str:
    """sha256 of the *specs* of a feature service and its views (no apply timestamps), i.e. the feature logic."""
    digest = hashlib.sha256(service.to_proto().spec.SerializeToString(deterministic=True))
    for projection in sorted(service.feature_view_projections, key=lambda p: p.name):
        view = store.get_feature_view(projection.name)
        digest.update(view.to_proto().spec.SerializeToString(deterministic=True))
    return digest.hexdigest()


def frame_hash(df: Any) -> str:
    """Content hash of a DataFrame: column names, dtypes and values, independent of Parquet writer metadata."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return digest.hexdigest()


class FeastTrainingSetOperator(BaseOperator):
    """Point-in-time training set: entity rows from a DVC data version joined with a feature service.

    Entity rows (``entity_columns`` + ``timestamp_column`` + ``label_column``) are read from the exact
    dataset version (``dvc get`` at its revision, not the working copy; a local version ``rev: local:<md5>`` from
    its folder), joined with
    ``get_historical_features`` and written, sorted, to a content-addressed Parquet URI
    ``output_dir/<service>/<hash[:16]>.parquet`` (``output_dir`` a URI, ``s3://...``, or a folder; the file is
    built in the task's temporary folder and put whole through ``mlops_airflow.storage``). A retry finds it and
    writes nothing. ``uri`` in the result is that URI.

    Returns ``{uri, hash, rows, columns, feature_service, project, definitions_hash, dataset}``.

    :param dataset_version: the upstream DVC version ``{rev, path, md5, ...}`` (templated / XCom); a local version
        (``repo`` None, ``rev: local:<md5>``) is read from its ``path``, a folder or a URI.
    :param feature_service: Feast feature service name (templated).
    :param output_dir: folder or URI where training sets are written (templated).
    :param label_column: the label column of the dataset (templated); None = the feature service's ``label`` tag
        (``FeatureService(..., tags={"label": "y"})``); neither is an error naming this parameter.
    :param entity_columns: the entity key columns; None = the join keys of the service's feature views.
    :param timestamp_column: the event-time column of the dataset.
    :param feast_conn_id: Airflow connection of the feature repository.
    :param repo_path: the feature repository (a folder with ``feature_store.yaml``); wins over the connection.
    :param track_with_dvc: also version the Parquet in the data repository of ``dvc_conn_id`` at
        ``<dvc_output_dir>/<service>/<hash[:16]>.parquet`` (dvc add + git commit + dvc push); the result then
        carries ``dvc: {repo, rev, path, md5}``, so the training set itself can be fetched at that revision.
    :param dvc_output_dir: folder inside the data repository for tracked training sets (templated).
    :param entity_start: keep only entity rows with ``timestamp_column >= entity_start`` (ISO 8601 with a timezone,
        templated; None = from the first row). With ``entity_end`` this is the *training window*: after drift,
        a model trained on recent rows only is not diluted by the old distribution. The window is in the result
        (``entity_window``) and so in the reproducibility record, and the reproduce DAG applies it again.
    :param entity_end: keep only entity rows with ``timestamp_column < entity_end`` (templated; None = to the last).
    """

    template_fields: Sequence[str] = (
        "dataset_version",
        "feature_service",
        "output_dir",
        "dvc_output_dir",
        "entity_start",
        "entity_end",
        "label_column",
    )
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        dataset_version: dict[str, Any] | str,
        feature_service: str,
        output_dir: str,
        label_column: str | None = None,
        entity_columns: Sequence[str] | None = None,
        timestamp_column: str = "event_timestamp",
        feast_conn_id: str = FeastHook.default_conn_name,
        repo_path: str | None = None,
        dvc_conn_id: str = DvcHook.default_conn_name,
        track_with_dvc: bool = False,
        dvc_output_dir: str = "training_sets",
        entity_start: str | datetime | None = None,
        entity_end: str | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entity_start = entity_start
        self.entity_end = entity_end
        self.track_with_dvc = track_with_dvc
        self.dvc_output_dir = dvc_output_dir
        self.dataset_version = dataset_version
        self.feature_service = feature_service
        self.output_dir = output_dir
        self.label_column = label_column
        self.entity_columns = list(entity_columns) if entity_columns else None
        self.timestamp_column = timestamp_column
        self.feast_conn_id = feast_conn_id
        self.repo_path = repo_path
        self.dvc_conn_id = dvc_conn_id

    @cached_property
    def feast_hook(self) -> FeastHook:
        return FeastHook(feast_conn_id=self.feast_conn_id, repo_path=self.repo_path)

    def resolve_columns(self, store: Any, service: Any) -> None:
        """Entity keys and label from the parameters, else from the feature service (views' join keys, tags)."""
        if not self.entity_columns:
            keys: list[str] = []
            for projection in service.feature_view_projections:
                for column in store.get_feature_view(projection.name).entity_columns:
                    if column.name not in keys:
                        keys.append(column.name)
            self.entity_columns = keys
        if self.label_column in (None, "", "None"):
            tags = dict(getattr(service, "tags", None) or {})
            self.label_column = tags.get("label") or tags.get("mlops.label")
        if not self.label_column:
            raise FeatureStoreError(
                f"FeastTrainingSetOperator needs label_column: none was passed and feature service "
                f"{self.feature_service!r} has no 'label' tag. Pass label_column (ModelSpec.label), or tag the "
                "service: FeatureService(..., tags={'label': '<column>'})"
            )

    def entity_rows(self, version: dict[str, Any]) -> Any:
        import pyarrow as pa

        wanted = [*(self.entity_columns or []), self.timestamp_column, self.label_column]
        where = f"{version['path']}@{version['rev'][:12]}"
        try:
            df = read_version(version, self.dvc_conn_id)
        except FileNotFoundError as err:
            raise FeatureStoreError(
                f"dataset {where} is not there ({err}). Nothing was written. Check that the right data version "
                "reached this task (the XCom of the versioning task) and that its folder or URI still exists",
                cause="dataset version missing", evidence_uri=str(version["path"]),
                next_step="re-run the versioning task, then this one",
            ) from None
        except (OSError, ValueError, pa.ArrowException) as err:
            raise FeatureStoreError(
                f"dataset {where} is not readable Parquet ({type(err).__name__}: {err}). Nothing was written; "
                "the version stays in DVC as it is. Run the validation gate before versioning (it quarantines "
                "corrupt batches) and version a readable batch"
            ) from None
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise FeatureStoreError(
                f"dataset {where} lacks entity/label columns {missing} (entity_columns={self.entity_columns}, "
                f"timestamp_column={self.timestamp_column!r}, label_column={self.label_column!r}); it has "
                f"{list(df.columns)}. Nothing was written. Set them to its names (ModelSpec.entity_columns/"
                "timestamp_column/label), or validate and version a batch that has them"
            )
        rows = df[wanted]
        nulls = rows[self.entity_columns].isna().any(axis=1)
        if nulls.any():
            raise FeatureStoreError(
                f"dataset {where}: {int(nulls.sum())} of {len(rows)} rows have a null entity key "
                f"({self.entity_columns}), e.g. rows {list(rows.index[nulls][:5])}. Nothing was written. Run the "
                "validation gate before versioning (it rejects such batches) and version a fixed batch"
            )
        if getattr(rows[self.timestamp_column].dtype, "tz", None) is None:
            raise FeatureStoreError(
                f"dataset {where}: column {self.timestamp_column} has timestamps without a timezone (dtype "
                f"{rows[self.timestamp_column].dtype}); a point-in-time join needs UTC. Nothing was written. Write "
                "the timestamps as UTC upstream and version the batch again"
            )
        keys = [*self.entity_columns, self.timestamp_column]
        dups = rows.duplicated(keys, keep=False)
        if dups.any():
            example = rows.loc[dups, keys].head(3).astype(str).to_dict("records")
            raise FeatureStoreError(
                f"dataset {where}: {int(dups.sum())} rows share an entity key and timestamp ({keys}), e.g. "
                f"{example}; the training set would hold them twice. Nothing was written. Deduplicate the batch "
                "upstream (the validation gate checks this) and version it again"
            )
        return rows

    def _window(self) -> dict[str, str] | None:
        unset = (None, "", "None")  # "None": a template that rendered an absent value as text
        start = parse_instant(self.entity_start, "entity_start") if self.entity_start not in unset else None
        end = parse_instant(self.entity_end, "entity_end") if self.entity_end not in unset else None
        if start is not None and end is not None and start >= end:
            raise ValueError(f"entity_start {start.isoformat()} must be before entity_end {end.isoformat()}")
        if start is None and end is None:
            return None
        return {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None}

    def execute(self, context: Context) -> dict[str, Any]:
        with self.feast_hook.feature_repo():  # per task: the data repository cloned for this task, sources pulled
            return self._build()

    def _build(self) -> dict[str, Any]:
        import pandas as pd

        version = as_dict(self.dataset_version, "dataset_version")
        window = self._window()
        store = self.feast_hook.get_store()
        service = self.feast_hook.get_feature_service(store, self.feature_service)
        self.resolve_columns(store, service)
        entities = self.entity_rows(version)
        if entities.empty:
            raise FeatureStoreError(
                f"dataset {version['path']}@{version['rev'][:12]} has no rows: no training set was built. Check "
                "that the right data version reached this task (the XCom of the versioning task)"
            )
        if window is not None:
            ts = entities[self.timestamp_column]
            keep = pd.Series(True, index=entities.index)
            if window["start"]:
                keep &= ts >= pd.Timestamp(window["start"])
            if window["end"]:
                keep &= ts < pd.Timestamp(window["end"])
            self.log.info(
                "training window [%s, %s): %d of %d entity rows",
                window["start"] or "-inf",
                window["end"] or "+inf",
                int(keep.sum()),
                len(entities),
            )
            if not keep.any():
                raise FeatureStoreError(
                    f"dataset {version['path']}@{version['rev'][:12]} has no rows in the training window "
                    f"[{window['start'] or '-inf'}, {window['end'] or '+inf'}) ({len(entities)} rows from "
                    f"{ts.min()} to {ts.max()}). Nothing was written. Widen the window (CT DAG param "
                    "training_window_days) or check that the day's batch was versioned"
                )
            entities = entities[keep].reset_index(drop=True)
        df = store.get_historical_features(entity_df=entities, features=service).to_df()
        keys = [*self.entity_columns, self.timestamp_column]
        feature_cols = sorted(c for c in df.columns if c not in {*keys, self.label_column})
        df = df[[*keys, *feature_cols, self.label_column]].sort_values(keys, kind="stable").reset_index(drop=True)
        null_share = df[feature_cols].isna().mean()
        if (null_share == 1.0).any():
            raise FeatureStoreError(
                f"features {list(null_share[null_share == 1.0].index)} are null for every entity row: the "
                "offline source has no rows within the TTL before the entity timestamps. Nothing was written. "
                "Check that the feature view's source holds data for that period and its ttl"
            )
        digest = frame_hash(df)
        out = storage.join(self.output_dir, self.feature_service, f"{digest[:16]}.parquet")
        if not storage.exists(out):  # content-addressed: a retry finds it and writes nothing
            storage.write_table(out, df)  # built in this task's temporary folder, then put whole
        dvc = None
        if self.track_with_dvc:
            with storage.local_copy(out) as local:  # the bytes at ``out`` are the ones versioned
                dvc = self._track(local, digest)
        result = {
            "uri": out,
            "hash": digest,
            "rows": len(df),
            "columns": list(df.columns),
            "features": feature_cols,
            "label": self.label_column,
            "entity_columns": list(self.entity_columns),
            "timestamp_column": self.timestamp_column,
            "feature_service": self.feature_service,
            "project": store.project,
            "definitions_hash": definitions_hash(store, service),
            "dataset": {k: version.get(k) for k in ("repo", "rev", "path", "md5")},
            "entity_window": window,
            "null_share": {c: round(float(v), 6) for c, v in null_share.items() if v > 0},
            "dvc": dvc,
        }
        log_summary(
            self.log, "feast-training-set", service=self.feature_service, rows=len(df), hash=digest[:16],
            dataset=f"{version['path']}@{version['rev'][:12]}", uri=out,
            dvc=f"{result['dvc']['path']}@{result['dvc']['rev'][:12]}" if result["dvc"] else "off",
        )
        return result

    def _track(self, out: Path, digest: str) -> dict[str, Any]:
        """Version the local copy ``out`` of the training set in the data repository (content-addressed path: a
        retry adds nothing)."""
        dvc = DvcHook(dvc_conn_id=self.dvc_conn_id)
        rel = f"{self.dvc_output_dir.strip('/')}/{self.feature_service}/{digest[:16]}.parquet"
        with dvc.locked():  # a fixed working copy: its lock; per task: this task's clone, removed afterwards
            dest = dvc.ensure_repo() / rel
            # Same frame hash = same rows and values; keep the bytes already versioned (a newer Parquet writer
            # may encode the same frame differently, which would otherwise make a new version of equal data).
            if not dest.exists():
                try:
                    copy_atomic(out, dest, verify=True)
                except OSError as err:
                    raise FeatureStoreError(f"{err}; retry the task") from err
            version = dvc.version_path(rel, f"training set {self.feature_service} {digest[:16]}")
        return {k: version[k] for k in ("repo", "rev", "path", "md5", "new_commit")}
