"""Regression through the operators that judge models, on scored files built as data (no model needed):
ShadowCanaryAnalysisOperator (paired / Welch t-tests on absolute errors), QualityCheckOperator (RMSE rise),
evaluation's scored-holdout reader, and the task type / label read back from a registered version's tags."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import make_context
from mlops_airflow.exceptions import MonitoringError, RegistryError
from mlops_airflow.operators.evaluation import paired_t, read_scored, task_metrics
from mlops_airflow.operators.quality import QualityCheckOperator
from mlops_airflow.operators.scoring import ShadowCanaryAnalysisOperator

KEYS = ["entity_id", "event_timestamp"]


def _window(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"entity_id": np.arange(n), "event_timestamp": pd.Timestamp("2026-11-10", tz="UTC"),
                       "x1": rng.normal(0, 1, n), "x2": rng.normal(0, 1, n)})
    df["target"] = 150 + 40 * df.x1 - 20 * df.x2 + rng.normal(0, 10, n)
    return df


def _regression_log(df: pd.DataFrame, served_noise: float, shadow_noise: float, canary_every: int = 0,
                    canary_noise: float = 0.0, seed: int = 1) -> pd.DataFrame:
    """An inference log as batch scoring writes it for a regressor: ``prediction`` only (no proba)."""
    rng = np.random.default_rng(seed)
    log = df[[*KEYS, "x1", "x2"]].copy()
    log["prediction"] = df["target"] + rng.normal(0, served_noise, len(df))
    log["served_by"], log["model_version"] = "champion", "1"
    if canary_every:
        on = (np.arange(len(df)) % canary_every) == 0
        log.loc[on, "prediction"] = df["target"][on] + rng.normal(0, canary_noise, int(on.sum()))
        log.loc[on, "served_by"], log.loc[on, "model_version"] = "canary", "2"
    log["challenger_prediction"] = df["target"] + rng.normal(0, shadow_noise, len(df))
    return log


def _put(tmp: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


# ---------------------------------------------------------------------------------------- shadow / canary
@pytest.mark.unit
def test_regression_shadow_paired_t_and_promotion(tmp_path: Path) -> None:
    from scipy.stats import ttest_rel

    df = _window()
    log = _regression_log(df, served_noise=30, shadow_noise=10)
    labels = _put(tmp_path, "labels", df[[*KEYS, "target"]])
    verdict = ShadowCanaryAnalysisOperator(
        task_id="analyse", inference_log=_put(tmp_path, "log", log), labels_path=labels, label_column="target",
        keys=KEYS, evidence_dir=str(tmp_path / "ev"),
    ).execute(make_context("analyse"))
    cmp = verdict["metrics"]["comparisons"]["challenger"]
    assert verdict["task_type"] == "regression"  # no proba column: the scorer's regressor output
    assert verdict["metrics"]["task_source"]["task_type"].startswith("inference log")
    served_err = np.abs(df["target"] - log["prediction"])
    shadow_err = np.abs(df["target"] - log["challenger_prediction"])
    ref = ttest_rel(served_err, shadow_err)
    assert cmp["paired_t"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9) and cmp["paired_t"]["statistic"] > 0
    assert cmp["shadow_mae"] < cmp["served_mae"] and "mcnemar" not in cmp
    assert verdict["recommendation"] == "promote" and verdict["promote_alias"] == "challenger"
    assert cmp["disagreement"] == pytest.approx(
        float(np.abs(log["challenger_prediction"] - log["prediction"]).mean() / np.abs(log["prediction"]).mean()),
        abs=1e-6)


@pytest.mark.unit
def test_regression_canary_welch_t_rolls_a_worse_canary_back(tmp_path: Path) -> None:
    from scipy.stats import ttest_ind

    df = _window(800)
    log = _regression_log(df, served_noise=10, shadow_noise=10, canary_every=4, canary_noise=35)
    verdict = ShadowCanaryAnalysisOperator(
        task_id="analyse", inference_log=_put(tmp_path, "log", log),
        labels_path=_put(tmp_path, "labels", df[[*KEYS, "target"]]), label_column="target", keys=KEYS,
        task_type="regression", evidence_dir=str(tmp_path / "ev"),
    ).execute(make_context("analyse"))
    cmp = verdict["metrics"]["comparisons"]["canary"]
    canary = log["served_by"] == "canary"
    errors = np.abs(df["target"] - log["prediction"])
    ref = ttest_ind(errors[canary], errors[~canary], equal_var=False)
    assert cmp["welch_t"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert cmp["canary_mae"] > cmp["champion_mae"] and cmp["rows"] == int(canary.sum())
    assert verdict["recommendation"] == "rollback" and verdict["rollback_alias"] == "canary"
    assert "significantly above the champion" in verdict["reasons"][-1] and not verdict["passed"]


@pytest.mark.unit
def test_shadow_canary_needs_label_and_keys_without_a_model(tmp_path: Path) -> None:
    df = _window(50)
    log = _put(tmp_path, "log", _regression_log(df, 10, 10))
    labels = _put(tmp_path, "labels", df[[*KEYS, "target"]])
    with pytest.raises(MonitoringError, match="no label_column.*pass label_column="):
        ShadowCanaryAnalysisOperator(task_id="a", inference_log=log, labels_path=labels, keys=KEYS,
                                     evidence_dir=str(tmp_path)).execute(make_context("a"))
    with pytest.raises(MonitoringError, match="no keys.*pass keys="):
        ShadowCanaryAnalysisOperator(task_id="a", inference_log=log, labels_path=labels, label_column="target",
                                     evidence_dir=str(tmp_path)).execute(make_context("a"))


# ------------------------------------------------------------------------------------------------ quality
def _quality(tmp_path: Path, log: str, labels: str, **kwargs: Any) -> dict[str, Any]:
    op = QualityCheckOperator(
        task_id="quality", inference_log_path=log, labels_path=labels, report_dir=str(tmp_path / "reports"),
        model_name="some_regressor", features=["x1", "x2"], join_keys=KEYS, label_column="target",
        task_type="regression", log_to_mlflow=False, emit_retrain_event=False, **kwargs,
    )
    return op.execute({"dag": SimpleNamespace(dag_id="monitor"), "run_id": "r1", "outlet_events": {}})


@pytest.mark.unit
def test_regression_quality_rmse_rise_is_concept_drift(tmp_path: Path) -> None:
    from sklearn import metrics as skm

    df = _window(500)
    labels = _put(tmp_path, "labels", df[[*KEYS, "target"]])
    good = _regression_log(df, served_noise=10, shadow_noise=10).drop(columns=["challenger_prediction"])
    ok = _quality(tmp_path, _put(tmp_path, "good", good), labels, reference_quality={"rmse": 10.0, "mae": 8.0})
    q = ok["metrics"]["quality"]
    assert set(q) == {"rmse", "mae", "r2"} and ok["metrics"]["task_type"] == "regression"
    assert q["rmse"] == pytest.approx(skm.root_mean_squared_error(df["target"], good["prediction"]), rel=1e-9)
    assert ok["passed"], ok["reasons"]
    assert ok["metrics"]["confidence"] is None and ok["metrics"]["quality_metric"] == "rmse"
    assert ok["metrics"]["max_quality_drop"] == pytest.approx(1.0)  # 10% of the reference RMSE

    drifted = _regression_log(df, served_noise=20, shadow_noise=10).drop(columns=["challenger_prediction"])
    bad = _quality(tmp_path, _put(tmp_path, "bad", drifted), labels, reference_quality={"rmse": 10.0})
    assert bad["concept_drift"] is True and bad["quality_drop"] > 5
    assert any("concept drift: rmse rose" in r for r in bad["reasons"])
    mae = _quality(tmp_path, _put(tmp_path, "bad2", drifted), labels, reference_quality={"mae": 8.0},
                   quality_metric="mae", max_quality_drop=100.0)
    assert mae["passed"] and mae["metrics"]["max_quality_drop"] == 100.0


@pytest.mark.unit
def test_regression_quality_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quality_metric must be one of"):
        QualityCheckOperator(task_id="q", inference_log_path="a", labels_path="b", report_dir="c",
                             task_type="regression", quality_metric="roc_auc", reference_quality=1.0)
    df = _window(40)
    labels = df[[*KEYS, "target"]].assign(target="high")
    with pytest.raises(MonitoringError, match="a regressor's labels are numbers"):
        _quality(tmp_path, _put(tmp_path, "log", _regression_log(df, 5, 5)), _put(tmp_path, "l", labels),
                 reference_quality=1.0)
    with pytest.raises(MonitoringError, match="names no model .*pass label_column"):
        QualityCheckOperator(task_id="q", inference_log_path=_put(tmp_path, "nomodel", df[[*KEYS, "x1"]].assign(
            prediction=1.0)), labels_path="b", report_dir=str(tmp_path), features=["x1"], join_keys=KEYS,
            reference_quality=1.0, log_to_mlflow=False).execute(
            {"dag": SimpleNamespace(dag_id="m"), "run_id": "r", "outlet_events": {}})


# ---------------------------------------------------------------------------------------------- evaluation
@pytest.mark.unit
def test_scored_regression_holdout_and_its_statistics(tmp_path: Path) -> None:
    from scipy.stats import ttest_rel

    df = _window(300)
    rng = np.random.default_rng(2)
    scored = df.assign(prediction=df["target"] + rng.normal(0, 15, len(df)))
    path = _put(tmp_path, "scored", scored)
    y, pred = read_scored(path, "target", "regression")
    assert y.dtype == np.float64 and np.allclose(pred, scored["prediction"])
    metrics = task_metrics("regression", y, pred)
    assert set(metrics) == {"rmse", "mae", "r2"}
    champion = df["target"].to_numpy() + rng.normal(0, 30, len(df))
    test = paired_t(y, pred, champion)
    ref = ttest_rel(np.abs(y - champion), np.abs(y - pred))
    assert test["p_value"] == pytest.approx(float(f"{ref.pvalue:.6g}")) and test["statistic"] > 0
    with pytest.raises(RegistryError, match="no 'proba' column"):
        read_scored(path, "target", "binary_classification")
    with pytest.raises(RegistryError, match="not 0/1"):
        read_scored(_put(tmp_path, "p", scored.assign(proba=0.5)), "target", "binary_classification")
