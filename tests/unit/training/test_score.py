"""Any framework through the training contract: scikit-learn models trained by ``ctx`` and scored by the scorer.

A LogisticRegression (entrypoint ``module:function``) and a LinearRegression (entrypoint: a file) are trained
by ``LocalTrainingOperator`` with the Airflow environment's interpreter (it has scikit-learn and mlflow, and no
torch) against the session's real MLflow server, then scored by ``python -m mlops_airflow.training.score`` in the
same environment: torch is nowhere. The bundled torch MLP's model is scored by the same scorer in the torch
environment (its pyfunc returns P(label == 1)).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TRAIN_PYTHON, make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.training.score import CLASSIFIER_COLUMNS, ScoringError, as_column

pytestmark = pytest.mark.unit
LOG = logging.getLogger("test-score")
FEATURES = ["x1", "x2", "x3"]

MODELS = '''
from sklearn.linear_model import LinearRegression, LogisticRegression


def train_classifier(ctx):
    df = ctx.load_training_set()
    model = LogisticRegression(random_state=ctx.seed).fit(df[ctx.features], df[ctx.label])
    ctx.log_model(model, flavor="sklearn", input_example=df[ctx.features].head(5))
    return {"val_accuracy": float(model.score(df[ctx.features], df[ctx.label]))}
'''
REGRESSOR_FILE = '''
import sys

from mlops_airflow.training import context
from sklearn.linear_model import LinearRegression

ctx = context()
df = ctx.load_training_set()
with ctx.start_run():
    model = LinearRegression().fit(df[ctx.features], df[ctx.label])
    ctx.log_metrics({"val_r2": model.score(df[ctx.features], df[ctx.label]), "val_rmse": 0.1})
    ctx.log_model(model, flavor="sklearn", input_example=df[ctx.features].head(5))
print("TRAINING DONE")
'''


def _data(tmp_path: Path, regression: bool) -> tuple[dict, str]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3))
    signal = X @ np.array([1.5, -2.0, 0.5])
    y = signal + rng.normal(scale=0.1, size=300) if regression else (signal > 0).astype(int)
    df = pd.DataFrame(X, columns=FEATURES).assign(row_id=np.arange(300), target=y)
    path = tmp_path / f"{'reg' if regression else 'clf'}.parquet"
    df.to_parquet(path, index=False)
    holdout = tmp_path / f"{path.stem}-holdout.parquet"
    df.drop(columns=["target"]).head(50).to_parquet(holdout, index=False)
    return {"uri": str(path), "hash": hashlib.sha256(path.read_bytes()).hexdigest(), "features": FEATURES,
            "label": "target", "entity_columns": ["row_id"]}, str(holdout)


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_server):
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "sk.py").write_text(textwrap.dedent(MODELS))
    (root / "train_regressor.py").write_text(textwrap.dedent(REGRESSOR_FILE))
    monkeypatch.setenv("AIRFLOW__MLOPS__PROJECT_ROOT", str(root))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    return root


def _train(training_set: dict, entrypoint: str, task_type: str, run_id: str) -> dict:
    from mlops_airflow.operators.training import LocalTrainingOperator

    op = LocalTrainingOperator(task_id="train_model", training_set=training_set, experiment_name="test-byom",
                               dataset_version={"repo": "r", "rev": "abc", "path": "data/x", "md5": "m"},
                               python=sys.executable, entrypoint=entrypoint, task_type=task_type)
    return op.execute(make_context("train_model", run_id=run_id))


def _score(model_uri: str, holdout: str, out: Path) -> tuple[dict, pd.DataFrame]:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.operators._scoring import score_parquet

    result = score_parquet(hook=MlflowHook(), model_uri=model_uri, input_path=holdout, output_dir=out,
                           cache_key=model_uri.replace("/", "_"), log=LOG, python=sys.executable)
    return result, pd.read_parquet(result["output"])


@pytest.mark.integration
def test_sklearn_models_train_through_ctx_and_score_without_torch(project, tmp_path, mlflow_server):
    import importlib.util

    from mlflow import MlflowClient

    assert importlib.util.find_spec("torch") is None  # the Airflow environment: no torch anywhere
    clf_set, clf_holdout = _data(tmp_path, regression=False)
    clf = _train(clf_set, "models.sk:train_classifier", "binary_classification", "run-clf")
    sha = hashlib.sha256((project / "models" / "sk.py").read_bytes()).hexdigest()
    assert (clf["task_type"], clf["label"], clf["entrypoint"]) == ("binary_classification", "target",
                                                                   "models.sk:train_classifier")
    assert clf["entrypoint_sha256"] == sha and clf["metrics"]["val_accuracy"] > 0.9

    reg_set, reg_holdout = _data(tmp_path, regression=True)
    reg = _train(reg_set, str(project / "train_regressor.py"), "regression", "run-reg")
    assert (reg["task_type"], reg["entrypoint"]) == ("regression", "train_regressor.py")
    assert reg["entrypoint_sha256"] == hashlib.sha256((project / "train_regressor.py").read_bytes()).hexdigest()
    assert reg["metrics"]["val_r2"] > 0.9

    tags = MlflowClient(mlflow_server).get_run(clf["run_id"]).data.tags
    assert tags["mlops.entrypoint"] == "models.sk:train_classifier" and tags["mlops.entrypoint_sha256"] == sha
    assert tags["mlops.task_type"] == "binary_classification" and tags["mlops.label"] == "target"
    assert tags["mlops.run_id"] == "run-clf" and tags["mlops.training_set_hash"] == clf_set["hash"]
    assert MlflowClient(mlflow_server).get_run(reg["run_id"]).data.tags["mlops.task_type"] == "regression"

    result, scored = _score(clf["model_uri"], clf_holdout, tmp_path / "scores")
    assert result["task_type"] == "binary_classification" and result["rows"] == 50
    assert set(CLASSIFIER_COLUMNS) <= set(scored.columns) and scored["prediction"].dtype == np.int64
    assert scored["proba"].between(0, 1).all() and (scored["confidence"] >= 0.5).all()
    assert ((scored["proba"] >= 0.5).astype(int) == scored["prediction"]).all()
    truth = (scored[FEATURES].to_numpy() @ np.array([1.5, -2.0, 0.5]) > 0).astype(int)
    assert (scored["prediction"] == truth).mean() > 0.9

    result, scored = _score(reg["model_uri"], reg_holdout, tmp_path / "scores")
    assert result["task_type"] == "regression" and "mean_prediction" in result
    assert {"prediction", "model_uri"} <= set(scored.columns) and not {"proba", "confidence"} & set(scored.columns)
    assert scored["prediction"].dtype == np.float64
    expected = scored[FEATURES].to_numpy() @ np.array([1.5, -2.0, 0.5])
    assert np.abs(scored["prediction"] - expected).max() < 0.2

    again = _train(clf_set, "models.sk:train_classifier", "binary_classification", "run-clf")
    assert again["adopted"] and again["run_id"] == clf["run_id"]  # a retry adopts the run by its tags

    with pytest.raises(RegistryError, match=r"SCORING FAILED: input is missing feature columns \['x3'\]"):
        bad = tmp_path / "bad.parquet"
        pd.read_parquet(reg_holdout).drop(columns=["x3"]).to_parquet(bad)
        _score(reg["model_uri"], str(bad), tmp_path / "scores")


@pytest.mark.integration
@pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON})")
def test_the_bundled_torch_model_scores_through_pyfunc(mlflow_server, tmp_path, monkeypatch, generator):
    """The MLP's pt2 model through mlflow.pyfunc in the torch env: P(label == 1), tensor signature honoured."""
    from datetime import date

    from mlops_airflow.operators.training import LocalTrainingOperator
    from unit.operators.test_registry_support import FEATURES as MLP_FEATURES

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT",
                       json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}}))
    df = generator.generate_batch(date(2026, 11, 1), n_customers=600)
    path = generator.write_batch(df, tmp_path / "train.parquet")
    trained = LocalTrainingOperator(
        task_id="train_model", experiment_name="test-byom-torch", python=str(TRAIN_PYTHON),
        training_set={"uri": str(path), "hash": "h" * 64, "features": MLP_FEATURES, "label": "churned"},
        dataset_version={"rev": "abc", "md5": "m"}, training_config={"epochs": 2},
    ).execute(make_context("train_model", run_id="run-torch"))
    assert trained["entrypoint"] == "include/training/train.py" and trained["task_type"] == "binary_classification"
    assert trained["entrypoint_sha256"] == hashlib.sha256((ROOT / "include/training/train.py").read_bytes()).hexdigest()
    assert trained["requirements_sha256"] == (TRAIN_PYTHON.parent.parent / ".requirements.sha256").read_text().strip()
    holdout = tmp_path / "holdout.parquet"
    df.drop(columns=["churned"]).head(100).to_parquet(holdout)
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.operators._scoring import score_parquet

    result = score_parquet(hook=MlflowHook(), model_uri=trained["model_uri"], input_path=str(holdout),
                           output_dir=tmp_path / "scores", cache_key="torch", log=LOG, python=str(TRAIN_PYTHON))
    scored = pd.read_parquet(result["output"])
    assert result["task_type"] == "binary_classification" and len(scored) == 100
    assert scored["proba"].between(0, 1).all() and scored["proba"].std() > 0


def test_predictions_are_read_as_one_column_per_task_type():
    p = np.array([0.1, 0.8])
    assert as_column(p, 2, "binary_classification").tolist() == [0.1, 0.8]
    assert as_column(np.c_[1 - p, p], 2, "binary_classification").tolist() == [0.1, 0.8]  # predict_proba
    assert as_column(pd.DataFrame({"p": p}), 2, "binary_classification").tolist() == [0.1, 0.8]
    assert as_column(pd.Series([3.5, -1.0]), 2, "regression").tolist() == [3.5, -1.0]
    with pytest.raises(ScoringError, match=r"values in \[-1, 3.5\], not probabilities"):
        as_column(np.array([3.5, -1.0]), 2, "binary_classification")
    with pytest.raises(ScoringError, match=r"shape \(2, 2\) for 2 rows; a regression model must return one value"):
        as_column(np.c_[1 - p, p], 2, "regression")
    with pytest.raises(ScoringError, match="not numbers"):
        as_column(np.array(["a", "b"]), 2, "regression")
