"""ModelSpec: validation at construction, naming the field; derived thresholds; load_spec."""

from __future__ import annotations

import pytest
from mlops_airflow.pipeline.spec import ModelSpec, SpecError, load_spec, source_kind

BASE = {"name": "m", "label": "y", "entity_columns": ["id"], "source": "pkg.mod:batch", "features": ["a", "b"]}


def spec(**kw):
    return ModelSpec(**{**BASE, **kw})


@pytest.mark.unit
def test_defaults_and_derived_values():
    s = spec(min_metrics={"auc": 0.7, "val_accuracy": 0.6}, max_metrics={"logloss": 0.8})
    assert s.task_type == "binary_classification" and s.primary == "auc" and s.experiment == "m"
    assert s.entity_columns == ("id",) and s.features == ("a", "b") and s.keys == ["id", "event_timestamp"]
    assert s.training_thresholds() == ({"val_auc": 0.7, "val_accuracy": 0.6}, {"val_logloss": 0.8})
    assert s.holdout_thresholds() == ({"auc": 0.7}, {"logloss": 0.8})
    assert not s.uses_feast and not s.uses_dvc
    r = spec(task_type="regression", max_metrics={"rmse": 70}, dataset_path="data/x")
    assert r.primary == "rmse" and r.uses_dvc and r.training_thresholds() == ({}, {"val_rmse": 70})
    assert spec(min_metrics={"auc": "{{ params.min_auc }}"}).holdout_thresholds()[0] == {"auc": "{{ params.min_auc }}"}


@pytest.mark.unit
@pytest.mark.parametrize(("kw", "field"), [
    ({"name": "bad name!"}, "ModelSpec.name"),
    ({"task_type": "ranking"}, "task_type"),
    ({"label": ""}, "ModelSpec.label"),
    ({"label": "id"}, "ModelSpec.label"),
    ({"entity_columns": []}, "ModelSpec.entity_columns"),
    ({"source": "no_function_here"}, "ModelSpec.source"),
    ({"source": 42}, "ModelSpec.source"),
    ({"holdout": "x:y:"}, "ModelSpec.holdout"),
    ({"features": None}, "needs features"),
    ({"feature_service": "svc"}, "both features and feature_service"),
    ({"features": ["a", "y"]}, "ModelSpec.features"),
    ({"features": ["a", "a"]}, "ModelSpec.features"),
    ({"min_metrics": {"aucc": 0.7}}, "ModelSpec.min_metrics key 'aucc'"),
    ({"task_type": "regression", "max_metrics": {"auc": 0.7}}, "ModelSpec.max_metrics key 'auc'"),
    ({"min_metrics": {"auc": "high"}}, "ModelSpec.min_metrics['auc']"),
    ({"primary_metric": "rmse"}, "ModelSpec.primary_metric"),
    ({"min_improvement": -1}, "ModelSpec.min_improvement"),
    ({"monitored_columns": ["a", "y"]}, "ModelSpec.monitored_columns"),
    ({"approval_policy": "yes"}, "ModelSpec.approval_policy"),
    ({"canary_share": 1.5}, "ModelSpec.canary_share"),
    ({"drift_share_threshold": 0}, "ModelSpec.drift_share_threshold"),
    ({"drift_share_threshold": 1.5}, "ModelSpec.drift_share_threshold"),
    ({"drift_share_threshold": "half"}, "ModelSpec.drift_share_threshold"),
])
def test_invalid_fields_fail_naming_the_field(kw, field):
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        spec(**kw)


@pytest.mark.unit
def test_feast_spec_and_source_kinds():
    s = spec(features=None, feature_service="svc_v1", feast_conn_id="feast_x")
    assert s.uses_feast and s.features is None
    with pytest.raises(SpecError, match="feature_service"):
        spec(feast_repo="repo")
    assert source_kind("include/data.py:daily") == "ref" and source_kind("pkg.mod:fn") == "ref"
    assert source_kind("s3://b/{ds}.parquet") == "uri" and source_kind("/data/{ds}.csv") == "uri"
    assert source_kind(lambda day: None) == "callable"


@pytest.mark.unit
def test_spec_is_frozen():
    s = spec()
    with pytest.raises(AttributeError):
        s.name = "other"


@pytest.mark.unit
def test_load_spec(tmp_path):
    f = tmp_path / "specs.py"
    f.write_text("from mlops_airflow.pipeline import ModelSpec\n"
                 f"MINE = ModelSpec(**{BASE!r})\n")
    assert load_spec(f, "MINE").name == "m"
    with pytest.raises(SpecError, match=r"no ModelSpec named 'OTHER'; it defines \['MINE'\]"):
        load_spec(f, "OTHER")
