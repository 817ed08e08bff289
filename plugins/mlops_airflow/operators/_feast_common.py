"""Helpers the Feast operators share: timestamps from templates, the ``feast://`` asset event (no heavy imports)."""

from __future__ import annotations

from datetime import UTC, datetime
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
