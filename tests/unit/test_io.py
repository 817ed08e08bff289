"""Whole-file writes and content hashes (``mlops_airflow._io``): a reader never sees half a file, a failed write
leaves the previous file and no temporary behind, hashes match hashlib's."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from mlops_airflow._io import copy_atomic, file_md5, file_sha256, fsync_dir, write_atomic

pytestmark = pytest.mark.unit


def test_hashes_are_hashlib_s_read_in_chunks(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)  # more than two chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_md5(path) == hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's content hash
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_md5(empty) == "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(FileNotFoundError):
        file_md5(tmp_path / "missing")


def test_write_text_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "verdict.json"
    assert write_atomic(target, '{"passed": true}') == target
    assert target.read_text() == '{"passed": true}'
    write_atomic(str(target), "é\n")
    assert target.read_bytes() == "é\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["verdict.json"]


def test_write_with_a_callable_gets_the_temporary_path(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "rows.parquet"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not target.exists()  # nothing at the target until the rename
        pq.write_table(pa.table({"x": [1, 2, 3]}), tmp)

    write_atomic(target, write)
    assert seen == [tmp_path / ".rows.parquet.tmp"]
    assert pq.read_table(target).column("x").to_pylist() == [1, 2, 3]
    assert not seen[0].exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old" and not (tmp_path / ".report.html.tmp").exists()

    def interrupted(tmp):
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_readers_see_the_old_or_the_new_file_never_a_mix(tmp_path):
    target = tmp_path / "doc.txt"
    old, new = "a" * 200_000, "b" * 200_000
    write_atomic(target, old)
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(30):
        write_atomic(target, new if i % 2 else old)
    stop.set()
    reader.join()
    assert seen <= {old, new} and seen


def test_copy_atomic_with_and_without_verification(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(5000))
    dest = tmp_path / "out" / "dst.bin"
    assert copy_atomic(source, dest) == dest and dest.read_bytes() == source.read_bytes()
    dest.write_bytes(b"previous")
    assert copy_atomic(str(source), str(dest), verify=True) == dest
    assert file_md5(dest) == file_md5(source)
    with pytest.raises(FileNotFoundError):
        copy_atomic(tmp_path / "missing.bin", dest)
    assert dest.read_bytes() == source.read_bytes() and not (dest.parent / ".dst.bin.tmp").exists()


def test_fsync_dir(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
