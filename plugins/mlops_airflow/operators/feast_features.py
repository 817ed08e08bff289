"""Feast operators: apply (CI/CD only), materialise a window, build a point-in-time training set."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks.dvc_repo import DvcHook
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators._common import as_dict

if TYPE_CHECKING:
    from airflow.sdk import Context


def parse_instant(value: str | datetime, what: str) -> datetime:
    """A tz-aware UTC datetime from an ISO string or datetime; naive input is an error, not a guess."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise FeatureStoreError(f"{what}={value!r} is not an ISO-8601 timestamp") from None
    if value.tzinfo is None:
        raise FeatureStoreError(f"{what}={value.isoformat()} has no timezone; pass UTC (e.g. ...+00:00)")
    return value.astimezone(UTC)


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


class FeastApplyOperator(BaseOperator):
    """``feast apply`` on the connection's feature repository.

    Belongs in a CI/CD DAG that runs when definitions change, never inside the scheduled
    materialisation (applying there resets incremental state, feast#2905).
    """

    ui_color = "#e8734a"

    def __init__(self, *, feast_conn_id: str = FeastHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        hook = FeastHook(feast_conn_id=self.feast_conn_id)
        output = hook.apply()
        for line in output.strip().splitlines():
            self.log.info("feast: %s", line)
        self.log.info("SUMMARY feast-apply repo=%s", hook.repo_path)
        return {"repo_path": str(hook.repo_path)}


class FeastMaterializeOperator(BaseOperator):
    """Materialise feature views from the offline to the online store for ``[start - overlap, end)``.

    :param start: window start, ISO-8601 with timezone (templated), e.g. ``{{ data_interval_start }}``.
    :param end: window end, ISO-8601 with timezone (templated). A future end is an error.
    :param overlap: extra time before ``start`` re-read for late data (idempotent: Feast upserts).
    :param feature_views: names to materialise; None = all online views.
    """

    template_fields: Sequence[str] = ("start", "end", "feature_views")
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        start: str,
        end: str,
        overlap: timedelta = timedelta(0),
        feature_views: list[str] | None = None,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.overlap = overlap
        self.feature_views = feature_views
        self.feast_conn_id = feast_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        start = parse_instant(self.start, "start") - self.overlap
        end = parse_instant(self.end, "end")
        now = datetime.now(UTC)
        if end > now + timedelta(minutes=5):
            raise FeatureStoreError(f"materialisation end {end.isoformat()} is in the future (now {now.isoformat()})")
        if start >= end:
            raise FeatureStoreError(f"empty materialisation window: start {start.isoformat()} >= end {end.isoformat()}")
        store = FeastHook(feast_conn_id=self.feast_conn_id).get_store()
        views = self.feature_views or [fv.name for fv in store.list_feature_views() if fv.online]
        store.materialize(start_date=start, end_date=end, feature_views=views)
        window = {"start": start.isoformat(), "end": end.isoformat(), "feature_views": views, "project": store.project}
        self.log.info("SUMMARY feast-materialize project=%s views=%s window=[%s, %s)", store.project, views,
                      window["start"], window["end"])
        return window


class FeastTrainingSetOperator(BaseOperator):
    """Point-in-time training set: entity rows from a DVC data version joined with a feature service.

    Entity rows (``entity_columns`` + ``timestamp_column`` + ``label_column``) are read from the exact
    dataset version (``dvc get`` at its revision, not the working copy), joined with
    ``get_historical_features`` and written, sorted, to a content-addressed Parquet path
    ``output_dir/<service>/<hash[:16]>.parquet``. A retry writes the same file.

    Returns ``{uri, hash, rows, columns, feature_service, project, definitions_hash, dataset}``.

    :param dataset_version: the upstream DVC version ``{rev, path, md5, ...}`` (templated / XCom).
    :param feature_service: Feast feature service name (templated).
    :param output_dir: where training sets are written (templated).
    """

    template_fields: Sequence[str] = ("dataset_version", "feature_service", "output_dir")
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        dataset_version: dict[str, Any] | str,
        feature_service: str,
        output_dir: str,
        label_column: str = "churned",
        entity_columns: Sequence[str] = ("customer_id",),
        timestamp_column: str = "event_timestamp",
        feast_conn_id: str = FeastHook.default_conn_name,
        dvc_conn_id: str = DvcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_version = dataset_version
        self.feature_service = feature_service
        self.output_dir = output_dir
        self.label_column = label_column
        self.entity_columns = list(entity_columns)
        self.timestamp_column = timestamp_column
        self.feast_conn_id = feast_conn_id
        self.dvc_conn_id = dvc_conn_id

    @cached_property
    def feast_hook(self) -> FeastHook:
        return FeastHook(feast_conn_id=self.feast_conn_id)

    def entity_rows(self, version: dict[str, Any]) -> Any:
        import pandas as pd

        dvc = DvcHook(dvc_conn_id=self.dvc_conn_id)
        wanted = [*self.entity_columns, self.timestamp_column, self.label_column]
        with tempfile.TemporaryDirectory(prefix="mlops-entities-") as tmp:
            local = dvc.materialize_version(version["path"], version["rev"], Path(tmp) / "data")
            df = pd.read_parquet(local)
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise FeatureStoreError(
                f"dataset {version['path']}@{version['rev'][:12]} lacks entity/label columns {missing}; "
                f"it has {list(df.columns)}"
            )
        rows = df[wanted]
        if rows[self.entity_columns].isna().any().any():
            raise FeatureStoreError(f"null entity keys in {version['path']}@{version['rev'][:12]}")
        if getattr(rows[self.timestamp_column].dtype, "tz", None) is None:
            raise FeatureStoreError(f"{self.timestamp_column} in {version['path']} has no timezone; store UTC")
        return rows

    def execute(self, context: Context) -> dict[str, Any]:
        version = as_dict(self.dataset_version, "dataset_version")
        entities = self.entity_rows(version)
        if entities.empty:
            raise FeatureStoreError(f"dataset {version['path']}@{version['rev'][:12]} has no rows: no training set")
        store = self.feast_hook.get_store()
        service = self.feast_hook.get_feature_service(store, self.feature_service)
        df = store.get_historical_features(entity_df=entities, features=service).to_df()
        keys = [*self.entity_columns, self.timestamp_column]
        feature_cols = sorted(c for c in df.columns if c not in {*keys, self.label_column})
        df = df[[*keys, *feature_cols, self.label_column]].sort_values(keys, kind="stable").reset_index(drop=True)
        null_share = df[feature_cols].isna().mean()
        if (null_share == 1.0).any():
            raise FeatureStoreError(
                f"features {list(null_share[null_share == 1.0].index)} are null for every entity row: the "
                "offline source has no rows within the TTL before the entity timestamps"
            )
        digest = frame_hash(df)
        out = Path(self.output_dir) / self.feature_service / f"{digest[:16]}.parquet"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            df.to_parquet(tmp, index=False)
            tmp.replace(out)
        result = {
            "uri": str(out),
            "hash": digest,
            "rows": len(df),
            "columns": list(df.columns),
            "features": feature_cols,
            "label": self.label_column,
            "feature_service": self.feature_service,
            "project": store.project,
            "definitions_hash": definitions_hash(store, service),
            "dataset": {k: version.get(k) for k in ("repo", "rev", "path", "md5")},
            "null_share": {c: round(float(v), 6) for c, v in null_share.items() if v > 0},
        }
        self.log.info(
            "SUMMARY feast-training-set service=%s rows=%d hash=%s dataset=%s@%s uri=%s",
            self.feature_service, len(df), digest[:16], version["path"], version["rev"][:12], out,
        )
        return result
