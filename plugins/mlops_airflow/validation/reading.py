"""Reading a landed batch in bounded memory: Parquet row groups one at a time, a CSV line by line.

- :func:`parquet_rows` counts rows from the files' footers (no data read);
- :func:`parquet_chunks` yields record batches of at most ``chunk_rows`` rows, file after file (sorted), so the
  contract checks hold one chunk at a time;
- :func:`parquet_head` reads only the first row groups, up to ``max_rows`` rows (the sample a suite runs on when
  the whole batch may not fit in memory);
- :func:`repeated_csv_headers` finds data rows equal to the header row (several exports concatenated with their
  headers), streaming the file.

pyarrow is imported inside functions; the CSV scan is stdlib only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_CHUNK_ROWS = 65_536


def parquet_rows(files: list[Path]) -> int:
    """Rows of the Parquet ``files``, from their footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


def parquet_chunks(files: list[Path], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``chunk_rows`` rows, in file order, then row order."""
    import pyarrow.parquet as pq

    for path in files:
        with pq.ParquetFile(path) as handle:
            yield from handle.iter_batches(batch_size=chunk_rows)


def parquet_head(files: list[Path], max_rows: int) -> pa.Table:
    """The first ``max_rows`` rows of the batch, reading only the row groups that hold them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables: list[pa.Table] = []
    left = max_rows
    for path in files:
        if left <= 0:
            break
        with pq.ParquetFile(path) as handle:
            for group in range(handle.num_row_groups):
                if left <= 0:
                    break
                table = handle.read_row_group(group)
                tables.append(table.slice(0, left))
                left -= min(left, table.num_rows)
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def repeated_csv_headers(path: Path, limit: int = 5) -> tuple[int, list[int]]:
    """Data rows equal to the header row (fields compared stripped): their count and first ``limit`` line numbers.

    Line numbers are 1-based lines of the file (the header is line 1). A file that is not readable CSV gives
    ``(0, [])``: the CSV reader reports that.
    """
    count, lines = 0, []
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh)
            header = [field.strip() for field in next(reader, [])]
            if not any(header):
                return 0, []
            line = reader.line_num
            for row in reader:
                if len(row) == len(header) and [field.strip() for field in row] == header:
                    count += 1
                    if len(lines) < limit:
                        lines.append(line + 1)
                line = reader.line_num
    except csv.Error:
        return 0, []
    return count, lines
