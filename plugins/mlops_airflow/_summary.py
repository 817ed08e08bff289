"""The one-line ``SUMMARY <kind> key=value ...`` log line every task ends with (no Airflow import).

An on-call engineer (and ``scripts/local_stack.py``) greps a task log for ``SUMMARY`` to see what the task did.
Values print as ``%s`` printed them before this helper existed: text as is, ``True``/``False``, ``None``, lists and
dicts as Python writes them. A value whose format matters (``drift_share=0.80``, a quoted reason) is formatted by
the caller. Line breaks inside a value are escaped so that the summary stays one line.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

__all__ = ["MARKER", "log_summary", "summary_line", "summary_text"]

MARKER = "SUMMARY"


def _value(value: Any) -> str:
    """``value`` as ``%s`` writes it, on one line; never raises (an unprintable value is named by its type)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a summary must never fail the task it summarises
        text = f"<unprintable {type(value).__name__}>"
    return text.replace("\r", "\\r").replace("\n", "\\n")


def summary_text(kind: str, **fields: Any) -> str:
    """``<kind> key=value ...`` (the line without its marker), in the order the fields are given.

    :param kind: what the task did, e.g. ``data-drift``, ``train``.
    :param fields: the facts; each prints as ``key=value`` (see the module docstring for how values print).
    """
    return " ".join([_value(kind), *(f"{key}={_value(value)}" for key, value in fields.items())])


def summary_line(kind: str, **fields: Any) -> str:
    """``SUMMARY <kind> key=value ...``.

    :param kind: what the task did, e.g. ``data-drift``, ``train``.
    :param fields: the facts, in the order they print.
    """
    return f"{MARKER} {summary_text(kind, **fields)}"


def log_summary(log: Any, kind: str, level: int = logging.INFO, /, **fields: Any) -> str:
    """Log ``SUMMARY <kind> key=value ...`` as one record; never raises.

    :param log: a ``logging.Logger`` (an operator's ``self.log``) or anything with ``.log(level, msg, *args)``.
    :param kind: what the task did.
    :param level: the record's level (positional): INFO, or ERROR for the summary of a failure.
    :param fields: the facts, in the order they print.
    :return: the facts without the marker (``summary_text``), for an error message that repeats them.
    """
    text = summary_text(kind, **fields)
    with contextlib.suppress(Exception):  # logging must not fail the task; its own outcome still shows
        log.log(level, "%s %s", MARKER, text)
    return text
