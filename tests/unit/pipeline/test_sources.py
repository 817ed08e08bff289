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
