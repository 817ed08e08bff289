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
            raise FeatureStoreError(
                f"{what}={value!r} is not an ISO-8601 timestamp; pass one with a timezone, e.g. "
                "2026-11-01T00:00:00+00:00 or {{ data_interval_start }}"
            ) from None
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
    """``feast apply`` on the connection's feature repository (``plan_only=True``: ``feast plan``, no change).

    Belongs in a CI/CD DAG that runs when definitions change, never inside the scheduled
    materialisation (applying there resets incremental state, feast#2905).

    Returns ``{repo_path, command, changes}`` (``changes``: the CLI's lines that describe a change).
    """

    ui_color = "#e8734a"

    def __init__(
        self, *, feast_conn_id: str = FeastHook.default_conn_name, plan_only: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id
        self.plan_only = plan_only

    def execute(self, context: Context) -> dict[str, Any]:
        hook = FeastHook(feast_conn_id=self.feast_conn_id)
        command = "plan" if self.plan_only else "apply"
        output = hook.plan() if self.plan_only else hook.apply()
        lines = [line.rstrip() for line in output.strip().splitlines() if line.strip()]
        for line in lines:
            self.log.info("feast: %s", line)
        markers = ("Created", "Deleted", "Updated", "+", "-", "~")
        changes = [ln.strip() for ln in lines if ln.strip().startswith(markers)]
        result = {"repo_path": str(hook.repo_path), "command": command, "changes": changes[:200]}
        if not self.plan_only:
            _announce(self, context, {**result, "changes": len(changes)})
        self.log.info("SUMMARY feast-%s repo=%s changes=%d", command, hook.repo_path, len(changes))
        return result


def plan_windows(
    start: str | datetime,
    end: str | datetime,
    *,
    overlap: timedelta = timedelta(0),
    max_window: timedelta = timedelta(days=1),
    max_windows: int = 400,
    feature_views: list[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Split ``[start - overlap, end)`` into consecutive windows of at most ``max_window`` (pure function).

    Validated so a bad interval fails before anything is read: both ends need a timezone, the end may not be in
    the future (feast#4222: a future end date moves Feast's watermark past data that has not arrived), the
    interval may not be empty, and it may not need more than ``max_windows`` windows (an accidental backfill of
    years). Each window is ``{start, end, index, count, interval_start, interval_end, feature_views}``, JSON.
    """
    if overlap < timedelta(0):
        raise FeatureStoreError(f"overlap must be >= 0, got {overlap}; fix the operator's overlap argument")
    if max_window <= timedelta(0):
        raise FeatureStoreError(f"max_window must be > 0, got {max_window}; fix the operator's max_window argument")
    lo = parse_instant(start, "start") - overlap
    hi = parse_instant(end, "end")
    now = now or datetime.now(UTC)
    if hi > now + timedelta(minutes=5):
        raise FeatureStoreError(
            f"materialisation end {hi.isoformat()} is in the future (now {now.isoformat()}): data for it has not "
            "arrived; bind the window to the DAG run's data interval ({{ data_interval_end }}), not to a later date"
        )
    if lo >= hi:
        raise FeatureStoreError(
            f"empty materialisation window: start {lo.isoformat()} >= end {hi.isoformat()}; check the DAG run's "
            "data interval (a manual run with schedule=None has start == end: pass explicit start/end)"
        )
    count = -(-(hi - lo) // max_window)  # ceil
    if count > max_windows:
        raise FeatureStoreError(
            f"interval [{lo.isoformat()}, {hi.isoformat()}) needs {count} windows of {max_window}, more than "
            f"max_windows={max_windows}; raise max_window or max_windows if such a long backfill is intended"
        )
    windows = []
    for index in range(count):
        w_start = lo + index * max_window
        w_end = min(w_start + max_window, hi)
        windows.append({
            "start": w_start.isoformat(),
            "end": w_end.isoformat(),
            "index": index,
            "count": count,
            "interval_start": lo.isoformat(),
            "interval_end": hi.isoformat(),
            "feature_views": list(feature_views) if feature_views else None,
        })
    return windows


class FeastMaterializationWindowsOperator(BaseOperator):
    """Plan a materialisation: the DAG run's interval (plus ``overlap`` for late data) as bounded windows.

    Its output feeds ``FeastMaterializeOperator.partial(...).expand(window=...)``: one mapped task per window,
    each with bounded memory and retried on its own. Nothing is read here (no Feast import).

    :param start: interval start, ISO-8601 with timezone (templated), e.g. ``{{ data_interval_start }}``.
    :param end: interval end (templated), e.g. ``{{ data_interval_end }}``. A future end is an error.
    :param overlap: extra time before ``start`` re-read for late data (Feast upserts: idempotent).
    :param max_window: the longest window one task materialises (memory is bounded by the rows in it).
    :param max_windows: refuse intervals needing more windows (protects against accidental huge backfills).
    :param feature_views: views to materialise (templated); None = every online view.
    """

    template_fields: Sequence[str] = ("start", "end", "feature_views")
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        start: str,
        end: str,
        overlap: timedelta = timedelta(0),
        max_window: timedelta = timedelta(days=1),
        max_windows: int = 400,
        feature_views: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.overlap = overlap
        self.max_window = max_window
        self.max_windows = max_windows
        self.feature_views = feature_views

    def execute(self, context: Context) -> list[dict[str, Any]]:
        windows = plan_windows(
            self.start, self.end, overlap=self.overlap, max_window=self.max_window, max_windows=self.max_windows,
            feature_views=self.feature_views,
        )
        self.log.info(
            "SUMMARY feast-windows interval=[%s, %s) windows=%d max_window=%s overlap=%s",
            windows[0]["interval_start"], windows[0]["interval_end"], len(windows), self.max_window, self.overlap,
        )
        return windows


class FeastMaterializeOperator(BaseOperator):
    """Materialise feature views from the offline to the online store for one bounded window.

    Two ways to use it:

    - mapped, one task per window of a plan (the production shape; memory stays flat however long the
      interval, and each window is retried on its own)::

          plan = FeastMaterializationWindowsOperator(task_id="plan_windows", start=..., end=..., overlap=...)
          windows = FeastMaterializeOperator.partial(task_id="materialize", max_active_tis_per_dagrun=2)
          windows = windows.expand(window=plan.output)

    - alone, with ``start``/``end`` (+ ``overlap``): one window ``[start - overlap, end)``.

    Per window and view, ``FeastHook.materialize_window`` reads only the window (Parquet push-down for a
    ``FileSource``; ``store.materialize`` otherwise), writes the newest row per entity in bounded batches and
    records the interval in the Feast registry. An entity whose newest row of the whole interval lies in a later
    window is left to that window, so windows can finish in any order and retries never write an older value
    over a newer one. Re-running a window writes the same values (idempotent).

    Returns ``{project, feature_views, start, end, index, count, interval_start, interval_end, views: [...],
    rows_read, entities_written}``; every ``feast://`` asset in ``outlets`` gets that as its event extra.

    :param window: one element of a ``FeastMaterializationWindowsOperator`` plan (templated / mapped).
    :param start: window start, ISO-8601 with timezone (templated), when no ``window`` is given.
    :param end: window end, ISO-8601 with timezone (templated). A future end is an error.
    :param overlap: extra time before ``start`` re-read for late data (with ``start``/``end`` only).
    :param feature_views: names to materialise (templated); None = the window's, else all online views.
    :param write_batch_rows: rows per online-store write (bounds the protobuf memory of one write).
    """

    template_fields: Sequence[str] = ("start", "end", "feature_views", "window")
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        overlap: timedelta = timedelta(0),
        feature_views: list[str] | None = None,
        window: dict[str, Any] | str | None = None,
        write_batch_rows: int = 20_000,
        feast_conn_id: str = FeastHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.overlap = overlap
        self.feature_views = feature_views
        self.window = window
        self.write_batch_rows = write_batch_rows
        self.feast_conn_id = feast_conn_id

    def _window(self) -> dict[str, Any]:
        if self.window not in (None, ""):
            window = as_dict(self.window, "window")
            plan_windows(window["start"], window["end"])  # re-validate: a stale plan may point to the future
            return window
        if not self.start or not self.end:
            raise FeatureStoreError(
                "FeastMaterializeOperator needs a window (mapped from a FeastMaterializationWindowsOperator plan) or "
                "start and end; pass one of them in the DAG"
            )
        return plan_windows(self.start, self.end, overlap=self.overlap, max_window=timedelta(days=36500))[0]

    def execute(self, context: Context) -> dict[str, Any]:
        window = self._window()
        start = parse_instant(window["start"], "window start")
        end = parse_instant(window["end"], "window end")
        horizon = parse_instant(window.get("interval_end") or window["end"], "interval end")
        hook = FeastHook(feast_conn_id=self.feast_conn_id)
        store = hook.get_store()
        views = self.feature_views or window.get("feature_views") or [
            fv.name for fv in store.list_feature_views() if fv.online
        ]
        done = []
        for name in views:
            try:
                facts = hook.materialize_window(store, name, start, end, horizon, self.write_batch_rows)
            except FeatureStoreError:
                raise
            except Exception as err:
                raise FeatureStoreError(
                    f"materialising {store.project}:{name} for window {window.get('index', 0) + 1}/"
                    f"{window.get('count', 1)} [{start.isoformat()}, {end.isoformat()}) failed: "
                    f"{type(err).__name__}: {err}; the window is idempotent - fix the cause and clear this task"
                ) from err
            done.append(facts)
            self.log.info("materialised %s: %s", name, facts)
        result = {
            "project": store.project,
            "feature_views": list(views),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "index": int(window.get("index", 0)),
            "count": int(window.get("count", 1)),
            "interval_start": window.get("interval_start", start.isoformat()),
            "interval_end": window.get("interval_end", end.isoformat()),
            "views": done,
            "rows_read": sum(v["rows_read"] or 0 for v in done),
            "entities_written": sum(v["entities_written"] or 0 for v in done),
        }
        _announce(self, context, result)
        self.log.info(
            "SUMMARY feast-materialize project=%s views=%s window=%d/%d [%s, %s) rows_read=%d entities_written=%d",
            store.project, views, result["index"] + 1, result["count"], result["start"], result["end"],
            result["rows_read"], result["entities_written"],
        )
        return result


def _announce(task: BaseOperator, context: Any, extra: dict[str, Any]) -> None:
    """Put ``extra`` on every ``feast://`` outlet's asset event."""
    from airflow.sdk import Asset

    events = context.get("outlet_events") if hasattr(context, "get") else None
    for outlet in task.outlets or []:
        if events is not None and isinstance(outlet, Asset) and outlet.uri.startswith("feast://"):
            events[outlet].extra = extra


class FeastMaterializationRecordOperator(BaseOperator):
    """Close a mapped materialisation: check every planned window finished, record them as one asset event.

    ``windows`` is the mapped ``FeastMaterializeOperator`` output (templated / XCom). The windows must be
    contiguous and cover ``[interval_start, interval_end)``; the result (and the extra of every ``feast://``
    outlet) is ``{project, feature_views, start, end, windows: [{index, start, end, rows_read,
    entities_written}], rows_read, entities_written}``, the shape ``RegisterModelOperator(materialization=...)``
    expects.
    """

    template_fields: Sequence[str] = ("windows",)
    ui_color = "#e8734a"

    def __init__(self, *, windows: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.windows = windows

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        raw = json.loads(self.windows) if isinstance(self.windows, str) else (self.windows or [])
        # A mapped task's output arrives as a lazy sequence: index it up to len() (plain iteration probes one
        # past the end, which the Task SDK logs as an "XCom not found" error).
        items = [raw[i] for i in range(len(raw))] if hasattr(raw, "__len__") else list(raw)
        done = sorted((as_dict(w, "window") for w in items), key=lambda w: w["index"])
        if not done:
            raise FeatureStoreError("no materialised window reached this task; check the mapped materialise task")
        count = done[0]["count"]
        indexes = [w["index"] for w in done]
        if indexes != list(range(count)):
            missing = sorted(set(range(count)) - set(indexes))
            raise FeatureStoreError(
                f"materialisation incomplete: windows {missing} of {count} did not report; clear those mapped tasks"
            )
        for prev, nxt in zip(done, done[1:], strict=False):
            if prev["end"] != nxt["start"]:
                raise FeatureStoreError(
                    f"windows {prev['index']} and {nxt['index']} are not contiguous: {prev['end']} != {nxt['start']} "
                    "(the plan changed between tries?); clear the plan task with its downstream tasks to re-plan"
                )
        record = {
            "project": done[0]["project"],
            "feature_views": done[0]["feature_views"],
            "start": done[0]["interval_start"],
            "end": done[0]["interval_end"],
            "windows": [{k: w[k] for k in ("index", "start", "end", "rows_read", "entities_written")} for w in done],
            "rows_read": sum(w["rows_read"] for w in done),
            "entities_written": sum(w["entities_written"] for w in done),
        }
        _announce(self, context, record)
        self.log.info(
            "SUMMARY feast-materialization project=%s views=%s interval=[%s, %s) windows=%d rows_read=%d "
            "entities_written=%d", record["project"], record["feature_views"], record["start"], record["end"],
            count, record["rows_read"], record["entities_written"],
        )
        return record


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

    template_fields: Sequence[str] = ("dataset_version", "feature_service", "output_dir", "dvc_output_dir",
                                      "entity_start", "entity_end")
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
        self.entity_columns = list(entity_columns)
        self.timestamp_column = timestamp_column
        self.feast_conn_id = feast_conn_id
        self.dvc_conn_id = dvc_conn_id

    @cached_property
    def feast_hook(self) -> FeastHook:
        return FeastHook(feast_conn_id=self.feast_conn_id)

    def entity_rows(self, version: dict[str, Any]) -> Any:
        import pandas as pd
        import pyarrow as pa

        dvc = DvcHook(dvc_conn_id=self.dvc_conn_id)
        wanted = [*self.entity_columns, self.timestamp_column, self.label_column]
        with tempfile.TemporaryDirectory(prefix="mlops-entities-") as tmp:
            local = dvc.materialize_version(version["path"], version["rev"], Path(tmp) / "data")
            where = f"{version['path']}@{version['rev'][:12]}"
            try:
                df = pd.read_parquet(local)
            except (OSError, ValueError, pa.ArrowException) as err:
                raise FeatureStoreError(
                    f"dataset {where} is not readable Parquet ({type(err).__name__}: {err}). Nothing was written; "
                    "the version stays in DVC as it is. Run the validation gate before versioning (it quarantines "
                    "corrupt batches) and version a readable batch"
                ) from None
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise FeatureStoreError(
                f"dataset {where} lacks entity/label columns {missing}; it has {list(df.columns)}. Nothing was "
                "written. Set entity_columns/timestamp_column/label_column to its names, or validate and version "
                "a batch that has them"
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
        import pandas as pd

        version = as_dict(self.dataset_version, "dataset_version")
        window = self._window()
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
            self.log.info("training window [%s, %s): %d of %d entity rows", window["start"] or "-inf",
                          window["end"] or "+inf", int(keep.sum()), len(entities))
            if not keep.any():
                raise FeatureStoreError(
                    f"dataset {version['path']}@{version['rev'][:12]} has no rows in the training window "
                    f"[{window['start'] or '-inf'}, {window['end'] or '+inf'}) ({len(entities)} rows from "
                    f"{ts.min()} to {ts.max()}). Nothing was written. Widen the window (CT DAG param "
                    "training_window_days) or check that the day's batch was versioned"
                )
            entities = entities[keep].reset_index(drop=True)
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
                "offline source has no rows within the TTL before the entity timestamps. Nothing was written. "
                "Check that the feature view's source holds data for that period and its ttl"
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
            "entity_window": window,
            "null_share": {c: round(float(v), 6) for c, v in null_share.items() if v > 0},
            "dvc": self._track(out, digest) if self.track_with_dvc else None,
        }
        self.log.info(
            "SUMMARY feast-training-set service=%s rows=%d hash=%s dataset=%s@%s uri=%s dvc=%s",
            self.feature_service, len(df), digest[:16], version["path"], version["rev"][:12], out,
            f"{result['dvc']['path']}@{result['dvc']['rev'][:12]}" if result["dvc"] else "off",
        )
        return result

    def _track(self, out: Path, digest: str) -> dict[str, Any]:
        """Version the training set in the data repository (content-addressed path: a retry adds nothing)."""
        import shutil

        from mlops_airflow.hooks.dvc_repo import file_md5

        dvc = DvcHook(dvc_conn_id=self.dvc_conn_id)
        repo = dvc.ensure_repo()
        rel = f"{self.dvc_output_dir.strip('/')}/{self.feature_service}/{digest[:16]}.parquet"
        dest = repo / rel
        with dvc.locked():
            # Same frame hash = same rows and values; keep the bytes already versioned (a newer Parquet writer
            # may encode the same frame differently, which would otherwise make a new version of equal data).
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                shutil.copyfile(out, tmp)
                if file_md5(tmp) != file_md5(out):
                    raise FeatureStoreError(f"copy of {out} into {dest} is corrupt (md5 differs); retry the task")
                tmp.replace(dest)
            version = dvc.version_path(rel, f"training set {self.feature_service} {digest[:16]}")
        return {k: version[k] for k in ("repo", "rev", "path", "md5", "new_commit")}


class FeatureSkewCheckOperator(BaseOperator):
    """Training-serving skew: do the online store and the offline store give the same feature values?

    For a deterministic sample of entities, the online values (``get_online_features``) are compared with the
    offline point-in-time values (``get_historical_features``) *at the online row's own event time*, one feature
    view at a time. Both must then be the same source row, so any difference is skew: a materialisation bug,
    a stale or partial write, a changed transformation, data rewritten after it was served.

    Entities come from ``entity_df_path`` (Parquet/CSV), else ``dataset_version`` (a DVC version, read at its
    revision), else the newest rows of each view's offline source in ``[as_of - lookback, as_of)``. Works with
    any feature repository the connection points at (entity keys and views come from its registry).

    Returns the verdict ``{passed, reasons, metrics: {sampled, compared, mismatch_rate: {feature: rate},
    missing_online_rate: {feature: rate}, max_mismatch_rate}, evidence_uri}``; the evidence JSON lists
    examples of every mismatch. Fails with ``FeatureStoreError`` when the verdict does not pass and
    ``fail_on_skew`` (default).

    :param feature_service: the feature service to check (templated); or ``features`` (``view:feature`` refs).
    :param report_dir: where ``feature_skew.json`` goes (templated).
    :param sample_size: entities compared (default 500).
    :param max_mismatch_rate: highest share of mismatching values per feature that still passes (default 0).
    :param max_missing_rate: highest share of sampled entities absent from the online store (default 0).
    :param tolerance: absolute tolerance for floating-point values.
    """

    template_fields: Sequence[str] = (
        "feature_service", "features", "entity_df_path", "dataset_version", "report_dir", "as_of",
    )
    ui_color = "#e8734a"

    def __init__(
        self,
        *,
        report_dir: str,
        feature_service: str | None = None,
        features: list[str] | None = None,
        entity_df_path: str | None = None,
        dataset_version: dict[str, Any] | str | None = None,
        as_of: str | None = None,
        lookback: timedelta = timedelta(days=7),
        sample_size: int = 500,
        seed: int = 0,
        max_mismatch_rate: float = 0.0,
        max_missing_rate: float = 0.0,
        tolerance: float = 1e-9,
        fail_on_skew: bool = True,
        feast_conn_id: str = FeastHook.default_conn_name,
        dvc_conn_id: str = DvcHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not feature_service and not features:
            raise ValueError("FeatureSkewCheckOperator needs feature_service or features")
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}")
        self.feature_service = feature_service
        self.features = features
        self.entity_df_path = entity_df_path
        self.dataset_version = dataset_version
        self.report_dir = report_dir
        self.as_of = as_of
        self.lookback = lookback
        self.sample_size = sample_size
        self.seed = seed
        self.max_mismatch_rate = max_mismatch_rate
        self.max_missing_rate = max_missing_rate
        self.tolerance = tolerance
        self.fail_on_skew = fail_on_skew
        self.feast_conn_id = feast_conn_id
        self.dvc_conn_id = dvc_conn_id

    # -- which features, which entities -----------------------------------------------------
    def _refs_by_view(self, hook: FeastHook, store: Any) -> dict[str, list[str]]:
        refs: list[str] = []
        if self.feature_service:
            service = hook.get_feature_service(store, self.feature_service)
            for projection in service.feature_view_projections:
                refs += [f"{projection.name_to_use()}:{f.name}" for f in projection.features]
        else:
            refs = list(self.features or [])
        by_view: dict[str, list[str]] = {}
        for ref in refs:
            view, _, feature = ref.partition(":")
            if not feature:
                raise FeatureStoreError(f"feature reference {ref!r} is not 'view:feature'; fix the features argument")
            by_view.setdefault(view, []).append(feature)
        return by_view

    def _candidate_entities(self, store: Any, views: list[Any], keys: list[str]) -> Any:
        import pandas as pd

        if self.entity_df_path:
            path = Path(self.entity_df_path)
            frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
            where = str(path)
        elif self.dataset_version not in (None, ""):
            version = as_dict(self.dataset_version, "dataset_version")
            with tempfile.TemporaryDirectory(prefix="mlops-skew-") as tmp:
                local = DvcHook(dvc_conn_id=self.dvc_conn_id).materialize_version(
                    version["path"], version["rev"], Path(tmp) / "data")
                frame = pd.read_parquet(local, columns=keys)
            where = f"{version['path']}@{version['rev'][:12]}"
        else:
            from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

            as_of = parse_instant(self.as_of, "as_of") if self.as_of else datetime.now(UTC)
            offline = get_offline_store_from_config(store.config.offline_store)
            parts = []
            for view in views:
                source = view.batch_source
                job = offline.pull_latest_from_table_or_query(
                    config=store.config, data_source=source, join_key_columns=keys, feature_name_columns=[],
                    timestamp_field=source.timestamp_field,
                    created_timestamp_column=source.created_timestamp_column or None,
                    start_date=as_of - self.lookback, end_date=as_of,
                )
                parts.append(job.to_df()[keys])
            frame = pd.concat(parts, ignore_index=True)
            where = f"the offline sources of {[v.name for v in views]} in the {self.lookback} before {as_of}"
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise FeatureStoreError(
                f"entity rows from {where} lack the join keys {missing}; they have {list(frame.columns)}. Pass "
                "entity rows that carry the feature views' join keys"
            )
        frame = frame[keys].dropna().drop_duplicates()
        if frame.empty:
            raise FeatureStoreError(f"no entities to sample from {where}: nothing to compare. Check the window "
                                    "(as_of, lookback) or pass entity_df_path")
        frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        return frame.sample(n=min(self.sample_size, len(frame)), random_state=self.seed).reset_index(drop=True)

    # -- comparison --------------------------------------------------------------------------
    def _same(self, online: Any, offline: Any) -> bool:
        import math

        online_null = online is None or (isinstance(online, float) and math.isnan(online))
        offline_null = offline is None or (isinstance(offline, float) and math.isnan(offline))
        if online_null or offline_null:
            return online_null and offline_null
        if isinstance(online, float | int) and isinstance(offline, float | int):
            return math.isclose(float(online), float(offline), rel_tol=1e-9, abs_tol=self.tolerance)
        return online == offline

    def execute(self, context: Context) -> dict[str, Any]:
        import json

        import pandas as pd
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        from mlops_airflow.links.mlflow import EvidenceLink
        from mlops_airflow.operators._common import run_dir

        hook = FeastHook(feast_conn_id=self.feast_conn_id)
        store = hook.get_store()
        by_view = self._refs_by_view(hook, store)
        views = [store.get_feature_view(name) for name in by_view]
        keys = sorted({c.name for v in views for c in v.entity_columns})
        sample = self._candidate_entities(store, views, keys)
        rows = sample.to_dict("records")
        mismatch: dict[str, int] = {}
        missing: dict[str, int] = {}
        compared: dict[str, int] = {}
        examples: dict[str, list[dict[str, Any]]] = {}
        for view_name, features in by_view.items():
            refs = [f"{view_name}:{f}" for f in features]
            response = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
            names = list(response.proto.metadata.feature_names.val)
            values = response.to_dict()
            times: list[Any] = [None] * len(rows)
            present = [True] * len(rows)
            for name, vector in zip(names, response.proto.results, strict=False):
                if name not in {f"{view_name}__{f}" for f in features}:
                    continue
                for i, (status, ts) in enumerate(zip(vector.statuses, vector.event_timestamps, strict=False)):
                    if status != FieldStatus.PRESENT:
                        present[i] = False
                    elif times[i] is None and (ts.seconds or ts.nanos):
                        times[i] = ts.ToDatetime(tzinfo=UTC)
            index = [i for i in range(len(rows)) if present[i] and times[i] is not None]
            for feature in features:
                col = f"{view_name}__{feature}"
                missing[col] = len(rows) - len(index)
                compared[col], mismatch[col], examples[col] = len(index), 0, []
            if not index:
                continue
            entity_df = pd.DataFrame([rows[i] for i in index])
            entity_df["event_timestamp"] = pd.to_datetime([times[i] for i in index], utc=True)
            entity_df["_row"] = index
            offline = store.get_historical_features(
                entity_df=entity_df, features=refs, full_feature_names=True).to_df()
            offline = offline.set_index("_row")
            for feature in features:
                col = f"{view_name}__{feature}"
                for i in index:
                    got, want = values[col][i], offline.at[i, col] if i in offline.index else None
                    want = want.item() if hasattr(want, "item") else want
                    if not self._same(got, want):
                        mismatch[col] += 1
                        if len(examples[col]) < 5:
                            examples[col].append({**{k: _plain(rows[i][k]) for k in keys}, "online": _plain(got),
                                                  "offline": _plain(want), "event_timestamp": times[i].isoformat()})
        mismatch_rate = {c: round(mismatch[c] / compared[c], 6) if compared[c] else 0.0 for c in mismatch}
        missing_rate = {c: round(missing[c] / len(rows), 6) for c in missing}
        reasons = [
            f"{c}: {mismatch[c]} of {compared[c]} online values differ from the offline point-in-time value "
            f"({mismatch_rate[c]:.2%} > {self.max_mismatch_rate:.2%}), e.g. {examples[c][:2]}"
            for c in sorted(mismatch) if mismatch_rate[c] > self.max_mismatch_rate
        ] + [
            f"{c}: {missing[c]} of {len(rows)} sampled entities have no online value ({missing_rate[c]:.2%} > "
            f"{self.max_missing_rate:.2%}): not materialised, or expired"
            for c in sorted(missing) if missing_rate[c] > self.max_missing_rate
        ]
        metrics = {
            "sampled": len(rows),
            "compared": compared,
            "mismatch_rate": mismatch_rate,
            "missing_online_rate": missing_rate,
            "max_mismatch_rate": max(mismatch_rate.values(), default=0.0),
        }
        out_dir = run_dir(self.report_dir, context).absolute()
        out_dir.mkdir(parents=True, exist_ok=True)
        evidence = out_dir / "feature_skew.json"
        verdict = {"passed": not reasons, "reasons": reasons, "metrics": metrics, "evidence_uri": evidence.as_uri(),
                   "project": store.project, "feature_service": self.feature_service}
        tmp = evidence.with_name(evidence.name + ".tmp")
        tmp.write_text(json.dumps({**verdict, "examples": examples, "entity_keys": keys}, indent=2, default=str))
        tmp.replace(evidence)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None and hasattr(ti, "xcom_push"):
            EvidenceLink.persist(context, evidence.as_uri())
        summary = (
            f"feature-skew passed={str(verdict['passed']).lower()} project={store.project} "
            f"service={self.feature_service} sampled={len(rows)} max_mismatch_rate={metrics['max_mismatch_rate']:.4f} "
            f"evidence={evidence}"
        )
        for reason in reasons:
            self.log.error("reason: %s", reason)
        self.log.info("SUMMARY %s", summary)
        if reasons and self.fail_on_skew:
            raise FeatureStoreError(
                f"training-serving skew in project {store.project}: {'; '.join(reasons[:6])}. Evidence: {evidence}. "
                "Next step: re-materialise the affected window (clear the materialise task) and compare the "
                "feature definitions serving uses with the ones training used"
            )
        return verdict


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy scalars and timestamps included)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return value
