"""Quality on delayed labels: classification and regression metrics, the quality drop (concept drift),
confidence and business-outcome statistics.

No Airflow import (numpy, scipy and scikit-learn inside functions), so the statistics are tested alone. ROC AUC,
RMSE/MAE, the metric names and their direction come from ``mlops_airflow.stats``; which metrics a task type
reports from ``mlops_airflow.task_types``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlops_airflow import stats, task_types

#: A binary classifier's quality metrics (as before task types); every task type's: ``ALL_QUALITY_METRICS``.
QUALITY_METRICS = task_types.QUALITY_METRICS[task_types.BINARY_CLASSIFICATION]
ALL_QUALITY_METRICS = tuple(dict.fromkeys(m for names in task_types.QUALITY_METRICS.values() for m in names))
_LOWER_IS_BETTER = stats.spellings(stats.LOWER_IS_BETTER)  # log_loss (logloss), rmse, mae, mse
#: A regressor's concept drift: the quality metric may rise by this share of its reference when no
#: ``max_quality_drop`` is given (RMSE is in the target's units, so no absolute default fits every model).
DEFAULT_RELATIVE_RISE = 0.10
DEFAULT_CLASSIFICATION_DROP = 0.05


def quality_metrics(task_type: str | None) -> tuple[str, ...]:
    """The quality metrics of a task type (``roc_auc``, ...; ``rmse``, ``mae``, ``r2``)."""
    return task_types.QUALITY_METRICS[task_types.validate_task_type(task_type)]


def regression_quality(targets: Any, predictions: Any) -> dict[str, float | None]:
    """RMSE, MAE and R2 of ``predictions`` (the numbers of Evidently's ``RegressionPreset``); R2 None when the
    targets are constant."""
    r2 = stats.r2(targets, predictions)
    return {"rmse": stats.rmse(targets, predictions), "mae": stats.mae(targets, predictions),
            "r2": None if math.isnan(r2) else r2}


def task_quality(task_type: str, labels: Any, predictions: Any, probas: Any | None) -> dict[str, float | None]:
    """:func:`classification_quality` or :func:`regression_quality`, by task type."""
    if task_types.is_classification(task_type):
        return classification_quality(labels, predictions, probas)
    return regression_quality(labels, predictions)


def allowed_drop(task_type: str, max_quality_drop: float | None, reference: float | None) -> float | None:
    """The largest allowed quality drop: ``max_quality_drop``, else 0.05 for a classifier and 10% of the
    reference for a regressor (None without a reference)."""
    if max_quality_drop is not None:
        return float(max_quality_drop)
    if task_types.is_classification(task_type):
        return DEFAULT_CLASSIFICATION_DROP
    return None if reference is None else abs(float(reference)) * DEFAULT_RELATIVE_RISE


def reference_from_run(run_metrics: Mapping[str, Any], metrics: tuple[str, ...]) -> dict[str, float]:
    """The validation value of each quality metric in a training run's metrics: ``roc_auc`` from ``val_auc``,
    ``rmse`` from ``val_rmse``, ... (canonical names, :func:`mlops_airflow.stats.find_metric`)."""
    out: dict[str, float] = {}
    for metric in metrics:
        value = stats.find_metric(run_metrics, f"val_{metric}")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[metric] = float(value)
    return out


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


def outcome_stats(probas: Any, predictions: Any | None, outcome: Any) -> dict[str, float | None]:
    """How predictions relate to a business outcome: Pearson and Spearman correlation of the predicted probability
    (a regressor: the predicted value) with the outcome, and the outcome's mean among predicted positives and
    negatives (classifiers only: ``predictions`` None leaves them None)."""
    import numpy as np
    from scipy import stats

    y = np.asarray(outcome, dtype=float)
    p = np.asarray(probas, dtype=float)
    pred = np.asarray(predictions).astype(int) if predictions is not None else np.full(len(p), -1)
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


def floor_reasons(quality: Mapping[str, Any], min_quality: Mapping[str, float], rows: int) -> list[str]:
    """A reason per absolute floor not met (``min_quality``; a ceiling for a lower-is-better metric)."""
    reasons = []
    for name, floor in sorted(min_quality.items()):
        value = quality.get(name)
        worse = value is None or (value > floor if name in _LOWER_IS_BETTER else value < floor)
        if worse:
            bound = "<=" if name in _LOWER_IS_BETTER else ">="
            shown = "n/a" if value is None else f"{value:.3f}"
            reasons.append(f"quality below the floor: {name} {shown}, required {bound} {floor:.3f} on {rows} rows")
    return reasons
