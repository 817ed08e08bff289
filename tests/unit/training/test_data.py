"""The training side's table reader/writer: one code path for a local path, ``file://`` and ``s3://`` (moto)."""

from __future__ import annotations

import json

import pytest
from mlops_airflow.training import TrainingInputError, context
from mlops_airflow.training.data import DataAccessError, read_table, uri_scheme, write_table

pytestmark = pytest.mark.unit


def store_env(store, **override: str) -> dict[str, str]:
    """What a training operator puts into the job's environment for the store (boto3's names)."""
    return {"AWS_ENDPOINT_URL": store.endpoint, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", **override}


def frame():
    import pandas as pd

    return pd.DataFrame({"id": [1, 2, 3], "a": [0.1, 0.2, 0.3], "y": [0, 1, 0]})


def test_schemes():
    assert [uri_scheme(u) for u in ("/x.parquet", "x.parquet", "file:///x", "s3://b/k", "gs://b/k")] == [
        "file", "file", "file", "s3", "gs"]


@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_local_round_trip(tmp_path, form):
    path = tmp_path / "sub" / "t.parquet"
    uri = str(path) if form == "path" else path.as_uri()
    assert write_table(frame(), uri) == str(path)
    assert read_table(uri).equals(frame()) and not list(path.parent.glob("*.tmp-*"))


def test_s3_round_trip_with_the_settings_of_the_environment_given(s3_store):
    uri = f"{s3_store.root}/training_sets/t.parquet"
    env = store_env(s3_store)
    assert write_table(frame(), uri, env) == uri
    assert s3_store.keys("training_sets/") == ["training_sets/t.parquet"]
    assert read_table(uri, env).equals(frame())
    # an Airflow connection id in the authority (ObjectStoragePath's form) names the same object
    assert read_table(f"s3://{s3_store.conn_id}@{s3_store.bucket}/training_sets/t.parquet", env).equals(frame())


def test_errors_name_the_uri_and_whether_a_retry_helps(s3_store, tmp_path):
    env = store_env(s3_store)
    with pytest.raises(DataAccessError, match=r"training set not found: s3://.*/none.parquet") as missing:
        read_table(f"{s3_store.root}/none.parquet", env, what="training set")
    assert not missing.value.retryable
    s3_store.client().put_object(Bucket=s3_store.bucket, Key="bad.parquet", Body=b"not parquet")
    with pytest.raises(DataAccessError, match=r"cannot read table s3://.*/bad.parquet as Parquet") as bad:
        read_table(f"{s3_store.root}/bad.parquet", env)
    assert not bad.value.retryable
    down = store_env(s3_store, AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DataAccessError, match=r"cannot open table s3://.*AWS_ENDPOINT_URL") as unreachable:
        read_table(f"{s3_store.root}/x.parquet", down)
    assert unreachable.value.retryable and "testing" not in str(unreachable.value)


def test_the_context_reads_an_s3_training_set_with_the_contract_env(s3_store):
    uri = f"{s3_store.root}/ts.parquet"
    write_table(frame(), uri, store_env(s3_store))
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_EXPERIMENT_NAME": "e", "MLOPS_TRAINING_SET_URI": uri,
           "MLOPS_TRAINING_CONFIG": json.dumps({"features": ["a"], "label": "y", "entity_columns": ["id"]}),
           **store_env(s3_store)}
    assert len(context(env).load_training_set()) == 3
    with pytest.raises(TrainingInputError, match=r"training set not found: s3://.*/nope.parquet"):
        context({**env, "MLOPS_TRAINING_SET_URI": f"{s3_store.root}/nope.parquet"}).load_training_set()
