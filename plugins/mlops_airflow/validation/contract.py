"""The pipeline's own contract on a landed batch, checked beside (not inside) the user's expectation suite.

A user's suite cannot be expected to repeat what the pipeline requires, so these checks always run:

=====================  ==========================================================================================
check                  fails when
=====================  ==========================================================================================
entity_keys_present    an entity column is missing
entity_keys_not_null   an entity column holds a null (or NaN)
timestamp_present      the timestamp column is missing, not a timezone-aware timestamp, or holds nulls
timestamp_not_future   a timestamp is later than now + ``clock_skew``
timestamp_in_interval  a timestamp is before ``interval_start`` or after ``interval_end + allowed_lateness``
features_not_null      a feature column is missing, entirely null, or over ``max_null_share`` null
features_finite        a numeric feature holds +inf or -inf
label_present          the label column is missing
label_in_domain        binary classification: a value not in {0, 1} (or bool), a null; regression: not a finite
                       number (null, NaN, +/-inf, a non-numeric column)
label_not_constant     the label has fewer than two distinct values (nothing to learn; AUC undefined)
extra_columns          a column outside entity + timestamp + label + features + the suite's columns
                       (``extra_columns="fail"``; ``"warn"`` reports it without failing; ``"ignore"`` skips it)
=====================  ==========================================================================================

A check that does not apply (no label configured, ...) is reported as ``skipped`` with the reason, never left out.
Each result carries the check's name, its column(s), the counts, up to ``max_examples`` examples and the next
step. No Airflow import; pyarrow is imported inside functions (by :mod:`._contract_scan`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_airflow.validation._contract_scan import Scan
from mlops_airflow.validation._contract_verdicts import judge
from mlops_airflow.validation.spec import (
    CHECKS,
    EXTRA_COLUMN_POLICIES,
    ContractSpec,
    build_spec,
    parse_duration,
    parse_instant,
)

if TYPE_CHECKING:
    import pyarrow as pa


def run_contract(
    spec: ContractSpec,
    chunks: Iterable[pa.RecordBatch | pa.Table],
    *,
    now: datetime | None = None,
    max_examples: int = 5,
) -> dict[str, Any]:
    """Check ``chunks`` (record batches or tables, in row order) against ``spec``.

    :param now: the current time (aware); None = the wall clock.
    :param max_examples: examples kept per check.
    :returns: ``{"success", "statistics": {"evaluated", "successful", "failed", "warnings", "skipped"},
        "checks": [{"check", "status", "columns", "count", "total", "examples", "detail", "next_step"}], "rows",
        "spec"}``; ``status`` is ``pass``, ``fail``, ``warn`` or ``skipped``.
    """
    import pyarrow as pa

    scan = Scan(spec, now or datetime.now(UTC), max_examples)
    for chunk in chunks:
        if isinstance(chunk, pa.Table):
            scan.add_table(chunk)
        else:
            scan.add(chunk)
    checks = judge(spec, scan)
    counts = {status: sum(1 for c in checks if c["status"] == status) for status in ("pass", "fail", "warn", "skipped")}
    return {
        "success": counts["fail"] == 0,
        "statistics": {
            "evaluated": len(checks) - counts["skipped"],
            "successful": counts["pass"] + counts["warn"],
            "failed": counts["fail"],
            "warnings": counts["warn"],
            "skipped": counts["skipped"],
        },
        "checks": checks,
        "rows": scan.rows,
        "spec": spec.as_json(),
    }


def describe(check: dict[str, Any]) -> str:
    """One line for a failed (or warned) check: ``contract features_not_null(x): ...; e.g. [...]; next step: ...``."""
    columns = ", ".join(check.get("columns") or [])
    text = f"contract {check['check']}({columns}): {check['detail']}"
    if check.get("examples"):
        text += ", e.g. [" + ", ".join(check["examples"]) + "]"
    return f"{text}; next step: {check['next_step']}"


__all__ = [
    "CHECKS",
    "EXTRA_COLUMN_POLICIES",
    "ContractSpec",
    "build_spec",
    "describe",
    "parse_duration",
    "parse_instant",
    "run_contract",
]
