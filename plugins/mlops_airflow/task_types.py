"""Task types: what a model predicts decides its metrics, its statistical tests and its thresholds.

Two task types: ``binary_classification`` (the default everywhere: a model that predicts P(label == 1)) and
``regression`` (a model that predicts a number). No Airflow import; numpy is imported inside the functions.

=====================  =========================  ==========================  ===================================
task type              holdout metrics (verdict)  training-run metrics        comparison of two models
=====================  =========================  ==========================  ===================================
binary_classification  auc, accuracy, logloss     val_auc, val_accuracy,      paired bootstrap CI + McNemar
                                                  val_logloss                 (same rows), Fisher (canary)
regression             rmse, mae, r2              val_rmse, val_mae, val_r2   paired bootstrap CI + paired t-test
                                                                              on absolute errors (same rows),
                                                                              Welch t-test (canary)
=====================  =========================  ==========================  ===================================

The primary metric of a comparison defaults to :func:`default_primary_metric` (``auc`` / ``rmse``); the metric a
quality check watches for concept drift to :func:`default_quality_metric` (``roc_auc`` / ``rmse``).
"""

from __future__ import annotations

from typing import Any

BINARY_CLASSIFICATION = "binary_classification"
REGRESSION = "regression"
TASK_TYPES = (BINARY_CLASSIFICATION, REGRESSION)
DEFAULT_TASK_TYPE = BINARY_CLASSIFICATION
ALIASES = {"classification": BINARY_CLASSIFICATION, "binary": BINARY_CLASSIFICATION}

#: The verdict keys of :func:`holdout_metrics` (the legacy spellings ``auc``/``logloss`` kept for classifiers).
HOLDOUT_METRICS = {BINARY_CLASSIFICATION: ("auc", "accuracy", "logloss"), REGRESSION: ("rmse", "mae", "r2")}
#: The metric keys a training run logs for its validation split.
TRAINING_METRICS = {
    BINARY_CLASSIFICATION: ("val_auc", "val_accuracy", "val_logloss"),
    REGRESSION: ("val_rmse", "val_mae", "val_r2"),
}
#: The metrics a quality check on delayed labels reports (canonical names, see ``mlops_airflow.stats``).
QUALITY_METRICS = {
    BINARY_CLASSIFICATION: ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}


def validate_task_type(name: str | None) -> str:
    """The task type ``name`` names (``classification``/``binary`` -> ``binary_classification``).

    :param name: a task type or an alias, case-insensitive; None/empty is the default (binary classification).
    :raises ValueError: naming the choices.
    """
    if name is None or str(name).strip() in ("", "None"):
        return DEFAULT_TASK_TYPE
    text = str(name).strip().lower()
    text = ALIASES.get(text, text)
    if text not in TASK_TYPES:
        raise ValueError(
            f"task_type={name!r} is not one of {', '.join(TASK_TYPES)} (aliases: {', '.join(sorted(ALIASES))})"
        )
    return text


def is_classification(task_type: str | None) -> bool:
    return validate_task_type(task_type) == BINARY_CLASSIFICATION


def default_primary_metric(task_type: str | None) -> str:
    """``auc`` for a classifier (the legacy verdict spelling), ``rmse`` for a regressor."""
    return "auc" if is_classification(task_type) else "rmse"


def default_quality_metric(task_type: str | None) -> str:
    """The metric whose drop means concept drift: ``roc_auc`` for a classifier, ``rmse`` for a regressor."""
    return "roc_auc" if is_classification(task_type) else "rmse"


def primary_metrics(task_type: str | None) -> tuple[str, ...]:
    """The metrics a comparison may be decided on (the verdict keys of :func:`holdout_metrics`)."""
    return HOLDOUT_METRICS[validate_task_type(task_type)]


def check_primary_metric(task_type: str | None, metric: str | None) -> str:
    """``metric`` if it belongs to the task type, else :func:`default_primary_metric` when None.

    :raises ValueError: naming the task type's metrics.
    """
    task = validate_task_type(task_type)
    if metric in (None, ""):
        return default_primary_metric(task)
    if metric not in HOLDOUT_METRICS[task]:
        raise ValueError(
            f"primary_metric={metric!r} does not fit task_type {task!r}: use one of {', '.join(HOLDOUT_METRICS[task])}"
        )
    return str(metric)


def holdout_metrics(task_type: str | None, y: Any, prediction: Any, proba: Any = None) -> dict[str, float]:
    """A model's metrics on a labelled holdout, under the verdict keys of the task type (6 digits).

    :param task_type: ``binary_classification`` or ``regression``.
    :param y: labels (0/1) or targets.
    :param prediction: predicted class (unused for a classifier: ``proba >= 0.5`` is its class) or value.
    :param proba: P(label == 1), required for a classifier.
    :returns: ``{auc, accuracy, logloss}`` or ``{rmse, mae, r2}`` (``r2`` NaN when the targets are constant).
    """
    import numpy as np

    from mlops_airflow import stats

    if is_classification(task_type):
        if proba is None:
            raise ValueError("a classifier's holdout metrics need its probabilities (the scored file's 'proba')")
        p = np.clip(np.asarray(proba, dtype=np.float64), stats.LOG_LOSS_EPS, 1 - stats.LOG_LOSS_EPS)
        return {
            "auc": round(stats.roc_auc(y, p), 6),
            "accuracy": round(stats.accuracy(y, p), 6),
            "logloss": round(stats.log_loss(y, p, stats.LOG_LOSS_EPS), 6),
        }
    return {
        "rmse": round(stats.rmse(y, prediction), 6),
        "mae": round(stats.mae(y, prediction), 6),
        "r2": round(stats.r2(y, prediction), 6),
    }


def model_scores(task_type: str | None, prediction: Any, proba: Any = None) -> Any:
    """What a metric of the task type is computed on: the probabilities of a classifier, the values of a regressor."""
    return proba if is_classification(task_type) else prediction


def absolute_errors(y: Any, prediction: Any) -> Any:
    """``|y - prediction|`` per row, as float64 (the unit of a regressor's t-tests)."""
    import numpy as np

    return np.abs(np.asarray(y, dtype=np.float64) - np.asarray(prediction, dtype=np.float64))
