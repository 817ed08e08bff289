"""Quality statistics on delayed labels, checked against scikit-learn and scipy on generated predictions."""

from __future__ import annotations

import math

import pytest
from mlops_airflow.monitoring.quality_stats import (
    QUALITY_METRICS,
    _quality_drop,
    classification_quality,
    confidence_stats,
    outcome_stats,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def scored():
    import numpy as np

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 2000)
    probas = np.clip(0.35 * labels + rng.uniform(0, 0.65, 2000), 0, 1)
    probas[:3] = [0.0, 1.0, 0.5]  # the edges log loss must survive
    predictions = (probas >= 0.5).astype(int)
    outcome = labels * rng.gamma(2.0, 30.0, 2000)  # revenue lost to the churned customers
    return labels, predictions, probas, outcome


def test_metric_names_are_the_pack_s():
    assert QUALITY_METRICS == ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


def test_classification_quality_equals_scikit_learn(scored):
    import numpy as np
    from sklearn import metrics as skm

    labels, predictions, probas, _ = scored
    quality = classification_quality(labels.tolist(), predictions.tolist(), probas.tolist())
    clipped = np.clip(probas, 1e-15, 1 - 1e-15)
    expected = {
        "accuracy": skm.accuracy_score(labels, predictions),
        "precision": skm.precision_score(labels, predictions),
        "recall": skm.recall_score(labels, predictions),
        "f1": skm.f1_score(labels, predictions),
        "roc_auc": skm.roc_auc_score(labels, probas),
        "log_loss": skm.log_loss(labels, clipped),
    }
    assert set(quality) == set(QUALITY_METRICS)
    for name, value in expected.items():
        assert quality[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        assert isinstance(quality[name], float)
    assert math.isfinite(quality["log_loss"])


def test_roc_auc_uses_the_raw_probabilities():
    from sklearn import metrics as skm

    labels, probas = [0, 1, 0, 1], [1e-18, 1e-16, 0.6, 0.9]
    assert skm.roc_auc_score(labels, probas) == 0.75
    assert classification_quality(labels, [0, 0, 1, 1], probas)["roc_auc"] == pytest.approx(0.75)


def test_without_probabilities_or_with_one_class():
    quality = classification_quality([1, 0, 1, 1], [1, 0, 0, 1], None)
    assert quality["roc_auc"] is None and quality["log_loss"] is None
    assert quality["accuracy"] == 0.75 and quality["precision"] == 1.0 and quality["recall"] == pytest.approx(2 / 3)
    one_class = classification_quality([1, 1, 1], [1, 0, 1], [0.9, 0.4, 0.8])
    assert one_class["roc_auc"] is None and one_class["log_loss"] is not None  # log loss is defined for one class
    nothing_predicted = classification_quality([1, 0], [0, 0], [0.2, 0.1])
    assert nothing_predicted["precision"] == 0.0 and nothing_predicted["f1"] == 0.0  # no warning, no NaN


def test_confidence_stats():
    stats = confidence_stats([0.5, 0.9, 0.1, 1.0, 0.0, 0.6], low_confidence_threshold=0.7)
    assert stats["mean_confidence"] == pytest.approx((0.5 + 0.9 + 0.9 + 1 + 1 + 0.6) / 6)
    h = lambda p: -(p * math.log2(p) + (1 - p) * math.log2(1 - p))  # noqa: E731
    assert stats["mean_entropy_bits"] == pytest.approx((1 + h(0.9) + h(0.9) + 0 + 0 + h(0.6)) / 6)
    assert stats["low_confidence_share"] == pytest.approx(2 / 6)
    clipped = confidence_stats([1.5, -0.5], 0.9)  # out of range: clipped to certain predictions
    assert clipped == {"mean_confidence": 1.0, "mean_entropy_bits": 0.0, "low_confidence_share": 0.0}


def test_outcome_stats_equal_scipy(scored):
    from scipy import stats

    labels, predictions, probas, outcome = scored
    out = outcome_stats(probas, predictions, outcome)
    assert out["outcome_rows"] == 2000.0 and out["outcome_total"] == pytest.approx(outcome.sum())
    assert out["outcome_correlation"] == pytest.approx(stats.pearsonr(probas, outcome)[0])
    assert out["outcome_spearman"] == pytest.approx(stats.spearmanr(probas, outcome)[0])
    assert out["outcome_mean_predicted_positive"] == pytest.approx(outcome[predictions == 1].mean())
    assert out["outcome_mean_predicted_negative"] == pytest.approx(outcome[predictions == 0].mean())
    assert out["outcome_mean_predicted_positive"] > out["outcome_mean_predicted_negative"]


def test_outcome_stats_drop_non_finite_rows_and_need_variation():
    out = outcome_stats([0.9, 0.2, 0.8, float("nan"), 0.7], [1, 0, 1, 1, 1], [10.0, 0.0, float("inf"), 5.0, 7.0])
    assert out["outcome_rows"] == 3.0 and out["outcome_total"] == 17.0
    assert out["outcome_mean_predicted_positive"] == 8.5 and out["outcome_mean_predicted_negative"] == 0.0
    assert out["outcome_correlation"] is not None
    flat = outcome_stats([0.9, 0.2, 0.8], [1, 0, 1], [5.0, 5.0, 5.0])  # no variation: no correlation
    assert flat["outcome_correlation"] is None and flat["outcome_spearman"] is None
    few = outcome_stats([0.9, 0.2], [1, 1], [1.0, 0.0])
    assert few["outcome_correlation"] is None and few["outcome_mean_predicted_negative"] is None
    empty = outcome_stats([], [], [])
    assert empty["outcome_rows"] == 0.0 and empty["outcome_total"] is None


def test_quality_drop_is_positive_when_worse_now():
    assert _quality_drop("roc_auc", 0.80, 0.70) == pytest.approx(0.10)
    assert _quality_drop("roc_auc", 0.70, 0.80) == pytest.approx(-0.10)
    assert _quality_drop("log_loss", 0.40, 0.55) == pytest.approx(0.15)  # lower is better
    assert _quality_drop("logloss", 0.40, 0.55) == pytest.approx(0.15)  # the legacy spelling too
