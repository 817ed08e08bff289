"""storage: the same artefact API on ``file://`` (and plain paths) and on ``s3://`` (a real S3 API: moto server)."""

from __future__ import annotations

import pytest
from mlops_airflow import storage

pytestmark = pytest.mark.unit


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "file":
        return tmp_path.as_uri()
    return request.getfixturevalue("s3_store").root + "/data"


def test_to_uri_normalises_paths_and_drops_connection_ids(tmp_path):
    assert storage.to_uri(tmp_path / "a.parquet") == (tmp_path / "a.parquet").as_uri()
    assert storage.to_uri("s3://mlops_store@bucket/k/a.parquet") == "s3://bucket/k/a.parquet"
    assert storage.is_local(str(tmp_path)) and not storage.is_local("s3://b/k")
    assert storage.join("s3://b/root/", "x", "/y.json") == "s3://b/root/x/y.json"
    assert storage.name("s3://b/root/y.json") == "y.json" and storage.parent("s3://b/root/y.json") == "s3://b/root"
    with pytest.raises(ValueError, match="local_copy"):
        storage.local_path("s3://b/k")


def test_data_root_is_a_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", str(tmp_path))
    assert storage.data_root() == tmp_path.as_uri()
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", "s3://bucket/prefix")
    assert storage.data_root() == "s3://bucket/prefix"
    assert storage.data_root("/x/y") == "file:///x/y"


def test_round_trip_of_every_kind_of_write(root):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    table = storage.write_table(storage.join(root, "sets", "t.parquet"), frame)
    assert table.startswith(root) and storage.exists(table)
    pd.testing.assert_frame_equal(storage.read_table(table), frame)
    csv = storage.write_table(storage.join(root, "sets", "t.csv"), frame)
    pd.testing.assert_frame_equal(storage.read_table(csv), frame)
    doc = storage.write_json(storage.join(root, "s.json"), {"k": [1, 2]})
    assert storage.read_json(doc) == {"k": [1, 2]}
    assert storage.listdir(storage.join(root, "sets")) == sorted([csv, table])
    assert storage.listdir(storage.join(root, "sets"), ".csv") == [csv]
    assert storage.listdir(storage.join(root, "absent")) == []
    assert storage.md5(doc) == __import__("hashlib").md5(storage.read_bytes(doc)).hexdigest()
    storage.remove(doc)
    storage.remove(doc)  # idempotent
    assert not storage.exists(doc)


def test_a_failed_write_leaves_the_target_as_it_was(root):
    target = storage.write_atomic(storage.join(root, "keep.txt"), "old")
    with pytest.raises(RuntimeError), storage.staged_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert storage.read_text(target) == "old"


def test_local_copy_and_put_file(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00" * 3000)
    sent = storage.put_file(src, storage.join(root, "bin", "a.bin"))
    assert sent["bytes"] == 3000 and sent["md5"] == storage.md5(sent["uri"])
    with storage.local_copy(sent["uri"]) as path:
        assert path.read_bytes() == b"\x00" * 3000
    with pytest.raises(FileNotFoundError, match="no artefact at"), storage.local_copy(storage.join(root, "none")):
        pass


def test_an_unreachable_store_names_the_uri_and_the_next_step(monkeypatch):
    import json

    from conftest import free_port

    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_DOWN", json.dumps({
        "conn_type": "aws", "login": "k", "password": "s",
        "extra": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}}))
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", "mlops_down")
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes("s3://bucket/x/summary.json")
    err = info.value
    assert "s3://bucket/x/summary.json" in str(err) and "retry is safe" in str(err)
    assert err.evidence_uri == "s3://bucket/x/summary.json" and err.next_step


def test_a_path_with_spaces_and_percent_round_trips(tmp_path):
    odd = tmp_path / "a dir" / "50% off.json"
    uri = storage.write_json(odd, {"k": 1})
    assert "%20" in uri and storage.local_path(uri) == odd and storage.to_uri(uri) == uri
    assert storage.read_json(uri) == {"k": 1}
