"""The ``day`` a loop lands, and the refusal of a ``day`` param that cannot be right (run inside tasks).

A bad param fails the first task at once with ``AirflowFailException`` (no retries), before anything is landed,
versioned in DVC or announced as an asset event: the message names the param, its value, today's date (UTC) and what
to pass instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn


def land_day(params: Mapping[str, Any], logical_date: datetime | None, now: datetime | None = None) -> date:
    """``params.day`` (checked by :func:`check_day`), else the newest *complete* day at the logical date (manual and
    asset-triggered runs: yesterday)."""
    now = now or datetime.now(UTC)
    day = check_day(params, now=now)
    if day is not None:
        return day
    day = (logical_date or now).date()
    if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) > now:
        day -= timedelta(days=1)
    return day


def _refuse(message: str) -> NoReturn:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(f"{message}. Nothing was landed, versioned or announced; this task is not retried")


def check_day(params: Mapping[str, Any], *, now: datetime | None = None, complete: bool = True) -> date | None:
    """The ``day`` param as a date (None when unset), refused at once (``AirflowFailException``: no retries) when it
    cannot be right: not a ``YYYY-MM-DD`` date, a day in the future, or (``complete``) today, whose training window
    would end in the future; also a ``training_window_days`` that is not a whole number of days >= 1.

    :param params: the DAG run's params (``day``, ``training_window_days``).
    :param now: the current time (UTC; default now).
    :param complete: refuse today too (a batch, and a training window, must end by now).
    """
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    newest = today - timedelta(days=1) if complete else today
    window = params.get("training_window_days")
    if window not in (None, ""):
        try:
            ok = int(window) >= 1 and float(window) == int(window)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            _refuse(f"param training_window_days={window!r} is not a whole number of days >= 1 (today is "
                    f"{today.isoformat()} UTC); pass e.g. 7, or leave it empty to train on all history")
    value = params.get("day")
    if value in (None, ""):
        return None
    try:
        day = value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value))
    except ValueError:
        _refuse(f"param day={value!r} is not a date (YYYY-MM-DD); today is {today.isoformat()} UTC. Pass a day "
                f"up to {newest.isoformat()}, or leave day empty for the newest complete day")
    if day > today:
        _refuse(f"param day={day.isoformat()} is in the future (today is {today.isoformat()} UTC): there is no "
                f"batch for it yet. Pass a day up to {newest.isoformat()}, or leave day empty for the newest "
                "complete day")
    if complete and day == today:
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        _refuse(f"param day={day.isoformat()} is today (UTC, now {now.astimezone(UTC).isoformat(timespec='minutes')})"
                f": its batch and the training window ending {end.isoformat()} are not complete. Pass a day up to "
                f"{newest.isoformat()}, or leave day empty for the newest complete day")
    return day
