"""Helpers the Feast operators share: timestamps from templates, the ``feast://`` asset event, the rows of a
dataset version (no heavy imports at module level)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import FeatureStoreError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator


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


def announce(task: BaseOperator, context: Any, extra: dict[str, Any]) -> None:
    """Put ``extra`` on every ``feast://`` outlet's asset event."""
    from airflow.sdk import Asset

    events = context.get("outlet_events") if hasattr(context, "get") else None
    for outlet in task.outlets or []:
        if events is not None and isinstance(outlet, Asset) and outlet.uri.startswith("feast://"):
            events[outlet].extra = extra


def read_version(version: dict[str, Any], dvc_conn_id: str, columns: Sequence[str] | None = None) -> Any:
    """The rows (``columns`` only, when given) of a dataset version as a pandas DataFrame.

    A DVC version (``{repo, rev, path, md5}``) is fetched at its revision into a temporary folder of this task
    (``DvcHook.materialize_version``: the exact version, never the working copy); a local version (``repo`` None,
    ``rev: local:<md5>``) is read from its path or URI through ``storage`` (downloaded once when remote).
    """
    import pandas as pd

    from mlops_airflow import storage

    read = list(columns) if columns is not None else None
    if version.get("repo") is None and str(version.get("rev", "")).startswith("local:"):
        with storage.local_copy(str(version["path"])) as local:
            return pd.read_parquet(local, columns=read)
    from mlops_airflow.hooks.dvc_repo import DvcHook

    with tempfile.TemporaryDirectory(prefix="mlops-version-") as tmp:
        local = DvcHook(dvc_conn_id=dvc_conn_id).materialize_version(version["path"], version["rev"],
                                                                    Path(tmp) / "data")
        return pd.read_parquet(local, columns=read)
