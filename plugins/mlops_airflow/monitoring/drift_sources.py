"""Inputs of the drift engine: Parquet files or folders (local, or an object-store URI read through
``mlops_airflow.storage``'s filesystem) read one column at a time in record batches, in-memory columns for tests,
and a bounded random row sample.

Imports pyarrow and numpy inside functions only, and Airflow (through ``storage``) only for an object-store URI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

NUMERICAL = "numerical"
CATEGORICAL = "categorical"


class DriftEngineError(ValueError):
    """Bad input for the drift engine (missing file, unknown column, unsupported stattest, mixed types)."""


# -- sources -------------------------------------------------------------------------------------------------------


def arrow_filesystem(location: str | Path) -> tuple[Any, str]:
    """``(pyarrow filesystem, path on it)`` of a local path, a ``file://`` URI or an object-store URI.

    An object-store URI (``s3://...``) is read through the fsspec filesystem of ``mlops_airflow.storage`` (the
    Airflow connection ``[mlops] storage_conn_id`` gives the endpoint and credentials), so record batches stream
    from the store with the pack's credentials; ``storage`` (and so Airflow) is imported for such a URI only.
    """
    import pyarrow.fs as pafs

    text = str(location)
    if "://" in text and not text.startswith(("file://", "local://")):
        from mlops_airflow import storage

        target = storage.object_path(text)
        return pafs.PyFileSystem(pafs.FSSpecHandler(target.fs)), str(target.path)
    local = Path(text.split("://", 1)[1]) if "://" in text else Path(text)
    return pafs.LocalFileSystem(), str(local.expanduser().resolve())


class ParquetSource:
    """A Parquet file, or a directory of Parquet files (recursive), local or an object-store URI (``s3://...``,
    read through ``arrow_filesystem``).

    Only footers are read on open; columns are streamed on demand, one at a time, in record batches.
    Hive partition keys in directory names are not columns here (drift compares features, not partitions).
    """

    def __init__(self, path: str | Path) -> None:
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        self.path = str(path)
        try:
            self.filesystem, base = arrow_filesystem(self.path)
            info = self.filesystem.get_file_info(base)
        except Exception as err:  # noqa: BLE001 - any filesystem error is reported with the path
            raise DriftEngineError(f"cannot open {self.path!r}: {err}") from err
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.path)
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(base, recursive=True)
            files = sorted(
                f.path
                for f in self.filesystem.get_file_info(selector)
                if f.type == pafs.FileType.File
                and not Path(f.path).name.startswith((".", "_"))
                and not f.path.endswith((".tmp", ".crc"))
            )
        else:
            files = [base]
        if not files:
            raise DriftEngineError(f"{self.path!r} is a directory without Parquet files")
        self.files = files
        self._metadata = []
        for file in files:
            try:
                with self.filesystem.open_input_file(file) as handle:
                    self._metadata.append(pq.ParquetFile(handle).metadata)
            except Exception as err:  # noqa: BLE001
                raise DriftEngineError(f"cannot read {file!r} as Parquet: {err}") from err
        self.schema = self._metadata[0].schema.to_arrow_schema()

    @property
    def rows(self) -> int:
        return sum(m.num_rows for m in self._metadata)

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        import pyarrow.parquet as pq

        for file in self.files:
            with self.filesystem.open_input_file(file) as handle:
                # pre_buffer=False: pyarrow's default pre-buffers the column of *every* row group of the file
                # (80 MB a float column at 10M rows); without it memory is one row group's column chunk.
                reader = pq.ParquetFile(handle, pre_buffer=False)
                if column not in reader.schema_arrow.names:
                    raise DriftEngineError(f"column {column!r} is missing from {file!r} ({reader.schema_arrow.names})")
                for batch in reader.iter_batches(batch_size=batch_size, columns=[column]):
                    yield batch.column(0)


class ArraySource:
    """In-memory columns (numpy arrays, lists or pyarrow arrays) with the ``ParquetSource`` interface; for tests."""

    def __init__(self, columns: Mapping[str, Any]) -> None:
        import pyarrow as pa

        self.path = "<memory>"
        self._columns = {
            name: values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True)
            for name, values in columns.items()
        }
        self.schema = pa.schema([(name, arr.type) for name, arr in self._columns.items()])
        lengths = {len(arr) for arr in self._columns.values()}
        if len(lengths) > 1:
            raise DriftEngineError(f"columns of unequal length: {lengths}")
        self._rows = lengths.pop() if lengths else 0

    @property
    def rows(self) -> int:
        return self._rows

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        arr = self._columns[column]
        for start in range(0, len(arr), batch_size):
            yield arr.slice(start, batch_size)


def _as_source(data: Any) -> ParquetSource | ArraySource:
    if isinstance(data, ParquetSource | ArraySource):
        return data
    if isinstance(data, str | Path):
        return ParquetSource(data)
    if isinstance(data, Mapping):
        return ArraySource(data)
    raise DriftEngineError(f"unsupported input {type(data).__name__}: pass a Parquet path or a mapping of columns")


def column_kind(arrow_type: Any) -> str:
    """``numerical`` for integer/floating types (as pandas' ``is_numeric_dtype`` minus bool), else categorical."""
    import pyarrow as pa

    return NUMERICAL if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) else CATEGORICAL


def sample_rows(data: Any, columns: Sequence[str], rows: int, seed: int = 0, batch_size: int = 1 << 18) -> Any:
    """A uniform random sample of ``rows`` rows (without replacement, fixed ``seed``) of ``columns``, as a
    ``pyarrow.Table``; read one column at a time, so memory is one record batch plus the sample. All rows when the
    data has no more than ``rows``. Same input and seed, same sample (a retried task draws the same rows)."""
    import numpy as np
    import pyarrow as pa

    source = _as_source(data)
    total = source.rows
    rng = np.random.default_rng(seed)
    picks = None if total <= rows else np.sort(rng.choice(total, size=rows, replace=False))
    out = {}
    for col in columns:
        chunks, offset = [], 0
        for arr in source.iter_column(col, batch_size):
            if picks is None:
                chunks.append(arr)
            else:
                lo, hi = np.searchsorted(picks, [offset, offset + len(arr)])
                if hi > lo:
                    chunks.append(arr.take(pa.array(picks[lo:hi] - offset)))
            offset += len(arr)
        out[col] = pa.concat_arrays(chunks) if chunks else pa.array([], type=source.schema.field(col).type)
    return pa.table(out)
