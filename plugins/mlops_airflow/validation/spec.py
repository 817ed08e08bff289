"""The contract's specification: which columns play which role, the interval, the tolerances, the policies.

:func:`build_spec` validates the operator's parameters (errors name the parameter) into a frozen
:class:`ContractSpec`. stdlib only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_airflow.task_types import validate_task_type

CHECKS = (
    "entity_keys_present",
    "entity_keys_not_null",
    "timestamp_present",
    "timestamp_not_future",
    "timestamp_in_interval",
    "features_not_null",
    "features_finite",
    "label_present",
    "label_in_domain",
    "label_not_constant",
    "extra_columns",
)
EXTRA_COLUMN_POLICIES = ("fail", "warn", "ignore")
DEFAULT_ALLOWED_LATENESS = timedelta(hours=6)
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class ContractSpec:
    """What the batch must satisfy (see the module docstring); build it with :func:`build_spec`.

    :param entity_columns: the entity key columns (required, non-null).
    :param timestamp_column: the event-time column; None = no timestamp checks.
    :param timestamp_required: a missing ``timestamp_column`` fails (else it is skipped, said in the result).
    :param interval_start: the batch's claimed interval start (aware); None = no lower bound.
    :param interval_end: the claimed interval end (aware); None = no upper bound.
    :param allowed_lateness: how long after ``interval_end`` an event may still be stamped.
    :param clock_skew: how far in the future a timestamp may be (the producer's clock running ahead).
    :param label_column: the label; None = no label checks (skipped, said in the result).
    :param task_type: ``binary_classification`` or ``regression``: the label's domain.
    :param feature_columns: the features; None = every column not an entity, timestamp or label column.
    :param max_null_share: a feature column with a larger share of nulls fails; 1.0 = only an entirely null one.
    :param extra_columns: ``fail``, ``warn`` or ``ignore`` (None = ``fail`` when an expected column list is known).
    :param suite_columns: the columns the expectation suite names (expected columns too).
    """

    entity_columns: tuple[str, ...] = ()
    timestamp_column: str | None = None
    timestamp_required: bool = False
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    label_column: str | None = None
    task_type: str = "binary_classification"
    feature_columns: tuple[str, ...] | None = None
    max_null_share: float = 1.0
    extra_columns: str | None = None
    suite_columns: tuple[str, ...] = ()

    @property
    def expected_known(self) -> bool:
        """An expected column list exists (``feature_columns`` or the suite's columns) to judge extras against."""
        return self.feature_columns is not None or bool(self.suite_columns)

    @property
    def extra_policy(self) -> str:
        if self.extra_columns:
            return self.extra_columns
        return "fail" if self.expected_known else "ignore"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("interval_start", "interval_end"):
            out[key] = out[key].isoformat() if out[key] else None
        for key in ("allowed_lateness", "clock_skew"):
            out[key] = out[key].total_seconds()
        out["extra_columns"] = self.extra_policy
        return out


def parse_instant(value: Any, name: str) -> datetime | None:
    """An aware datetime from a datetime (pendulum too) or an ISO string; None/"" = not given.

    :raises ValueError: naming ``name`` when the value has no timezone or is not ISO 8601.
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    if isinstance(value, datetime):
        instant = value
    else:
        try:
            instant = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not an ISO 8601 timestamp: pass e.g. '2026-11-01T00:00:00+00:00' "
                "(or a template such as '{{ data_interval_start }}')"
            ) from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name}={value!r} has no timezone: pass it with an offset, e.g. '...T00:00:00+00:00'")
    return instant.astimezone(UTC)


def parse_duration(value: Any, name: str) -> timedelta:
    """A non-negative timedelta from a timedelta or a number of seconds.

    :raises ValueError: naming ``name``.
    """
    if isinstance(value, timedelta):
        duration = value
    else:
        try:
            duration = timedelta(seconds=float(value))
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value!r} is not a duration: pass a timedelta or seconds") from None
    if duration < timedelta(0):
        raise ValueError(f"{name}={value!r} is negative: pass a duration >= 0")
    return duration


def _columns(value: Sequence[str] | str | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        try:  # a rendered template of a list: "['a', 'b']"
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{name}={value!r} is not a list of column names") from None
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(c, str) and c for c in items):
        raise ValueError(f"{name} must be a list of column names, got {value!r}")
    return tuple(dict.fromkeys(items))


def build_spec(
    *,
    entity_columns: Sequence[str] | None = None,
    timestamp_column: str | None = None,
    timestamp_required: bool | None = None,
    interval_start: Any = None,
    interval_end: Any = None,
    allowed_lateness: Any = DEFAULT_ALLOWED_LATENESS,
    clock_skew: Any = DEFAULT_CLOCK_SKEW,
    label_column: str | None = None,
    task_type: str | None = None,
    feature_columns: Sequence[str] | None = None,
    max_null_share: float = 1.0,
    extra_columns: str | None = None,
    suite_columns: Iterable[str] = (),
) -> ContractSpec:
    """Validate the parameters and build a :class:`ContractSpec`.

    :param timestamp_required: None = required when ``entity_columns`` or an interval is given.
    :raises ValueError: naming the parameter and what it accepts.
    """
    start = parse_instant(interval_start, "interval_start")
    end = parse_instant(interval_end, "interval_end")
    if start and end and end < start:
        raise ValueError(f"interval_end {end.isoformat()} is before interval_start {start.isoformat()}")
    try:
        share = float(max_null_share)
    except (TypeError, ValueError):
        raise ValueError(f"max_null_share={max_null_share!r} is not a number in [0, 1]") from None
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"max_null_share={max_null_share!r} must be in [0, 1] (1.0 = only an entirely null column)")
    policy = (str(extra_columns).strip().lower() or None) if extra_columns is not None else None
    if policy is not None and policy not in EXTRA_COLUMN_POLICIES:
        raise ValueError(f"extra_columns={extra_columns!r} is not one of {', '.join(EXTRA_COLUMN_POLICIES)}")
    keys = _columns(entity_columns, "entity_columns") or ()
    ts = str(timestamp_column).strip() if timestamp_column and str(timestamp_column).strip() != "None" else None
    label = str(label_column).strip() if label_column and str(label_column).strip() != "None" else None
    required = bool(keys or start or end) if timestamp_required is None else bool(timestamp_required)
    spec = ContractSpec(
        entity_columns=keys,
        timestamp_column=ts,
        timestamp_required=required and ts is not None,
        interval_start=start,
        interval_end=end,
        allowed_lateness=parse_duration(allowed_lateness, "allowed_lateness"),
        clock_skew=parse_duration(clock_skew, "clock_skew"),
        label_column=label,
        task_type=validate_task_type(task_type),
        feature_columns=_columns(feature_columns, "feature_columns"),
        max_null_share=share,
        extra_columns=policy,
        suite_columns=tuple(dict.fromkeys(c for c in suite_columns if c)),
    )
    if policy in ("fail", "warn") and not spec.expected_known:
        raise ValueError(
            f"extra_columns={policy!r} needs an expected column list: pass feature_columns, or name the columns in "
            "the suite (expect_column_to_exist), or set extra_columns='ignore'"
        )
    return spec
