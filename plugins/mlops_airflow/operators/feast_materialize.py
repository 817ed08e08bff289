"""Materialisation: plan an interval as bounded windows, materialise one window, record the finished windows.

``FeastMaterializationWindowsOperator`` plans (no Feast import), ``FeastMaterializeOperator`` materialises one
window (mapped over the plan, or alone with ``start``/``end``), ``FeastMaterializationRecordOperator`` checks that
every planned window finished and records them as one asset event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators._common import as_dict
from mlops_airflow.operators._feast_common import announce, parse_instant

if TYPE_CHECKING:
    from airflow.sdk import Context


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
        windows.append(
            {
                "start": w_start.isoformat(),
                "end": w_end.isoformat(),
                "index": index,
                "count": count,
                "interval_start": lo.isoformat(),
                "interval_end": hi.isoformat(),
                "feature_views": list(feature_views) if feature_views else None,
            }
        )
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
            self.start,
            self.end,
            overlap=self.overlap,
            max_window=self.max_window,
            max_windows=self.max_windows,
            feature_views=self.feature_views,
        )
        first = windows[0]
        log_summary(self.log, "feast-windows", interval=f"[{first['interval_start']}, {first['interval_end']})",
                    windows=len(windows), max_window=self.max_window, overlap=self.overlap)
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
    :param feast_conn_id: Airflow connection of the feature repository.
    :param repo_path: the feature repository (a folder with ``feature_store.yaml``); wins over the connection.
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
        repo_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repo_path = repo_path
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

    def _materialize(self, hook: FeastHook, store: Any, window: dict[str, Any], start: datetime, end: datetime,
                     horizon: datetime) -> tuple[list[dict[str, Any]], list[str]]:
        views = (
            self.feature_views
            or window.get("feature_views")
            or [fv.name for fv in store.list_feature_views() if fv.online]
        )
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
        return done, list(views)

    def execute(self, context: Context) -> dict[str, Any]:
        window = self._window()
        start = parse_instant(window["start"], "window start")
        end = parse_instant(window["end"], "window end")
        horizon = parse_instant(window.get("interval_end") or window["end"], "interval end")
        hook = FeastHook(feast_conn_id=self.feast_conn_id, repo_path=self.repo_path)
        with hook.feature_repo():  # per task: the data repository cloned for this task, its file sources pulled
            store = hook.get_store()
            done, views = self._materialize(hook, store, window, start, end, horizon)
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
        announce(self, context, result)
        log_summary(
            self.log, "feast-materialize", project=store.project, views=views,
            window=f"{result['index'] + 1}/{result['count']} [{result['start']}, {result['end']})",
            rows_read=result["rows_read"], entities_written=result["entities_written"],
        )
        return result


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
        announce(self, context, record)
        log_summary(
            self.log, "feast-materialization", project=record["project"], views=record["feature_views"],
            interval=f"[{record['start']}, {record['end']})", windows=count, rows_read=record["rows_read"],
            entities_written=record["entities_written"],
        )
        return record
