"""The drift engine's inputs: Parquet files and folders read one column at a time, in-memory columns, the type
split and the bounded row sample. Real Parquet files in tmp_path."""

from __future__ import annotations

import pytest
from mlops_airflow.monitoring.drift_sources import (
    CATEGORICAL,
    NUMERICAL,
    ArraySource,
    DriftEngineError,
    ParquetSource,
    _as_source,
    column_kind,
    sample_rows,
)

pytestmark = pytest.mark.unit


def _write(path, start: int, n: int, row_group_size: int | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(range(start, start + n))
    pq.write_table(
        pa.table({"id": ids, "twice": [2.0 * i for i in ids], "plan": [f"p{i % 3}" for i in ids]}),
        path,
        row_group_size=row_group_size,
    )
    return path


def _column(source, column: str, batch_size: int = 7) -> list:
    return [v for arr in source.iter_column(column, batch_size) for v in arr.to_pylist()]


def test_a_parquet_file_is_read_column_by_column_in_batches(tmp_path):
    path = _write(tmp_path / "a.parquet", 0, 50, row_group_size=16)
    for spec in (path, str(path), path.as_uri()):
        source = ParquetSource(spec)
        assert source.rows == 50 and source.schema.names == ["id", "twice", "plan"]
        assert source.files == [str(path.resolve())]
    batches = list(source.iter_column("twice", 7))
    assert max(len(b) for b in batches) <= 7 and _column(source, "twice") == [2.0 * i for i in range(50)]
    with pytest.raises(
        DriftEngineError,
        match=r"column 'nope' is missing from '.*a.parquet' \(\['id', 'twice', "
        r"'plan'\]\)",
    ):
        list(source.iter_column("nope", 10))


def test_a_folder_is_every_parquet_file_below_it_in_order(tmp_path):
    root = tmp_path / "events"
    _write(root / "day=2026-11-02" / "part-0.parquet", 100, 5)
    _write(root / "day=2026-11-01" / "part-0.parquet", 0, 10)
    (root / "_SUCCESS").write_text("")
    (root / ".part-1.parquet.crc").write_text("x")
    (root / "day=2026-11-01" / "part-9.parquet.tmp").write_text("half written")
    source = ParquetSource(root)
    assert source.rows == 15 and [p.rsplit("/", 2)[-2] for p in source.files] == ["day=2026-11-01", "day=2026-11-02"]
    assert _column(source, "id") == [*range(10), *range(100, 105)]
    assert "day" not in source.schema.names  # partition keys are not features


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        ParquetSource(tmp_path / "missing.parquet")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(DriftEngineError, match=r"'.*empty' is a directory without Parquet files"):
        ParquetSource(tmp_path / "empty")
    bad = tmp_path / "bad.parquet"
    bad.write_text("id,plan\n1,a\n")
    with pytest.raises(DriftEngineError, match=r"cannot read '.*bad.parquet' as Parquet: "):
        ParquetSource(bad)
    with pytest.raises(DriftEngineError, match=r"cannot open 'nosuchscheme://bucket/x': "):
        ParquetSource("nosuchscheme://bucket/x")


def test_in_memory_columns_have_the_same_interface():
    import numpy as np
    import pyarrow as pa

    source = ArraySource({"x": np.array([1.0, np.nan, 3.0]), "s": ["a", None, "b"], "p": pa.array([1, 2, 3])})
    assert source.rows == 3 and source.path == "<memory>"
    assert [str(t) for t in source.schema.types] == ["double", "string", "int64"]
    assert _column(source, "x", 2) == [1.0, None, 3.0]  # NaN from numpy is a null, as from pandas
    assert [len(a) for a in source.iter_column("s", 2)] == [2, 1]
    assert ArraySource({}).rows == 0
    with pytest.raises(DriftEngineError, match=r"columns of unequal length: \{1, 2\}"):
        ArraySource({"a": [1, 2], "b": [1]})


def test_as_source_accepts_paths_mappings_and_sources(tmp_path):
    path = _write(tmp_path / "a.parquet", 0, 3)
    assert isinstance(_as_source(path), ParquetSource) and isinstance(_as_source(str(path)), ParquetSource)
    assert isinstance(_as_source({"a": [1]}), ArraySource)
    source = ArraySource({"a": [1]})
    assert _as_source(source) is source
    with pytest.raises(DriftEngineError, match="unsupported input list: pass a Parquet path or a mapping of columns"):
        _as_source([1, 2, 3])


def test_column_kind():
    import pyarrow as pa

    for numeric in (pa.int8(), pa.int64(), pa.uint32(), pa.float32(), pa.float64()):
        assert column_kind(numeric) == NUMERICAL
    for other in (
        pa.bool_(),
        pa.string(),
        pa.large_string(),
        pa.timestamp("us"),
        pa.date32(),
        pa.dictionary(pa.int8(), pa.string()),
        pa.decimal128(10, 2),
    ):
        assert column_kind(other) == CATEGORICAL


def test_sample_rows_is_uniform_reproducible_and_keeps_rows_together(tmp_path):
    import numpy as np

    root = tmp_path / "many"
    for i in range(4):
        _write(root / f"part-{i}.parquet", i * 1000, 1000, row_group_size=300)
    sample = sample_rows(root, ["id", "twice"], rows=500, seed=1, batch_size=128)
    ids = sample.column("id").to_pylist()
    assert sample.num_rows == 500 and len(set(ids)) == 500 and ids == sorted(ids)
    assert sample.column("twice").to_pylist() == [2.0 * i for i in ids]  # the same rows in every column
    assert min(ids) < 500 and max(ids) >= 3500  # drawn across all files
    assert sample_rows(root, ["id"], rows=500, seed=1, batch_size=999).column("id").to_pylist() == ids
    assert sample_rows(root, ["id"], rows=500, seed=2).column("id").to_pylist() != ids
    counts = np.histogram(ids, bins=4, range=(0, 4000))[0]
    assert counts.min() > 90  # roughly uniform over the four files (expected 125 each)

    small = sample_rows({"a": [3, 1, 2], "b": ["x", "y", "z"]}, ["a", "b"], rows=10)
    assert small.to_pydict() == {"a": [3, 1, 2], "b": ["x", "y", "z"]}  # fewer rows than asked: all, in order
    import pyarrow as pa

    empty = sample_rows({"a": pa.array([], type=pa.float64())}, ["a"], rows=5)
    assert empty.num_rows == 0 and str(empty.schema.field("a").type) == "double"
