"""Quality on delayed labels: binary-classification metrics, confidence and business-outcome statistics.

No Airflow import (numpy, scipy and scikit-learn inside functions), so the statistics are tested alone. ROC AUC,
the metric names and their direction come from ``mlops_airflow.stats``.
"""

from __future__ import annotations

from typing import Any

from mlops_airflow import stats

QUALITY_METRICS = stats.METRIC_NAMES
_LOWER_IS_BETTER = stats.spellings(stats.LOWER_IS_BETTER)  # log_loss (and its legacy spelling logloss)


def classification_quality(labels: Any, predictions: Any, probas: Any | None) -> dict[str, float | None]:
    """Binary classification quality (positive class 1): accuracy, precision, recall, F1, ROC AUC, log loss.

    The numbers Evidently 0.7's ``ClassificationPreset`` reports (it computes them with scikit-learn, as here; ROC
    AUC with ``stats.roc_auc``, the same rank statistic). ROC AUC and log loss need probabilities; ROC AUC also
    both classes among the labels (else None).
    """
    import numpy as np
    from sklearn import metrics as skm

    y = np.asarray(labels).astype(int)
    pred = np.asarray(predictions).astype(int)
    out: dict[str, float | None] = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, pos_label=1, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, pos_label=1, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, pos_label=1, zero_division=0)),
        "roc_auc": None,
        "log_loss": None,
    }
    if probas is not None:
        raw = np.asarray(probas, dtype=float)
        p = np.clip(raw, 1e-15, 1 - 1e-15)  # for log loss only: clipping would tie tiny scores in the AUC
        if len(np.unique(y)) == 2:
            out["roc_auc"] = stats.roc_auc(y, raw)
        out["log_loss"] = float(skm.log_loss(y, p, labels=[0, 1]))
    return out


def confidence_stats(probas: Any, low_confidence_threshold: float) -> dict[str, float]:
    """Mean top-class probability, mean binary entropy (bits; 1 = a coin flip) and the share of predictions whose
    top-class probability is below ``low_confidence_threshold``."""
    import numpy as np

    p = np.clip(np.asarray(probas, dtype=float), 0.0, 1.0)
    top = np.maximum(p, 1.0 - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return {
        "mean_confidence": float(top.mean()),
        "mean_entropy_bits": float(entropy.mean()),
        "low_confidence_share": float((top < low_confidence_threshold).mean()),
    }


def outcome_stats(probas: Any, predictions: Any, outcome: Any) -> dict[str, float | None]:
    """How predictions relate to a business outcome: Pearson and Spearman correlation of the predicted probability
    with the outcome, and the outcome's mean among predicted positives and negatives."""
    import numpy as np
    from scipy import stats

    y = np.asarray(outcome, dtype=float)
    p = np.asarray(probas, dtype=float)
    pred = np.asarray(predictions).astype(int)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p, pred = y[keep], p[keep], pred[keep]
    out: dict[str, float | None] = {
        "outcome_rows": float(y.size),
        "outcome_total": float(y.sum()) if y.size else None,
        "outcome_mean_predicted_positive": float(y[pred == 1].mean()) if (pred == 1).any() else None,
        "outcome_mean_predicted_negative": float(y[pred == 0].mean()) if (pred == 0).any() else None,
        "outcome_correlation": None,
        "outcome_spearman": None,
    }
    if y.size >= 3 and np.ptp(y) > 0 and np.ptp(p) > 0:
        out["outcome_correlation"] = float(stats.pearsonr(p, y)[0])
        out["outcome_spearman"] = float(stats.spearmanr(p, y)[0])
    return out


def _quality_drop(metric: str, reference: float, current: float) -> float:
    """Positive = worse now (log loss: lower is better): how much better the reference was."""
    return stats.improvement(metric, reference, current)
