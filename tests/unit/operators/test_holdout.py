"""The holdout evaluation's helpers (``operators/_holdout.py``): scores location, scored-holdout reader, outcome."""

from __future__ import annotations

import pandas as pd
import pytest
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators import evaluation
from mlops_airflow.operators._holdout import outcome_of, read_scored, scores_dir, version_of

pytestmark = pytest.mark.unit


def test_scores_dir_is_a_uri_under_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", "s3://bucket/prefix")
    assert scores_dir() == "s3://bucket/prefix/scores"
    assert scores_dir("s3://other/scores") == "s3://other/scores"
    assert scores_dir(str(tmp_path)) == tmp_path.as_uri()  # a local path becomes its file:// URI
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", tmp_path.as_uri())
    assert scores_dir() == f"{tmp_path.as_uri()}/scores"


def test_outcome_and_version_of():
    assert (outcome_of(True), outcome_of(False), outcome_of(False, True)) == (
        "promotable", "refused", "already-champion")
    assert version_of({"version": "3", "run_id": "r"}) == version_of('{"version": "3"}') == version_of(3) == "3"
    assert version_of(None) is None and version_of("") is None


def test_the_names_stay_importable_from_evaluation():
    for name in ("read_scored", "resolve_task", "scores_dir", "tag_evaluation", "model_cache_key", "task_metrics"):
        assert getattr(evaluation, name) is not None


@pytest.mark.parametrize("where", ["file", "s3"])
def test_read_scored_reads_a_uri_or_a_path(where, tmp_path, request):
    from mlops_airflow import storage

    frame = pd.DataFrame({"y": [0, 1, 1], "proba": [0.2, 0.7, 0.9], "target": [1.5, 2.0, 3.0],
                          "prediction": [1.4, 2.2, 2.9]})
    if where == "s3":
        store = request.getfixturevalue("s3_store")
        uri = storage.write_table(f"{store.root}/scores/m-v1/abc.parquet", frame)
        assert store.keys("scores/") == ["scores/m-v1/abc.parquet"]
    else:
        uri = str(tmp_path / "abc.parquet")
        frame.to_parquet(uri)
    y, proba = read_scored(uri, "y")
    assert y.tolist() == [0, 1, 1] and proba.tolist() == [0.2, 0.7, 0.9]
    target, prediction = read_scored(uri, "target", "regression")
    assert prediction.tolist() == [1.4, 2.2, 2.9] and target.dtype.kind == "f"
    with pytest.raises(RegistryError, match="no label column 'label'"):
        read_scored(uri, "label")
    with pytest.raises(RegistryError, match=r"holds \[1.5, 2.0, 3.0\], not 0/1"):
        read_scored(uri, "target")
