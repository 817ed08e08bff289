"""Sources: a function reference or a URI template, landed as one local file; missing columns name the field."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.pipeline.sources import format_uri, land, resolve_callable

DAY = date(2026, 11, 1)


def frame(day, n=5, **_):
    return pd.DataFrame({"id": range(n), "event_timestamp": pd.Timestamp(day.isoformat(), tz="UTC"),
                         "a": [0.5] * n, "y": [0, 1, 0, 1, 0][:n]})


@pytest.fixture
def module_file(tmp_path):
    f = tmp_path / "mydata.py"
    f.write_text("import pandas as pd\n"
                 "def batch(day, n=3):\n"
                 "    return pd.DataFrame({'id': range(n), 'a': [1.0] * n, 'y': [0] * n})\n"
                 "def not_a_frame(day):\n    return [1, 2]\n")
    return f


@pytest.mark.unit
def test_function_sources(tmp_path, module_file):
    assert resolve_callable("mydata.py:batch", base_dir=tmp_path)(DAY).shape == (3, 3)
    assert resolve_callable(f"{module_file}:batch")(DAY, n=2).shape == (2, 3)
    assert resolve_callable("json:dumps")([1]) == "[1]"
    out = land("mydata.py:batch", DAY, tmp_path / "landing", params={"n": 4}, base_dir=tmp_path)
    assert out["rows"] == 4 and out["path"].endswith("landing/2026-11-01.parquet")
    assert pd.read_parquet(out["path"]).shape == (4, 3)
    landed = land(frame, DAY, tmp_path / "l2")
    assert landed["columns"] == ["id", "event_timestamp", "a", "y"]


@pytest.mark.unit
def test_function_source_errors(tmp_path, module_file):
    with pytest.raises(FileNotFoundError, match="ModelSpec.source='nope.py:batch'"):
        resolve_callable("nope.py:batch", base_dir=tmp_path)
    with pytest.raises(AttributeError, match="has no function 'missing'; it has .*batch"):
        resolve_callable("mydata.py:missing", base_dir=tmp_path)
    with pytest.raises(ImportError, match="ModelSpec.holdout=.*module 'no_such_pkg_x.mod' cannot be imported"):
        resolve_callable("no_such_pkg_x.mod:f", field_name="holdout")
    with pytest.raises(TypeError, match="returned list, not a pandas DataFrame"):
        land("mydata.py:not_a_frame", DAY, tmp_path / "landing", base_dir=tmp_path)


@pytest.mark.unit
def test_missing_column_names_the_field_and_writes_nothing(tmp_path):
    with pytest.raises(DataValidationError, match=r"ModelSpec.label: \['target'\].*Nothing was versioned"):
        land(frame, DAY, tmp_path / "landing", required={"label": ["target"], "features": ["a"]})
    assert not list((tmp_path / "landing").glob("*"))


@pytest.mark.unit
def test_uri_template_sources(tmp_path):
    src = tmp_path / "delivered" / "2026" / "11"
    src.mkdir(parents=True)
    frame(DAY).to_parquet(src / "events-20261101.parquet", index=False)
    frame(DAY).to_csv(tmp_path / "delivered" / "2026-11-01.csv", index=False)
    template = (tmp_path / "delivered").as_uri() + "/{yyyy}/{mm}/events-{ds_nodash}.parquet"
    assert format_uri(template, DAY).endswith("/2026/11/events-20261101.parquet")
    out = land(template, DAY, tmp_path / "landing", required={"label": ["y"]})
    assert out["rows"] == 5 and out["uri"].startswith("file://") and pd.read_parquet(out["path"]).shape == (5, 4)
    csv = land(str(tmp_path / "delivered" / "{ds}.csv"), DAY, tmp_path / "landing_csv")
    assert csv["path"].endswith(".csv") and csv["rows"] == 5 and "y" in csv["columns"]
    with pytest.raises(DataValidationError, match="no batch at .*2026-11-02"):
        land(str(tmp_path / "delivered" / "{ds}.csv"), date(2026, 11, 2), tmp_path / "landing_csv")
    with pytest.raises(DataValidationError, match=r"ModelSpec.entity_columns: \['account'\]"):
        land(template, DAY, tmp_path / "landing3", required={"entity_columns": ["account"]})
    assert not list((tmp_path / "landing3").glob("*.parquet"))
    with pytest.raises(ValueError, match="placeholder"):
        format_uri("s3://b/{day}.parquet", DAY)


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> str:
    """The artefact root: a ``file://`` folder, or a bucket on a real S3 API (moto server)."""
    if request.param == "file":
        return (tmp_path / "data").as_uri()
    return request.getfixturevalue("s3_store").root + "/data"


@pytest.mark.unit
def test_the_landed_batch_is_an_artefact_at_its_uri(root, tmp_path):
    from mlops_airflow import storage

    out = land(frame, DAY, storage.join(root, "landing"), required={"label": ["y"]})
    assert out["path"] == f"{root}/landing/2026-11-01.parquet" == out["uri"]
    assert out["rows"] == 5 and storage.read_table(out["path"]).shape == (5, 4)
    again = land(frame, DAY, storage.join(root, "landing"))  # a retry: the same bytes at the same URI
    assert again["path"] == out["path"] and storage.listdir(storage.join(root, "landing")) == [out["path"]]


@pytest.mark.unit
def test_a_uri_template_on_the_store_is_copied_byte_for_byte(root, tmp_path):
    from mlops_airflow import storage

    src = storage.write_table(storage.join(root, "delivered", "events-20261101.csv"), frame(DAY))
    out = land(storage.join(root, "delivered", "events-{ds_nodash}.csv"), DAY, storage.join(root, "landing"),
               required={"label": ["y"], "entity_columns": ["id"]})
    assert out["uri"] == src and out["path"] == f"{root}/landing/2026-11-01.csv"
    assert storage.md5(out["path"]) == storage.md5(src) and out["rows"] == 5 and "a" in out["columns"]
    with pytest.raises(DataValidationError, match="no batch at .*events-20261102.csv"):
        land(storage.join(root, "delivered", "events-{ds_nodash}.csv"), date(2026, 11, 2), storage.join(root, "l"))


@pytest.mark.unit
def test_a_batch_missing_a_column_never_reaches_the_store(root):
    from mlops_airflow import storage

    src = storage.write_table(storage.join(root, "delivered", "2026-11-01.parquet"), frame(DAY))
    with pytest.raises(DataValidationError, match=r"ModelSpec.features: \['b'\].*Nothing was versioned"):
        land(storage.join(root, "delivered", "{ds}.parquet"), DAY, storage.join(root, "landing"),
             required={"features": ["a", "b"]})
    with pytest.raises(DataValidationError, match=r"ModelSpec.label: \['target'\]"):
        land(frame, DAY, storage.join(root, "landing"), required={"label": ["target"]})
    assert storage.listdir(storage.join(root, "landing")) == [] and storage.exists(src)


@pytest.mark.unit
def test_an_unreachable_store_names_the_source_uri_and_the_next_step(monkeypatch, tmp_path):
    import json

    from conftest import free_port
    from mlops_airflow.storage import StorageError

    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SOURCE_DOWN", json.dumps({
        "conn_type": "aws", "login": "k", "password": "s",
        "extra": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}}))
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", "mlops_source_down")
    with pytest.raises(StorageError, match=r"s3://bucket/in/2026-11-01.parquet.*clear the task") as info:
        land("s3://bucket/in/{ds}.parquet", DAY, tmp_path / "landing")
    assert info.value.evidence_uri == "s3://bucket/in/2026-11-01.parquet"
    assert not (tmp_path / "landing").exists() or not list((tmp_path / "landing").iterdir())
