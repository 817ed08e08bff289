"""No DVC, no Feast: the dataset version (``<root>/datasets/<model>/``) and the training set, through the artefact
store on ``file://`` and on ``s3://`` (a real S3 API)."""

from __future__ import annotations

import pandas as pd
import pytest
from mlops_airflow import storage
from mlops_airflow.exceptions import DatasetVersionError, FeatureStoreError
from mlops_airflow.pipeline.datasets import build_training_set, version_locally

pytestmark = pytest.mark.unit


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "data").as_uri()
    return request.getfixturevalue("s3_store").root + "/data"


def batch(day: str, n: int = 6, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"account_id": range(n), "event_timestamp": pd.Timestamp(day, tz="UTC"),
                         "x1": [0.1 * i + shift for i in range(n)], "y": [i % 2 for i in range(n)]})


def land(root: str, day: str, **kw) -> str:
    return storage.write_table(storage.join(root, "landing", f"{day}.parquet"), batch(day, **kw))


def test_a_dataset_version_is_the_md5_of_its_files_and_a_retry_changes_nothing(root):
    folder = storage.join(root, "datasets", "m1")
    first = version_locally(land(root, "2026-11-01"), folder)
    assert first["path"] == folder and first["rev"] == f"local:{first['md5'][:12]}"
    assert first["rows"] == 6 and first["files"] == 1 and first["file"] == "2026-11-01.parquet"
    assert storage.exists(storage.join(folder, "2026-11-01.parquet"))
    assert version_locally(land(root, "2026-11-01"), folder) == first  # retry: same version
    second = version_locally(land(root, "2026-11-02", n=4), folder)
    assert second["files"] == 2 and second["rows"] == 10 and second["md5"] != first["md5"]


def test_a_different_batch_for_a_versioned_day_is_refused(root):
    folder = storage.join(root, "datasets", "m1")
    version_locally(land(root, "2026-11-01"), folder)
    with pytest.raises(DatasetVersionError, match="already holds a different batch for 2026-11-01.parquet"):
        version_locally(land(root, "2026-11-01", shift=1.0), folder)


def test_the_training_set_is_content_addressed_under_the_root(root):
    folder = storage.join(root, "datasets", "m1")
    version_locally(land(root, "2026-11-01"), folder)
    version = version_locally(land(root, "2026-11-02"), folder)
    kw = {"model_name": "m1", "output_dir": storage.join(root, "training_sets"), "features": ["x1"], "label": "y",
          "entity_columns": ["account_id"], "timestamp_column": "event_timestamp",
          "task_type": "binary_classification"}
    ts = build_training_set(version, **kw, entity_start="2026-11-02T00:00:00+00:00")
    assert ts["uri"] == storage.join(root, "training_sets", "m1", f"{ts['hash'][:16]}.parquet")
    assert ts["rows"] == 6 and ts["entity_window"]["start"].startswith("2026-11-02")
    assert ts["dataset"]["path"] == folder and storage.read_table(ts["uri"]).shape == (6, 4)
    assert build_training_set(version, **kw, entity_start="2026-11-02T00:00:00+00:00") == ts  # retry
    assert build_training_set(version, **kw)["rows"] == 12
    with pytest.raises(FeatureStoreError, match="no rows in the training window"):
        build_training_set(version, **kw, entity_start="2026-11-05")
    with pytest.raises(FeatureStoreError, match=r"lacks the columns ModelSpec names \(\{'features': \['x9'\]\}\)"):
        build_training_set(version, **{**kw, "features": ["x9"]})


def test_an_empty_dataset_folder_names_the_uri(root):
    empty = {"repo": None, "rev": "local:0", "path": storage.join(root, "datasets", "none")}
    with pytest.raises(FeatureStoreError, match="holds no Parquet file"):
        build_training_set(empty, model_name="m", output_dir=root, features=["x1"], label="y",
                           entity_columns=["account_id"], timestamp_column="event_timestamp", task_type="regression")
