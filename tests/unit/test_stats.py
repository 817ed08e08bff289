"""mlops_airflow.stats against the references: scikit-learn, scipy, statsmodels, and the implementations it replaced.

The "legacy" functions below are verbatim copies of what operators/evaluation.py and operators/scoring.py held
before the statistics moved to one module: the callers' outputs must not change (same keys, same numbers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mlops_airflow import stats

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------- the replaced implementations
def legacy_roc_auc(y, p):
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def legacy_evaluation_mcnemar(y, pred_challenger, pred_champion):
    from scipy.stats import binomtest

    y = np.asarray(y, dtype=np.int64)
    chal_ok = np.asarray(pred_challenger) == y
    champ_ok = np.asarray(pred_champion) == y
    b = int((champ_ok & ~chal_ok).sum())
    c = int((~champ_ok & chal_ok).sum())
    n = b + c
    p = 1.0 if n == 0 else float(binomtest(min(b, c), n, 0.5).pvalue)
    return {"b_champion_only_correct": b, "c_challenger_only_correct": c, "p_value": float(f"{p:.6g}")}


def legacy_scoring_mcnemar(errors_a, errors_b):
    from scipy.stats import binomtest

    a, b = np.asarray(errors_a, bool), np.asarray(errors_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)
    return {"only_a_wrong": only_a, "only_b_wrong": only_b, "p_value": p}


def legacy_metric(name, y, p):
    if name == "auc":
        return legacy_roc_auc(y, p)
    if name == "accuracy":
        return float(((p >= 0.5).astype(np.int64) == y).mean())
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())


def legacy_paired_bootstrap(y, a, b, *, metric="auc", n_boot=1000, seed=0, alpha=0.05):
    def improvement(challenger, champion):
        return champion - challenger if metric == "logloss" else challenger - champion

    y, a, b = np.asarray(y, dtype=np.int64), np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = np.empty(n_boot, dtype=np.float64)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        deltas[i] = improvement(legacy_metric(metric, y[idx], a[idx]), legacy_metric(metric, y[idx], b[idx]))
    deltas = deltas[np.isfinite(deltas)]
    point = improvement(legacy_metric(metric, y, a), legacy_metric(metric, y, b))
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


def scores(seed: int, n: int, ties: bool):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.random(n) * 0.6 + y * 0.3, 0, 1)
    return y, (np.round(p, 1) if ties else p)


# --------------------------------------------------------------------------------------- metric names
@pytest.mark.parametrize(
    ("name", "canonical", "base"),
    [
        ("auc", "roc_auc", "roc_auc"),
        ("roc_auc", "roc_auc", "roc_auc"),
        ("val_auc", "val_roc_auc", "roc_auc"),
        ("logloss", "log_loss", "log_loss"),
        ("val_logloss", "val_log_loss", "log_loss"),
        ("accuracy", "accuracy", "accuracy"),
        ("val_accuracy", "val_accuracy", "accuracy"),
        ("f1", "f1", "f1"),
        ("train_loss", "train_loss", "train_loss"),
        ("val_positive_rate", "val_positive_rate", "val_positive_rate"),
        ("drift_share", "drift_share", "drift_share"),
    ],
)
def test_canonical_metric_names(name, canonical, base):
    assert stats.canonical_metric(name) == canonical
    assert stats.base_metric(name) == base
    assert stats.lower_is_better(name) is (base == "log_loss")


def test_improvement_and_lookup_by_canonical_name():
    assert stats.improvement("auc", 0.8, 0.7) == pytest.approx(0.1)
    assert stats.improvement("logloss", 0.3, 0.5) == pytest.approx(0.2)
    assert stats.improvement("val_log_loss", 0.5, 0.3) == pytest.approx(-0.2)
    assert stats.spellings(stats.LOWER_IS_BETTER) == {"log_loss", "logloss", "rmse", "mae", "mse"}
    metrics = {"auc": 0.8, "val_auc": 0.9, "logloss": 0.4}
    assert stats.find_metric(metrics, "roc_auc") == 0.8  # not the validation AUC
    assert stats.find_metric(metrics, "val_roc_auc") == 0.9
    assert stats.find_metric(metrics, "log_loss") == 0.4
    assert stats.find_metric(metrics, "accuracy") is None
    assert stats.find_metric({"auc": 0.1, "roc_auc": 0.2}, "roc_auc") == 0.2  # the exact key first


# -------------------------------------------------------------------------------------------- ROC AUC
@pytest.mark.parametrize(("seed", "n", "ties"), [(0, 50, False), (1, 500, True), (2, 5000, True), (3, 7, False)])
def test_roc_auc_matches_sklearn_scipy_and_the_replaced_implementation(seed, n, ties):
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    y, p = scores(seed, n, ties)
    if len(set(y.tolist())) < 2:
        pytest.skip("one class drawn")
    auc = stats.roc_auc(y, p)
    assert auc == legacy_roc_auc(y, p)  # identical, not merely close: the evaluation verdicts do not move
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    u = mannwhitneyu(p[y == 1], p[y == 0], method="asymptotic").statistic
    assert auc == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


def test_roc_auc_edge_cases():
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 1, 0, 1, 1, 0])
    assert stats.roc_auc(y, np.full(6, 0.3)) == 0.5 == roc_auc_score(y, np.full(6, 0.3))  # all ties
    assert stats.roc_auc(y, y.astype(float)) == 1.0
    assert stats.roc_auc(y, 1.0 - y) == 0.0
    assert math.isnan(stats.roc_auc(np.ones(5), np.linspace(0, 1, 5)))  # one class only
    assert math.isnan(stats.roc_auc(np.zeros(5, dtype=int), np.linspace(0, 1, 5)))
    assert math.isnan(stats.roc_auc([], []))
    assert stats.roc_auc([True, False, True], [0.9, 0.1, 0.8]) == 1.0
    with pytest.raises(ValueError, match="binary labels must be 0/1"):
        stats.roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        stats.roc_auc([0, 1], [0.1, 0.2, 0.3])


def test_accuracy_and_log_loss_match_sklearn():
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import log_loss as sk_log_loss

    y, p = scores(4, 1000, ties=False)
    assert stats.accuracy(y, p) == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-15)
    assert stats.accuracy(y, p, threshold=0.7) == pytest.approx(accuracy_score(y, p >= 0.7), abs=1e-15)
    clipped = np.clip(p, stats.LOG_LOSS_EPS, 1 - stats.LOG_LOSS_EPS)
    assert stats.log_loss(y, p) == pytest.approx(sk_log_loss(y, clipped, labels=[0, 1]), rel=1e-12)
    assert stats.log_loss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-7))  # clipped, finite
    for name in ("auc", "roc_auc", "accuracy", "logloss", "log_loss"):
        assert stats.metric_value(name, y, p) == legacy_metric(
            {"roc_auc": "auc", "log_loss": "logloss"}.get(name, name), y, p
        )
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        stats.metric_value("f1", y, p)


# ------------------------------------------------------------------------------------------ bootstrap
@pytest.mark.parametrize(
    ("metric", "legacy"),
    [("auc", "auc"), ("roc_auc", "auc"), ("logloss", "logloss"), ("log_loss", "logloss"), ("accuracy", "accuracy")],
)
def test_paired_bootstrap_matches_the_replaced_implementation(metric, legacy):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good, bad = np.clip(y * 0.5 + rng.random(300) * 0.5, 0, 1), rng.random(300)
    result = stats.paired_bootstrap(y, good, bad, metric=metric, n_boot=150, seed=3)
    assert result == legacy_paired_bootstrap(y, good, bad, metric=legacy, n_boot=150, seed=3)
    assert result["ci"][0] > 0 and result["delta"] > 0 and result["p_not_better"] == 0.0
    assert result["delta"] == round(
        stats.improvement(metric, stats.metric_value(metric, y, good), stats.metric_value(metric, y, bad)), 6
    )


def test_paired_bootstrap_edge_cases():
    y = np.array([1, 1, 1, 1])  # one class only: every resample's AUC is undefined
    one_class = stats.paired_bootstrap(y, np.full(4, 0.9), np.full(4, 0.2), n_boot=20)
    assert one_class["ci"] == [None, None] and one_class["p_not_better"] is None and math.isnan(one_class["delta"])
    same = stats.paired_bootstrap(
        [0, 1, 0, 1], [0.2, 0.8, 0.3, 0.6], [0.2, 0.8, 0.3, 0.6], metric="log_loss", n_boot=30
    )
    assert same["delta"] == 0 and same["ci"] == [0.0, 0.0] and same["p_not_better"] == 1.0
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        stats.paired_bootstrap([0, 1], [0.1, 0.9], [0.2, 0.8], metric="f1")
    with pytest.raises(ValueError, match="same non-zero number"):
        stats.paired_bootstrap([0, 1], [0.1, 0.9], [0.2], n_boot=5)
    with pytest.raises(ValueError, match="alpha"):
        stats.paired_bootstrap([0, 1], [0.1, 0.9], [0.2, 0.8], alpha=1.5)


# ------------------------------------------------------------------------------------------- McNemar
@pytest.mark.parametrize(("seed", "n", "share"), [(0, 30, 0.3), (1, 200, 0.1), (2, 2000, 0.02), (3, 5000, 0.4)])
def test_mcnemar_matches_statsmodels_and_both_replaced_implementations(seed, n, share):
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    rng = np.random.default_rng(seed)
    err_a = rng.random(n) < share
    err_b = rng.random(n) < share * 1.5
    result = stats.mcnemar(err_a, err_b)
    assert result == legacy_scoring_mcnemar(err_a, err_b)
    table = [
        [int((~err_a & ~err_b).sum()), int((~err_a & err_b).sum())],
        [int((err_a & ~err_b).sum()), int((err_a & err_b).sum())],
    ]
    assert (result["only_a_wrong"], result["only_b_wrong"]) == (table[1][0], table[0][1])
    assert result["p_value"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue, rel=1e-9, abs=1e-300)

    # evaluation's shape (labels and predictions), through its thin wrapper
    from mlops_airflow.operators.evaluation import mcnemar as evaluation_mcnemar

    y = rng.integers(0, 2, n)
    chal, champ = np.where(err_a, 1 - y, y), np.where(err_b, 1 - y, y)
    assert evaluation_mcnemar(y, chal, champ) == legacy_evaluation_mcnemar(y, chal, champ)


def test_mcnemar_edge_cases():
    assert stats.mcnemar([0, 0, 1], [0, 0, 1]) == {"only_a_wrong": 0, "only_b_wrong": 0, "p_value": 1.0}  # none
    assert stats.mcnemar([], []) == {"only_a_wrong": 0, "only_b_wrong": 0, "p_value": 1.0}
    one_sided = stats.mcnemar([1] * 10, [0] * 10)
    assert one_sided["only_a_wrong"] == 10 and one_sided["p_value"] == pytest.approx(2 / 2**10)
    assert stats.mcnemar([1, 0], [0, 1])["p_value"] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        stats.mcnemar([1, 0, 1], [0, 1])

    # the evaluation verdict's numbers (test_evaluation.py): b = 8, c = 10 of 18 discordant rows
    from mlops_airflow.operators.evaluation import mcnemar as evaluation_mcnemar

    y = np.array([1] * 20)
    result = evaluation_mcnemar(y, np.array([0] * 8 + [1] * 12), np.array([1] * 10 + [0] * 10))
    assert result == {"b_champion_only_correct": 8, "c_challenger_only_correct": 10, "p_value": 0.814529}


# -------------------------------------------------------------------------------------------- Fisher
def _fisher_by_hand(table) -> float:
    """Two-sided Fisher: the probability of every table with the same margins no likelier than the observed one."""
    from scipy.stats import hypergeom

    (a, b), (c, d) = table
    total, row, col = a + b + c + d, a + b, a + c
    dist = hypergeom(total, col, row)
    observed = dist.pmf(a)
    support = range(max(0, row + col - total), min(row, col) + 1)
    return min(1.0, sum(dist.pmf(k) for k in support if dist.pmf(k) <= observed * (1 + 1e-7)))


@pytest.mark.parametrize(
    "counts", [(240, 400, 300, 400), (296, 400, 300, 400), (3, 10, 9, 10), (0, 5, 5, 5), (7, 7, 7, 7)]
)
def test_fisher_exact_matches_the_hypergeometric_sum(counts):
    result = stats.fisher_exact(*counts)
    a, n_a, b, n_b = counts
    assert result["table"] == [[a, n_a - a], [b, n_b - b]]
    assert result["p_value"] == pytest.approx(_fisher_by_hand(result["table"]), rel=1e-9)
    assert set(result) == {"table", "p_value"}  # the canary verdict's keys


def test_fisher_exact_edge_cases():
    assert stats.fisher_exact(5, 10, 5, 10)["p_value"] == 1.0
    assert stats.fisher_exact(0, 0, 3, 4)["p_value"] == 1.0  # an empty side: nothing to tell apart
    assert stats.fisher_exact(10, 10, 0, 10, alternative="greater")["p_value"] < 1e-5
    with pytest.raises(ValueError, match="0 <= successes <= rows"):
        stats.fisher_exact(11, 10, 3, 10)


# ----------------------------------------------------------------------------------------- thresholds
def test_thresholds_safe_default_min_max_and_missing():
    metrics = {"auc": 0.8, "accuracy": 0.75, "logloss": 0.45}
    assert stats.check_thresholds(metrics) == (False, [stats.NO_THRESHOLDS])
    assert stats.check_thresholds(metrics, {}, {}) == (False, [stats.NO_THRESHOLDS])
    assert stats.check_thresholds(metrics, {"auc": 0.7}, {"logloss": 0.5}) == (True, [])
    assert stats.check_thresholds(metrics, {"auc": "0.8"}) == (True, [])  # templated, the bound itself passes
    assert stats.check_thresholds(metrics, {"auc": 0.9, "accuracy": 0.7}, {"logloss": 0.4}) == (
        False,
        ["auc=0.8000 < minimum 0.9", "logloss=0.4500 > maximum 0.4"],
    )
    assert stats.check_thresholds(metrics, {"roc_auc": 0.9}, {"log_loss": 0.4})[1] == [
        "roc_auc=0.8000 < minimum 0.9",
        "log_loss=0.4500 > maximum 0.4",
    ]  # canonical names find legacy keys
    missing = stats.check_thresholds(metrics, {"f1": 0.5})
    assert missing == (False, ["metric f1 is not available (known: ['accuracy', 'auc', 'logloss'])"])
    nan = {"auc": float("nan"), "logloss": float("nan")}
    assert stats.check_thresholds(nan, {"auc": 0.5}, {"logloss": 1.0})[1] == [
        "metric auc is not available (known: ['auc', 'logloss'])",
        "metric logloss is not available (known: ['auc', 'logloss'])",
    ]  # NaN never passes, min or max
    registry = stats.check_thresholds(
        {"val_auc": 0.6},
        {"val_auc": 0.7, "val_f1": 0.1},
        unconfigured="none",
        missing="metric {name} missing from the training run",
    )
    assert registry == (False, ["val_auc=0.6000 < minimum 0.7", "metric val_f1 missing from the training run"])
    assert stats.check_thresholds({"val_auc": 0.9}, {"auc": 0.7})[0] is False  # a validation AUC is not a holdout AUC
    with pytest.raises(ValueError):
        stats.check_thresholds(metrics, {"auc": "high"})


def test_stats_imports_nothing_heavy_nor_airflow():
    import subprocess
    import sys

    code = (
        "import sys; import mlops_airflow.stats; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'airflow', 'numpy', 'scipy', 'pandas'} "
        "or m.startswith('mlops_airflow.operators')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------- regression
def test_regression_metrics_match_sklearn_and_are_lower_is_better():
    from sklearn import metrics as skm

    rng = np.random.default_rng(11)
    y = rng.normal(0, 3, 300)
    pred = y + rng.normal(0, 1, 300)
    assert stats.rmse(y, pred) == pytest.approx(skm.root_mean_squared_error(y, pred), abs=1e-12)
    assert stats.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-12)
    assert stats.mse(y, pred) == pytest.approx(skm.mean_squared_error(y, pred), abs=1e-12)
    assert stats.r2(y, pred) == pytest.approx(skm.r2_score(y, pred), abs=1e-12)
    assert math.isnan(stats.r2([2.0, 2.0], [1.0, 3.0]))
    assert stats.canonical_metric("val_rmse") == "val_rmse" and stats.base_metric("val_rmse") == "rmse"
    assert stats.lower_is_better("val_mae") and not stats.lower_is_better("r2")
    assert stats.improvement("rmse", 40.0, 50.0) == pytest.approx(10.0)  # new 40 < old 50: better
    assert stats.check_thresholds({"val_rmse": 55.0}, None, {"val_rmse": 50}) == (
        False, ["val_rmse=55.0000 > maximum 50.0"])
    with pytest.raises(ValueError, match="finite"):
        stats.rmse([1.0, float("nan")], [1.0, 2.0])


def test_paired_bootstrap_on_rmse_is_positive_for_the_better_regressor():
    rng = np.random.default_rng(5)
    y = rng.normal(100, 30, 500)
    good, bad = y + rng.normal(0, 10, 500), y + rng.normal(0, 25, 500)
    boot = stats.paired_bootstrap(y, good, bad, metric="rmse", n_boot=300, seed=1)
    assert boot["delta"] == pytest.approx(stats.rmse(y, bad) - stats.rmse(y, good), abs=1e-6)
    assert boot["ci"][0] > 0 and boot["p_not_better"] == 0.0
    assert boot == stats.paired_bootstrap(y, good, bad, metric="rmse", n_boot=300, seed=1)
    worse = stats.paired_bootstrap(y, bad, good, metric="r2", n_boot=100, seed=1)
    assert worse["delta"] < 0 and worse["ci"][1] < 0


def test_paired_and_welch_t_match_scipy():
    from scipy.stats import ttest_ind, ttest_rel

    rng = np.random.default_rng(8)
    a, b = np.abs(rng.normal(0, 12, 200)), np.abs(rng.normal(0, 10, 200))
    paired = stats.paired_t(a, b)
    ref = ttest_rel(a, b)
    assert (paired["statistic"], paired["p_value"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert paired["mean_difference"] == pytest.approx(float((a - b).mean())) and paired["n"] == 200
    c = np.abs(rng.normal(0, 20, 150))
    welch = stats.welch_t(c, b)
    ref = ttest_ind(c, b, equal_var=False)
    assert (welch["statistic"], welch["p_value"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert (welch["n_a"], welch["n_b"]) == (150, 200)
    same = stats.paired_t(a, a)
    assert (same["statistic"], same["p_value"]) == (0.0, 1.0)
    whole = np.arange(10.0)
    shifted = stats.paired_t(whole + 1.0, whole)  # a constant difference (exact in floats): certain, p = 0
    assert shifted["p_value"] == 0.0 and shifted["statistic"] == math.inf
    assert stats.welch_t([1.0, 1.0], [1.0, 1.0])["p_value"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        stats.paired_t([1.0, 2.0], [1.0])
