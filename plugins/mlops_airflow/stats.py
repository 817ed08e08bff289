"""The pack's statistics in one place: metric names, ROC AUC, regression errors, paired bootstrap CI, McNemar, Fisher,
paired and Welch t-tests, thresholds.

No Airflow import (numpy and scipy are imported inside the functions), so DAG files stay cheap to parse and the
statistics are tested alone (``tests/unit/test_stats.py``, against scipy, statsmodels and scikit-learn). Errors
are ``ValueError``; the operators turn them into their own exceptions. Nothing here imports ``operators``.

Metric names
------------
One set of names, those of scikit-learn and Evidently (``METRIC_NAMES``). Stored MLflow metric and tag keys and
the keys of existing verdicts keep their legacy spelling (renaming them would break existing registries);
compare names through :func:`canonical_metric`, which maps a legacy name to its canonical one and keeps the
split prefix (``val_``, ``train_``, ``test_``: the data a number was measured on):

canonical     legacy names in use           where the legacy names are
------------  ----------------------------  ------------------------------------------------------------------
roc_auc       auc, val_auc                  evaluation/rollback verdicts and min_metrics (auc); the training
                                            run's validation metric (val_auc, include/training/train.py)
log_loss      logloss, val_logloss          evaluation verdicts and max_metrics (logloss); the training run
accuracy      val_accuracy                  the training run (verdicts already say accuracy)
precision     -                             quality checks (monitoring.quality_stats)
recall        -                             quality checks
f1            -                             quality checks
rmse          val_rmse                      regression verdicts, quality checks and max_metrics; the training run
mae           val_mae                       regression verdicts, quality checks; the training run
mse           val_mse                       thresholds
r2            val_r2                        regression verdicts; the training run

``canonical_metric("auc") == "roc_auc"``, ``canonical_metric("val_logloss") == "val_log_loss"``; any other name
is returned unchanged. ``log_loss``, ``rmse``, ``mae`` and ``mse`` are lower-is-better (:func:`lower_is_better`).
Which metrics a task type reports is in :mod:`mlops_airflow.task_types`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CLASSIFICATION_METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRIC_NAMES = ("rmse", "mae", "mse", "r2")
METRIC_NAMES = CLASSIFICATION_METRIC_NAMES + REGRESSION_METRIC_NAMES
LEGACY_METRIC_NAMES = {"auc": "roc_auc", "logloss": "log_loss"}
SPLIT_PREFIXES = ("val_", "train_", "test_")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mse"})
LOG_LOSS_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before the log loss

_CANONICAL = {**{name: name for name in METRIC_NAMES}, **LEGACY_METRIC_NAMES}


# --------------------------------------------------------------------------------------- metric names
def canonical_metric(name: str) -> str:
    """The canonical spelling of a metric name: ``auc`` -> ``roc_auc``, ``val_logloss`` -> ``val_log_loss``.

    The split prefix stays (``val_auc`` -> ``val_roc_auc``): a validation AUC is not a holdout AUC. Names that
    are not metrics of :data:`METRIC_NAMES` (``train_loss``, ``drift_share``...) are returned unchanged.
    """
    if name in _CANONICAL:
        return _CANONICAL[name]
    for prefix in SPLIT_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in _CANONICAL:
            return prefix + _CANONICAL[name[len(prefix) :]]
    return name


def base_metric(name: str) -> str:
    """What is measured, without the split: ``val_auc`` -> ``roc_auc``."""
    canonical = canonical_metric(name)
    for prefix in SPLIT_PREFIXES:
        if canonical.startswith(prefix) and canonical[len(prefix) :] in METRIC_NAMES:
            return canonical[len(prefix) :]
    return canonical


def lower_is_better(name: str) -> bool:
    return base_metric(name) in LOWER_IS_BETTER


def spellings(canonical: frozenset[str] | set[str]) -> frozenset[str]:
    """Every name (canonical and legacy, without split prefix) whose canonical name is in ``canonical``."""
    return frozenset(name for name, target in _CANONICAL.items() if target in canonical)


def improvement(name: str, new: float, old: float) -> float:
    """Positive = ``new`` is better than ``old`` (sign-aware: ``old - new`` for a lower-is-better metric)."""
    return old - new if lower_is_better(name) else new - old


def find_metric(metrics: Mapping[str, Any], name: str) -> Any:
    """``metrics[name]``, else the one value whose key has the same canonical name (``auc`` finds ``roc_auc``)."""
    if name in metrics:
        return metrics[name]
    wanted = canonical_metric(name)
    matches = [key for key in metrics if canonical_metric(key) == wanted]
    return metrics[matches[0]] if len(matches) == 1 else None


# ------------------------------------------------------------------------------------------- metrics
def _binary_labels(y: Any, score: Any) -> tuple[Any, Any]:
    import numpy as np

    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-d arrays of the same length, got {y.shape} and {score.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"binary labels must be 0/1, got values {sorted(set(np.unique(y).tolist()))[:10]}")
    return y.astype(np.int64), score


def roc_auc(y: Any, score: Any) -> float:
    """Area under the ROC curve: the Mann-Whitney U of the positives' scores over ``n_pos * n_neg``.

    Ties get average ranks (``scipy.stats.rankdata``), so a tie counts one half, as in scikit-learn's
    ``roc_auc_score``. NaN with one class only (or no rows).
    """
    from scipy.stats import rankdata

    y, score = _binary_labels(y, score)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score, method="average")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(y: Any, proba: Any, threshold: float = 0.5) -> float:
    """Share of rows where ``proba >= threshold`` matches the 0/1 label."""
    import numpy as np

    y, proba = _binary_labels(y, proba)
    return float(((proba >= threshold).astype(np.int64) == y).mean())


def log_loss(y: Any, proba: Any, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[eps, 1 - eps]``."""
    import numpy as np

    y, proba = _binary_labels(y, proba)
    q = np.clip(proba, eps, 1 - eps)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())


def _targets(y: Any, prediction: Any) -> tuple[Any, Any]:
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if y.shape != prediction.shape or y.ndim != 1:
        raise ValueError(
            f"targets and predictions must be 1-d arrays of the same length, got {y.shape} and {prediction.shape}"
        )
    if not (np.isfinite(y).all() and np.isfinite(prediction).all()):
        raise ValueError("targets and predictions must be finite numbers (no NaN/inf): drop or fix those rows")
    return y, prediction


def mse(y: Any, prediction: Any) -> float:
    """Mean squared error of ``prediction`` for targets ``y`` (NaN with no rows)."""
    import numpy as np

    y, prediction = _targets(y, prediction)
    return float(np.mean((y - prediction) ** 2)) if y.size else float("nan")


def rmse(y: Any, prediction: Any) -> float:
    """Root mean squared error (scikit-learn's ``root_mean_squared_error``)."""
    return math.sqrt(mse(y, prediction))  # NaN stays NaN


def mae(y: Any, prediction: Any) -> float:
    """Mean absolute error (NaN with no rows)."""
    import numpy as np

    y, prediction = _targets(y, prediction)
    return float(np.mean(np.abs(y - prediction))) if y.size else float("nan")


def r2(y: Any, prediction: Any) -> float:
    """Coefficient of determination, ``1 - SS_res / SS_tot``; NaN when the targets are constant (or no rows)."""
    import numpy as np

    y, prediction = _targets(y, prediction)
    total = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - prediction) ** 2)) / total


_METRIC_FUNCTIONS = {"roc_auc": roc_auc, "accuracy": accuracy, "log_loss": log_loss, "rmse": rmse, "mae": mae,
                     "mse": mse, "r2": r2}


def is_regression_metric(name: str) -> bool:
    """True for a metric of predicted values (``rmse``, ``mae``, ``mse``, ``r2``), False for one of probabilities."""
    return base_metric(name) in REGRESSION_METRIC_NAMES


def _metric_function(name: str) -> Any:
    function = _METRIC_FUNCTIONS.get(base_metric(name))
    if function is None:
        raise ValueError(
            f"unknown metric {name!r}; use auc (roc_auc), accuracy or logloss (log_loss) for a classifier, rmse, "
            "mae, mse or r2 for a regressor"
        )
    return function


def metric_value(name: str, y: Any, proba: Any) -> float:
    """``name`` of ``proba``: probabilities for ``roc_auc`` (``auc``), ``accuracy``, ``log_loss`` (``logloss``),
    predicted values for ``rmse``, ``mae``, ``mse``, ``r2``."""
    return _metric_function(name)(y, proba)


# ----------------------------------------------------------------------------------------- bootstrap
def paired_bootstrap(
    y: Any, p_new: Any, p_old: Any, *, metric: str = "roc_auc", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Paired bootstrap of ``improvement(metric, new, old)``: both models are scored on the *same* resampled rows.

    ``p_new``/``p_old`` are probabilities for a classification metric, predicted values for a regression one
    (``rmse``: the improvement is ``rmse(old) - rmse(new)``, positive = ``new`` is better).

    Returns ``{delta, ci, p_not_better, n_boot, seed, alpha}``: the point estimate on all rows, the percentile CI
    ``[alpha/2, 1 - alpha/2]`` of the resampled improvements and the share of resamples where ``new`` was not
    better. Resamples where the metric is undefined (one class only, for ROC AUC) are left out; when none is
    left, ``ci`` and ``p_not_better`` are None (and ``alpha`` absent).
    """
    import numpy as np

    _metric_function(metric)  # an unknown metric fails before any resampling
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    y = np.asarray(y, dtype=np.float64 if is_regression_metric(metric) else np.int64)
    a = np.asarray(p_new, dtype=np.float64)
    b = np.asarray(p_old, dtype=np.float64)
    if not (len(y) == len(a) == len(b)) or len(y) == 0:
        raise ValueError(
            f"paired bootstrap needs the same non-zero number of labels and scores, got {len(y)}, {len(a)}, {len(b)}"
        )
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = np.empty(n_boot, dtype=np.float64)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        yi = y[idx]
        deltas[i] = improvement(metric, metric_value(metric, yi, a[idx]), metric_value(metric, yi, b[idx]))
    deltas = deltas[np.isfinite(deltas)]
    point = improvement(metric, metric_value(metric, y, a), metric_value(metric, y, b))
    if len(deltas) == 0:
        return {"delta": point, "ci": [None, None], "p_not_better": None, "n_boot": n_boot, "seed": seed}
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return {
        "delta": round(float(point), 6),
        "ci": [round(float(lo), 6), round(float(hi), 6)],
        "p_not_better": round(float((deltas <= 0).mean()), 6),
        "n_boot": n_boot,
        "seed": seed,
        "alpha": alpha,
    }


# ------------------------------------------------------------------------------------- exact tests
def mcnemar(errors_a: Any, errors_b: Any) -> dict[str, Any]:
    """McNemar's exact test on paired classification errors (True = that model got the row wrong).

    Only the discordant rows count: ``only_a_wrong`` (a wrong, b right) and ``only_b_wrong``. Under H0 they
    split 50/50, so the two-sided p-value is the exact binomial test of ``min(only_a, only_b)`` of their sum
    (``scipy.stats.binomtest``; the same p as statsmodels' ``mcnemar(exact=True)``), exact at every count.
    No discordant row: p = 1. Returns ``{only_a_wrong, only_b_wrong, p_value}``.
    """
    import numpy as np
    from scipy.stats import binomtest

    a, b = np.asarray(errors_a, dtype=bool), np.asarray(errors_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs paired errors of the same shape, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return {"only_a_wrong": only_a, "only_b_wrong": only_b, "p_value": p}


def fisher_exact(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alternative: str = "two-sided"
) -> dict[str, Any]:
    """Fisher's exact test of two success rates on *different* rows (``scipy.stats.fisher_exact``).

    The 2x2 table is (success, failure) x (a, b). Returns ``{table, p_value}``.
    """
    from scipy.stats import fisher_exact as _fisher_exact

    for successes, n in ((successes_a, n_a), (successes_b, n_b)):
        if not 0 <= successes <= n:
            raise ValueError(f"Fisher's exact test needs 0 <= successes <= rows, got {successes} of {n}")
    table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
    _, p = _fisher_exact(table, alternative=alternative)
    return {"table": table, "p_value": float(p)}


def _t_result(statistic: float, p_value: float) -> tuple[float, float]:
    """No variance at all (e.g. identical errors) gives NaN in scipy: no evidence of a difference, p = 1."""
    if math.isnan(p_value):
        return 0.0, 1.0
    return float(statistic), float(p_value)


def paired_t(errors_a: Any, errors_b: Any) -> dict[str, Any]:
    """Paired t-test (``scipy.stats.ttest_rel``, two-sided) of two models' absolute errors on the *same* rows.

    ``statistic`` > 0: ``a`` errs more than ``b``. Returns ``{statistic, p_value, mean_a, mean_b,
    mean_difference, n}`` (``mean_difference`` = mean of ``a - b``). Identical errors: statistic 0, p = 1.
    """
    import numpy as np
    from scipy.stats import ttest_rel

    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"a paired t-test needs two 1-d arrays of the same length >= 2, got {a.shape} and {b.shape}")
    diff = a - b
    if not np.any(diff != diff[0]):  # constant difference: the t statistic is undefined (0 or infinite)
        statistic, p = (0.0, 1.0) if diff[0] == 0 else (math.copysign(math.inf, diff[0]), 0.0)
    else:
        result = ttest_rel(a, b)
        statistic, p = _t_result(result.statistic, result.pvalue)
    return {"statistic": statistic, "p_value": p, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "mean_difference": float(diff.mean()), "n": int(a.size)}


def welch_t(errors_a: Any, errors_b: Any) -> dict[str, Any]:
    """Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``, two-sided) of absolute errors on *different*
    rows (a canary's against the champion's). ``statistic`` > 0: ``a`` errs more. Returns ``{statistic, p_value,
    mean_a, mean_b, n_a, n_b}``; no variance on either side: statistic 0, p = 1.
    """
    import numpy as np
    from scipy.stats import ttest_ind

    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.size < 2 or b.size < 2:
        raise ValueError(f"Welch's t-test needs two 1-d arrays of at least 2 values each, got {a.shape} and {b.shape}")
    result = ttest_ind(a, b, equal_var=False)
    statistic, p = _t_result(result.statistic, result.pvalue)
    return {"statistic": statistic, "p_value": p, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "n_a": int(a.size), "n_b": int(b.size)}


# ---------------------------------------------------------------------------------------- thresholds
NO_THRESHOLDS = "no absolute thresholds configured (min_metrics/max_metrics): never promoted without them"
MISSING_METRIC = "metric {name} is not available (known: {known})"


def check_thresholds(
    metrics: Mapping[str, Any],
    min_metrics: Mapping[str, Any] | None = None,
    max_metrics: Mapping[str, Any] | None = None,
    *,
    unconfigured: str = NO_THRESHOLDS,
    missing: str = MISSING_METRIC,
) -> tuple[bool, list[str]]:
    """Absolute thresholds: every ``min_metrics`` value reached (>=), no ``max_metrics`` value exceeded (<=).

    None/empty thresholds never pass (the safe default; ``unconfigured`` is the reason). A metric is looked up by
    name, else by canonical name (:func:`find_metric`); a missing or NaN metric fails (``missing`` is formatted
    with ``name`` and ``known``). Thresholds may be strings (templated): they are read as floats.
    """
    if not min_metrics and not max_metrics:
        return False, [unconfigured]
    reasons = []
    bounds = [(name, float(limit), False) for name, limit in sorted((min_metrics or {}).items())]
    bounds += [(name, float(limit), True) for name, limit in sorted((max_metrics or {}).items())]
    for name, limit, is_max in bounds:
        value = find_metric(metrics, name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            reasons.append(missing.format(name=name, known=sorted(metrics)))
        elif is_max and value > limit:
            reasons.append(f"{name}={value:.4f} > maximum {limit}")
        elif not is_max and value < limit:
            reasons.append(f"{name}={value:.4f} < minimum {limit}")
    return not reasons, reasons
