"""A user's own model, as a team would write it: its data (a small synthetic dataset) and its training function.

Used by ``tests/user_dag/my_model_dag.py`` (``continuous_training`` of a scikit-learn classifier, features given
directly, no Feast). ``train`` runs as ``python -m mlops_airflow.training.run tests.user_dag.my_model:train``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

FEATURES = ["x1", "x2", "x3"]


def daily_batch(day: date, *, rows: int = 600, salt: str = "train", shift: float = 0.0) -> Any:
    """One row per account and day: three features and a binary label ``y`` (a noisy linear rule, which changes
    from 2026-11-02 on: what the second CT run's challenger learns and the first model does not know)."""
    import hashlib

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(int(hashlib.sha256(f"{day}:{salt}".encode()).hexdigest()[:8], 16))
    x = rng.normal(shift, 1.0, size=(rows, 3))
    weights = np.array([1.5, -1.0, 0.5]) if day < date(2026, 11, 2) else np.array([1.5, 1.0, -0.5])
    y = (x @ weights + rng.normal(0, 0.8, rows) > 0).astype("int64")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = pd.to_datetime([start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, rows))],
                        utc=True).as_unit("us")
    return pd.DataFrame({"account_id": np.arange(1, rows + 1, dtype="int64"), "event_timestamp": ts,
                         **{f: x[:, i].round(4) for i, f in enumerate(FEATURES)}, "y": y})


def holdout_batch(day: date, **params: Any) -> Any:
    return daily_batch(day, **{**params, "salt": "holdout"})


def train(ctx: Any) -> dict[str, float]:
    """Fit a logistic regression on the training set; log it as an MLflow sklearn model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    df = ctx.load_training_set()
    valid = df[ctx.entity_columns[0]] % 5 == 0
    x, y = df[ctx.features], df[ctx.label]
    model = LogisticRegression(C=float(ctx.config.get("C", 1.0))).fit(x[~valid], y[~valid])
    proba = model.predict_proba(x[valid])[:, 1]
    ctx.log_model(model, flavor="sklearn", input_example=x.head(5))
    return {"val_auc": roc_auc_score(y[valid], proba), "val_accuracy": accuracy_score(y[valid], proba >= 0.5),
            "val_logloss": log_loss(y[valid], proba)}
