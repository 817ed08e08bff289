"""Structural checks of a landed batch, before any expectation runs: each failure is a one-line reason.

The file is missing, empty (0 bytes), of an unsupported type or unreadable ("corrupt Parquet: ..."), a CSV whose
header row repeats inside the data, has zero rows, or its timestamp column holds timestamps without a timezone.
With ``suite_sample_rows``, a Parquet batch of more rows is read only up to that many rows (its first row groups)
for the suite; the contract checks read every row group separately (``mlops_airflow.validation.reading``).
pandas and pyarrow are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mlops_airflow.operators._validation_files import file_md5
from mlops_airflow.operators._validation_quarantine import earlier_quarantine, shown
from mlops_airflow.validation.reading import parquet_head, parquet_rows, repeated_csv_headers

if TYPE_CHECKING:
    import pandas as pd

# An offset (Z, UTC, +hh, +hh:mm, +hhmm) after a time of day: a CSV timestamp string that carries a timezone.
_TZ_SUFFIX = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)


class Batch(NamedTuple):
    """What the structural checks found: the frame (None when unreadable), its md5, its files, the failures.

    ``rows`` counts the whole batch; ``frame`` holds all of them, or the first ``suite_sample_rows`` of a larger
    Parquet batch (then ``sampled`` is True).
    """

    frame: pd.DataFrame | None
    data_md5: str | None
    files: list[Path]
    reasons: list[str]
    rows: int = 0
    sampled: bool = False


def check_batch(
    source: Path,
    landed: bool,
    *,
    source_uri: str,
    timestamp_column: str | None,
    quarantine_dir: str,
    suite_sample_rows: int | None = None,
) -> Batch:
    """Run the structural checks in order; the first that fails stops the rest (``reasons`` says why).

    ``source`` is the batch on this worker's disk (staged by the caller), ``source_uri`` where it landed: the
    reasons name the latter.
    """
    frame: pd.DataFrame | None = None
    data_md5: str | None = None
    data_files: list[Path] = []
    structural: list[str] = []
    rows, sampled = 0, False
    is_csv = source.suffix.lower() == ".csv" and source.is_file()
    if not landed:
        structural.append(missing_reason(source_uri, quarantine_dir))
    else:
        data_files, structural = list_files(source, source_uri)
        if data_files:
            data_md5 = batch_md5(data_files, source.is_dir())
        if not structural and is_csv:
            structural = repeated_header_reason(source)
        if not structural and not is_csv and suite_sample_rows:
            rows, structural = _parquet_rows(data_files)
            sampled = rows > suite_sample_rows
        if not structural:
            frame, structural = read_batch(source, data_files, suite_sample_rows if sampled else None)
            rows = rows if sampled else (len(frame) if frame is not None else 0)
        if frame is not None and not structural:
            frame, structural = check_timestamp(frame, timestamp_column, is_csv)
    return Batch(frame, data_md5, data_files, structural, rows, sampled)


def repeated_header_reason(source: Path) -> list[str]:
    """A CSV whose header row repeats as data (exports concatenated with their headers) is named as such."""
    count, lines = repeated_csv_headers(source)
    if not count:
        return []
    where = ", ".join(str(n) for n in lines) + (", ..." if count > len(lines) else "")
    return [
        f"CSV header row repeated inside the data: {count} row(s) of {source.name} equal the header (line(s) "
        f"{where}), as when several exports are concatenated with their headers; strip the repeated header rows "
        "(keep line 1)"
    ]


def _parquet_rows(files: list[Path]) -> tuple[int, list[str]]:
    import pyarrow as pa

    try:
        return parquet_rows(files), []
    except (pa.ArrowException, OSError, ValueError) as err:
        return 0, [f"corrupt Parquet: {err}"]


def missing_reason(source_uri: str, quarantine_dir: str) -> str:
    reason = f"file missing: {shown(source_uri)}"
    earlier = earlier_quarantine(source_uri, quarantine_dir)
    if earlier:
        reason += f" (an earlier try quarantined it to {earlier})"
    return reason


def list_files(source: Path, source_uri: str | None = None) -> tuple[list[Path], list[str]]:
    where = shown(source_uri or source)

    def named(path: Path) -> str:  # a staged file as the batch's location names it
        return where if path == source else f"{where}/{path.relative_to(source).as_posix()}"

    if source.is_dir():
        files = sorted(p for p in source.rglob("*.parquet") if p.is_file())
        if not files:
            return [], [f"no Parquet files in directory {where}"]
    else:
        files = [source]
        if source.suffix.lower() not in (".parquet", ".csv"):
            return files, [
                f"unsupported file type {source.suffix or '(none)'!r}: expected .parquet, .csv or a "
                "directory of Parquet files"
            ]
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        return files, [f"empty file (0 bytes): {named(p)}" for p in empty]
    return files, []


def batch_md5(files: list[Path], is_dir: bool) -> str:
    """md5 of the file, or of the sorted md5s of a directory's Parquet files."""
    if not is_dir:
        return file_md5(files[0])
    joined = "\n".join(sorted(file_md5(p) for p in files))
    return hashlib.md5(joined.encode(), usedforsecurity=False).hexdigest()


def read_batch(source: Path, files: list[Path], head_rows: int | None = None) -> tuple[pd.DataFrame | None, list[str]]:
    """The batch as a pandas frame (a Parquet batch's first ``head_rows`` rows only, when given)."""
    if source.is_file() and source.suffix.lower() == ".csv":
        frame, reasons = _read_csv(source)
    else:
        frame, reasons = _read_parquet(files, source, head_rows)
    if frame is not None and not reasons and len(frame) == 0:
        reasons = [f"zero rows in {source.name} (the file has a header/schema but no data)"]
    return frame, reasons


def _read_parquet(files: list[Path], source: Path, head_rows: int | None) -> tuple[pd.DataFrame | None, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    if head_rows:
        try:
            tables.append(parquet_head(files, head_rows))
        except (pa.ArrowException, OSError, ValueError) as err:
            return None, [f"corrupt Parquet or incompatible schemas in {source.name}: {err}"]
    for path in [] if head_rows else files:
        try:
            tables.append(pq.read_table(path))
        except (pa.ArrowException, OSError, ValueError) as err:
            return None, [f"corrupt Parquet: {path.name}: {err}"]
    try:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowException, ValueError) as err:
        return None, [f"Parquet files in {source.name} have incompatible schemas: {err}"]
    try:
        return table.to_pandas(), []
    except (pa.ArrowException, ValueError) as err:
        return None, [f"corrupt Parquet: {source.name}: cannot convert to pandas: {err}"]


def _read_csv(source: Path) -> tuple[pd.DataFrame | None, list[str]]:
    import pandas as pd

    try:
        return pd.read_csv(source), []
    except pd.errors.EmptyDataError:
        return None, [f"empty CSV (no header): {source.name}"]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        return None, [f"malformed CSV: {source.name}: {str(err).strip().splitlines()[0]}"]


def check_timestamp(frame: pd.DataFrame, column: str | None, is_csv: bool) -> tuple[pd.DataFrame, list[str]]:
    """Timestamps must carry a timezone; CSV strings are parsed to UTC. A missing column is left to GX."""
    import pandas as pd

    if not column or column not in frame.columns:
        return frame, []
    series = frame[column]
    naive = f"timestamps without a timezone in column {column}: write them as UTC"
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return frame, []
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return frame, [f"{naive} (the column is {series.dtype}, tz-naive)"]
    if series.isna().all():
        if is_csv:
            frame = frame.assign(**{column: pd.to_datetime(series, utc=True)})
        return frame, []  # all null: the not-null expectations report it
    if is_csv and (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
        values = series.dropna().astype(str).str.strip()
        without_tz = values[~values.str.contains(_TZ_SUFFIX)]
        if len(without_tz):
            return frame, [f"{naive} ({len(without_tz)} of {len(values)} values, e.g. {without_tz.iloc[0]!r})"]
        try:
            parsed = pd.to_datetime(series, utc=True, format="ISO8601")
        except (ValueError, TypeError) as err:
            return frame, [f"unparseable timestamps in column {column}: {str(err).strip().splitlines()[0]}"]
        return frame.assign(**{column: parsed}), []
    return frame, [f"column {column} has type {series.dtype}, not a timezone-aware timestamp: write it as UTC"]
