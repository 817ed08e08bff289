"""mlops_airflow.task_types: names, defaults and holdout metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from mlops_airflow import task_types

pytestmark = pytest.mark.unit


def test_names_aliases_and_defaults():
    assert task_types.TASK_TYPES == ("binary_classification", "regression")
    assert task_types.validate_task_type(None) == "binary_classification"
    assert task_types.validate_task_type("Classification") == task_types.validate_task_type("binary")
    assert task_types.validate_task_type("regression") == "regression"
    with pytest.raises(ValueError, match="binary_classification, regression"):
        task_types.validate_task_type("multiclass")
    assert task_types.default_primary_metric("binary_classification") == "auc"
    assert task_types.default_primary_metric("regression") == "rmse"
    assert task_types.default_quality_metric("regression") == "rmse"
    assert task_types.check_primary_metric("regression", None) == "rmse"
    with pytest.raises(ValueError, match="does not fit task_type 'regression'"):
        task_types.check_primary_metric("regression", "auc")


def test_holdout_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.normal(150, 60, 400)
    pred = y + rng.normal(0, 40, 400)
    got = task_types.holdout_metrics("regression", y, pred)
    assert set(got) == {"rmse", "mae", "r2"}
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), abs=1e-6)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-6)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-6)

    labels = rng.integers(0, 2, 400)
    proba = np.clip(labels * 0.4 + rng.random(400) * 0.6, 0, 1)
    cls = task_types.holdout_metrics("binary_classification", labels, (proba >= 0.5).astype(int), proba)
    assert set(cls) == {"auc", "accuracy", "logloss"}
    assert cls["auc"] == pytest.approx(skm.roc_auc_score(labels, proba), abs=1e-6)
    with pytest.raises(ValueError, match="need its probabilities"):
        task_types.holdout_metrics("binary_classification", labels, labels)
    assert task_types.absolute_errors([1.0, 2.0], [3.0, 1.5]).tolist() == [2.0, 0.5]
