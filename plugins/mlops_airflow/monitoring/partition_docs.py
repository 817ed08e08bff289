"""Map-reduce drift, part 1: the documents (summaries, plans, counts) as JSON behind a path or URI (through
``mlops_airflow.storage``), and the partitions (files, file lists, row-group ranges, in-memory columns) a map task
reads.

No Airflow import at module level (``storage`` brings it in for an object-store URI only); numpy, scipy and
pyarrow are imported inside functions.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.drift_engine import (
    ArraySource,
    DriftEngineError,
    ParquetSource,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


FORMAT = 1
#: sample values kept per partition and column for the Wasserstein/KS edges.
SAMPLE_SIZE = 1 << 14
#: distinct values a numerical summary counts before it stops (the engine's ``_DISTINCT_LIMIT``).
DISTINCT_LIMIT = 21
_PLAN_SAMPLE_MAX = 1 << 20  # merged sample values per column above which reduce 1 compacts them ...
_PLAN_SAMPLE = 1 << 18  # ... to this many weighted values
_SIDES = ("reference", "current")

# -- documents -----------------------------------------------------------------------------------------------------


def _enc(arr: np.ndarray) -> dict[str, Any]:
    """A 1-D numpy array as JSON: dtype and base64 of its little-endian bytes (exact, ~11 characters a float)."""
    import numpy as np

    arr = np.ascontiguousarray(arr)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {"dtype": little.dtype.str, "b64": base64.b64encode(little.tobytes()).decode("ascii")}


def _dec(doc: Mapping[str, Any]) -> np.ndarray:
    import numpy as np

    return np.frombuffer(base64.b64decode(doc["b64"]), dtype=np.dtype(doc["dtype"])).copy()


def _enc_type(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    return base64.b64encode(pa.schema([pa.field("x", arrow_type)]).serialize().to_pybytes()).decode("ascii")


def _dec_type(text: str) -> pa.DataType:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text))).field("x").type


def save(obj: Mapping[str, Any], uri: str | Path) -> str:
    """Write a document (summary, plan, counts) as JSON to a path or URI (``file://``, ``s3://``, any fsspec
    scheme) through ``mlops_airflow.storage``; a name ending in ``.gz`` is gzip-compressed (``mtime=0``: the same
    document gives the same bytes).

    The write is whole (a local file goes through a temporary name; an object-store PUT is atomic), so a retried
    task never leaves half a document. Returns ``uri`` as a string (what to push to XCom).
    """
    from mlops_airflow import storage

    data = json.dumps(obj, separators=(",", ":")).encode()
    uri = str(uri)
    storage.write_atomic(uri, gzip.compress(data, mtime=0) if uri.endswith(".gz") else data)
    return uri


def load(uri: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a document written by ``save`` (a document passed in is returned as it is)."""
    if isinstance(uri, Mapping):
        return dict(uri)
    from mlops_airflow import storage

    data = storage.read_bytes(str(uri))
    return json.loads(gzip.decompress(data) if str(uri).endswith(".gz") else data)


def _expect(doc: Mapping[str, Any], kind: str, side: str | None = None) -> None:
    if doc.get("format") != FORMAT or doc.get("kind") != kind:
        raise DriftEngineError(
            f"expected a {kind} document (format {FORMAT}), got kind={doc.get('kind')!r} format={doc.get('format')!r}"
        )
    if side is not None and doc.get("side") != side:
        raise DriftEngineError(
            f"a {doc.get('side')} {kind} of partition {doc.get('partition')!r} was passed as {side} data"
        )


# -- partitions ----------------------------------------------------------------------------------------------------


class _RowGroups:
    """Row groups ``[start, stop)`` of one Parquet file, with the ``ParquetSource`` interface."""

    def __init__(self, path: str, start: int, stop: int) -> None:
        import pyarrow.parquet as pq

        self._source = ParquetSource(path)
        if len(self._source.files) != 1:
            raise DriftEngineError(f"a row-group partition needs one Parquet file, {path!r} has several")
        self.path = path
        self._file = self._source.files[0]
        self.schema = self._source.schema
        with self._source.filesystem.open_input_file(self._file) as handle:
            meta = pq.ParquetFile(handle).metadata
        if not 0 <= start <= stop <= meta.num_row_groups:
            raise DriftEngineError(f"row groups [{start}, {stop}) out of range: {path!r} has {meta.num_row_groups}")
        self._groups = list(range(start, stop))
        self.rows = sum(meta.row_group(i).num_rows for i in self._groups)

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        import pyarrow.parquet as pq

        if not self._groups:
            return
        with self._source.filesystem.open_input_file(self._file) as handle:
            reader = pq.ParquetFile(handle, pre_buffer=False)
            if column not in reader.schema_arrow.names:
                raise DriftEngineError(f"column {column!r} is missing from {self.path!r} ({reader.schema_arrow.names})")
            for batch in reader.iter_batches(batch_size=batch_size, row_groups=self._groups, columns=[column]):
                yield batch.column(0)


class _Files:
    """Several Parquet files or directories read as one partition."""

    def __init__(self, paths: Sequence[str]) -> None:
        if not paths:
            raise DriftEngineError("a partition given as a list needs at least one path")
        self._sources = [ParquetSource(p) for p in paths]
        self.path = ",".join(map(str, paths))
        self.schema = self._sources[0].schema
        self.rows = sum(s.rows for s in self._sources)

    def iter_column(self, column: str, batch_size: int) -> Iterator[pa.Array]:
        for source in self._sources:
            if column not in source.schema.names:
                raise DriftEngineError(f"column {column!r} is missing from {source.path!r} ({source.schema.names})")
            yield from source.iter_column(column, batch_size)


def _fingerprint(source: ArraySource) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for name in source.schema.names:
        digest.update(name.encode())
        for arr in source.iter_column(name, 1 << 30):
            digest.update(f"{arr.type}:{arr.offset}:{len(arr)}".encode())
            for buf in arr.buffers():
                if buf is not None:
                    digest.update(buf)
    return f"memory:{source.rows}:{digest.hexdigest()[:16]}"


def _is_columns(spec: Any) -> bool:
    """A mapping of columns (in memory), not a ``{"path": ...}``/``{"paths": ...}`` spec."""
    return isinstance(spec, Mapping) and not (("path" in spec and "row_groups" in spec) or "paths" in spec)


def open_partition(spec: Any) -> tuple[Any, str]:
    """``(source, key)`` for a partition spec; the key names the partition in documents and errors.

    :param spec: a Parquet path/URI (file or directory), a list of them, ``{"path": file, "row_groups": [a, b]}``,
        ``{"paths": [...]}``, a ``ParquetSource``/``ArraySource``, or a mapping column -> values (in memory).
    """
    if isinstance(spec, ParquetSource):
        return spec, spec.path
    if isinstance(spec, ArraySource):
        return spec, _fingerprint(spec)
    if isinstance(spec, str | Path):
        return ParquetSource(spec), str(spec)
    if _is_columns(spec):
        source = ArraySource(spec)
        return source, _fingerprint(source)
    if isinstance(spec, Mapping) and "row_groups" in spec and "path" in spec:
        start, stop = (int(x) for x in spec["row_groups"])
        return _RowGroups(str(spec["path"]), start, stop), f"{spec['path']}#row_groups={start}:{stop}"
    if isinstance(spec, Mapping) and "paths" in spec:
        paths = [str(p) for p in spec["paths"]]
        return _Files(paths), ",".join(paths)
    if isinstance(spec, list | tuple) and all(isinstance(p, str | Path) for p in spec):
        paths = [str(p) for p in spec]
        return _Files(paths), ",".join(paths)
    raise DriftEngineError(
        f"unsupported partition {type(spec).__name__}: pass a Parquet path, a list of paths, "
        "{'path': ..., 'row_groups': [start, stop]} or a mapping of columns"
    )


def split_partitions(path: str | Path, rows_per_partition: int) -> list[dict[str, Any]]:
    """Partition specs for a Parquet file or directory: runs of whole row groups of one file, each of at least
    ``rows_per_partition`` rows (the last of a file may be smaller); reads footers only. JSON-serialisable, so the
    list can feed ``.expand()`` of the map tasks."""
    import pyarrow.parquet as pq

    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
    source = ParquetSource(path)
    text = str(path)
    prefix = text.split("://", 1)[0] + "://" if "://" in text and not text.startswith(("file://", "local://")) else ""
    specs: list[dict[str, Any]] = []
    for file in source.files:
        with source.filesystem.open_input_file(file) as handle:
            meta = pq.ParquetFile(handle).metadata
        start, rows = 0, 0
        for i in range(meta.num_row_groups):
            rows += meta.row_group(i).num_rows
            if rows >= rows_per_partition:
                specs.append({"path": prefix + file, "row_groups": [start, i + 1], "rows": rows})
                start, rows = i + 1, 0
        if start < meta.num_row_groups or meta.num_row_groups == 0:
            specs.append({"path": prefix + file, "row_groups": [start, meta.num_row_groups], "rows": rows})
    return specs
