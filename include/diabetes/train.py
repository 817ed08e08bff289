"""Train the diabetes regressor (scikit-learn) under the pack's training contract.

Run by the training operators as ``python include/diabetes/train.py`` in the environment of
``include/diabetes/requirements.txt`` (scikit-learn, no torch). Everything it needs comes from the
``MLOPS_*`` environment through ``mlops_airflow.training.context()``: the point-in-time training set, the
feature and label names, the entity key, the training config and the run tags.

Validation rows are chosen by a hash of the entity key (a patient is entirely in train or entirely in
validation, on every retry and retraining), so ``val_rmse`` measures patients the model has not seen.
Training config keys (all optional): ``seed`` (42), ``max_iter`` (100), ``learning_rate`` (0.05),
``max_leaf_nodes`` (8), ``min_samples_leaf`` (30), ``l2_regularization`` (0.0), ``val_share`` (0.2).

Exit codes as ``python -m mlops_airflow.training.run``: 0 done, 2 invalid input (``TrainingInputError``), 1
unexpected error, 143 SIGTERM; a failure prints ``TRAINING FAILED: <cause>; <next step>`` on stderr.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from mlops_airflow.training import TrainingContext, TrainingInputError, context
from mlops_airflow.training.errors import exit_code, report_failure

#: The model's runtime requirements, as pinned for its training environment (saves MLflow's slow inference).
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
#: Types in a fitted HistGradientBoostingRegressor that skops does not trust by default (we wrote them ourselves).
SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def validation_mask(df: Any, keys: list[str], share: float) -> Any:
    """Rows whose entity key hashes into the validation share (a boolean numpy array).

    :param df: the training set.
    :param keys: the entity key columns.
    :param share: the fraction of entity keys that go to validation (0 < share < 1).
    """
    import numpy as np

    joined = df[keys].astype(str).agg("|".join, axis=1)
    buckets = np.array([int(hashlib.sha256(f"val:{k}".encode()).hexdigest()[:8], 16) % 1000 for k in joined])
    return buckets < int(share * 1000)


def train(ctx: TrainingContext) -> dict[str, float]:
    """Fit a HistGradientBoostingRegressor, log val_rmse/val_mae/val_r2 and the model; returns the metrics.

    :param ctx: the training context (its MLflow run is started by the caller or here).
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    if ctx.task_type != "regression":
        raise TrainingInputError(f"include/diabetes/train.py trains a regressor, task_type is {ctx.task_type!r}",
                                 "set task_type='regression' on the training task (or the ModelSpec)")
    if not ctx.entity_columns:
        raise TrainingInputError("entity_columns is empty: the validation split needs the entity key",
                                 "set entity_columns in the training config (or the ModelSpec)")
    cfg = ctx.config
    df = ctx.load_training_set()  # checks the entity, feature and label columns
    val = validation_mask(df, ctx.entity_columns, float(cfg.get("val_share", 0.2)))
    if val.all() or not val.any():
        raise TrainingInputError(f"the entity-key split left {int((~val).sum())} training and {int(val.sum())} "
                                 "validation rows", "land more data (more distinct entity keys), or set val_share")
    x, y = df[ctx.features].astype("float64"), df[ctx.label].astype("float64").to_numpy()
    params = {
        "max_iter": int(cfg.get("max_iter", 100)),
        "learning_rate": float(cfg.get("learning_rate", 0.05)),
        "max_leaf_nodes": int(cfg.get("max_leaf_nodes", 8)),
        "min_samples_leaf": int(cfg.get("min_samples_leaf", 30)),
        "l2_regularization": float(cfg.get("l2_regularization", 0.0)),
        "random_state": ctx.seed if ctx.seed is not None else 42,
    }
    model = HistGradientBoostingRegressor(early_stopping=False, **params)
    with ctx.start_run():
        ctx.log_params({**params, "model_class": type(model).__name__, "train_rows": int((~val).sum()),
                        "val_rows": int(val.sum())})
        model.fit(x[~val], y[~val])
        pred = model.predict(x[val])
        metrics = ctx.log_metrics({
            "val_rmse": float(np.sqrt(mean_squared_error(y[val], pred))),
            "val_mae": float(mean_absolute_error(y[val], pred)),
            "val_r2": float(r2_score(y[val], pred)),
        })
        # MLflow 3 saves scikit-learn models with skops; the fitted trees' predictor type must be trusted by name.
        ctx.log_model(model, flavor="sklearn", input_example=x.iloc[:5], skops_trusted_types=SKOPS_TRUSTED_TYPES,
                      pip_requirements=str(REQUIREMENTS))
    return metrics


def main() -> int:
    try:
        ctx = context()
        metrics = train(ctx)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an exit code and one line
        report_failure(exc)
        return exit_code(exc)
    print("TRAINING DONE " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
