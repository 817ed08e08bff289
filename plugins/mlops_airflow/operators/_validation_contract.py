"""The pipeline contract part of the data validation gate: build the spec, feed the batch, describe the verdicts.

The checks themselves live in :mod:`mlops_airflow.validation` (no Airflow import). Here the gate's parameters
become a :class:`~mlops_airflow.validation.spec.ContractSpec` (a misconfiguration raises ``MLOpsError`` before the
batch is touched), the batch is fed in chunks (a Parquet batch row group by row group from its files; a CSV from
the parsed frame, in slices) and the failed checks become reasons. pandas and pyarrow are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MLOpsError
from mlops_airflow.validation.contract import build_spec, describe, run_contract
from mlops_airflow.validation.reading import DEFAULT_CHUNK_ROWS, parquet_chunks

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from mlops_airflow.operators._validation_structural import Batch
    from mlops_airflow.validation.spec import ContractSpec

_COLUMN_KWARGS = ("column", "column_A", "column_B")


def suite_columns(suite_spec: dict[str, Any]) -> list[str]:
    """Every column the suite's expectations name (``column``, ``column_list``, ``column_A``/``column_B``)."""
    found: list[str] = []
    for item in suite_spec.get("expectations") or []:
        kwargs = item.get("kwargs") or {}
        names = [kwargs.get(k) for k in _COLUMN_KWARGS] + list(kwargs.get("column_list") or [])
        found += [str(n) for n in names if isinstance(n, str) and n and str(n) not in found]
    return found


def contract_spec(suite_spec: dict[str, Any], **params: Any) -> ContractSpec:
    """The contract from the gate's (rendered) parameters and the suite's columns.

    :raises MLOpsError: naming the parameter; the batch is not touched.
    """
    try:
        return build_spec(suite_columns=suite_columns(suite_spec), **params)
    except ValueError as err:
        raise MLOpsError(f"DataValidationGateOperator: {err}; the batch was not touched.") from err


def _frame_chunks(frame: pd.DataFrame, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Arrow record batches of a pandas frame, ``chunk_rows`` at a time (mixed object columns as strings)."""
    import pyarrow as pa

    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        try:
            yield pa.RecordBatch.from_pandas(part, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            mixed = {c: "string" for c, t in part.dtypes.items() if str(t) == "object"}
            yield pa.RecordBatch.from_pandas(part.astype(mixed), preserve_index=False)


def check_contract(
    spec: ContractSpec, batch: Batch, source: Path, *, max_examples: int, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> dict[str, Any]:
    """Run the contract checks over the whole batch; the result says how the batch was read (``read``)."""
    is_csv = source.is_file() and source.suffix.lower() == ".csv"
    if is_csv and batch.frame is not None:
        chunks: Any = _frame_chunks(batch.frame, chunk_rows)
        read = f"CSV parsed whole (pandas), checked in slices of {chunk_rows} rows"
    else:
        chunks = parquet_chunks(batch.files, chunk_rows)
        read = f"Parquet streamed from {len(batch.files)} file(s) in record batches of <= {chunk_rows} rows"
    result = run_contract(spec, chunks, max_examples=max_examples)
    result["read"] = read
    return result


def not_run_contract(why: str) -> dict[str, Any]:
    """The contract part of the result when a structural failure stopped every check."""
    stats = {"evaluated": 0, "successful": 0, "failed": 0, "warnings": 0, "skipped": 0}
    return {"success": False, "statistics": stats, "checks": [], "rows": 0, "not_run": why}


def contract_reasons(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The failure lines and the warning lines of a contract result."""
    checks = result.get("checks") or []
    failures = [describe(c) for c in checks if c["status"] == "fail"]
    warnings = [describe(c) for c in checks if c["status"] == "warn"]
    return failures, warnings


def contract_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The contract's counts and failed/warned check names, for the verdict (XCom)."""
    checks = result.get("checks") or []
    return {
        **(result.get("statistics") or {}),
        "failed_checks": [c["check"] for c in checks if c["status"] == "fail"],
        "warned_checks": [c["check"] for c in checks if c["status"] == "warn"],
    }
