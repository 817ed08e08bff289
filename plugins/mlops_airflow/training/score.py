"""Batch scoring of any MLflow model (``mlflow.pyfunc.load_model``): scikit-learn, xgboost, torch alike.

    python -m mlops_airflow.training.score --model-uri models:/<name>@champion \
        --input in.parquet --output out.parquet [--features a,b,c] [--task-type regression] [--result r.json]

Runs in an environment that can load the model (the model's training environment): the Airflow environment
scores a scikit-learn model, a torch model needs the torch environment. The output holds the input rows plus
``prediction`` and ``model_uri``; for a binary classifier ``prediction`` is 0/1 (``proba >= 0.5``), ``proba`` is
P(label == 1) and ``confidence`` is max(proba, 1 - proba); for a regressor ``prediction`` is the predicted value.
A classifier's pyfunc ``predict`` must return P(label == 1): a 1-D array/Series, a one-column frame, or an (n, 2)
array/frame (column 1 is taken), as ``ctx.log_model`` logs a scikit-learn classifier.

The features and the task type come from the model's MLmodel metadata (``features``, ``task_type``, written by
``ctx.log_model``; default task type binary_classification); ``--features`` / ``--task-type`` override them.
A model with a tensor signature gets the features as one array of the signature's dtype.
MLFLOW_TRACKING_URI (and optional credentials) come from the environment; so do the object store's settings for
an ``s3://`` input or output (``mlops_airflow.training.data``).

Exit codes: 0 success; 2 invalid input (missing columns, NaNs, unreadable file, unknown model, bad predictions);
1 unexpected error. Failures print ``SCORING FAILED: <cause>; <next step>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from typing import Any

from mlops_airflow.task_types import BINARY_CLASSIFICATION, validate_task_type
from mlops_airflow.training.context import local_path

CHUNK_ROWS = 65_536
CLASSIFIER_COLUMNS = ("prediction", "confidence", "proba", "model_uri")
REGRESSOR_COLUMNS = ("prediction", "model_uri")
OUTPUT_COLUMNS = CLASSIFIER_COLUMNS


class ScoringError(Exception):
    """Invalid input, model or predictions: the cause and the next step."""

    def __init__(self, cause: str, next_step: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.next_step = next_step


def _write_json(path: str, payload: dict[str, Any]) -> None:
    path = os.path.abspath(local_path(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def _model_error(model_uri: str, exc: Exception) -> ScoringError:
    return ScoringError(
        f"cannot load model {model_uri} ({type(exc).__name__}: {str(exc)[:300]})".replace("\n", " "),
        "check --model-uri (registered name@alias, models:/<id> or runs:/<run_id>/model), MLFLOW_TRACKING_URI, and "
        "that this environment has the model's framework (score with the model's training interpreter)",
    )


def model_metadata(model: Any) -> dict[str, Any]:
    return dict(getattr(model.metadata, "metadata", None) or {})


def _inputs(model: Any, df: Any, features: list[str]) -> Any:
    """What ``predict`` takes: the feature frame, or one array of the dtype of a single-tensor signature."""
    import numpy as np

    schema = model.metadata.get_input_schema() if model.metadata is not None else None
    if schema is None or not schema.is_tensor_spec() or len(schema.inputs) != 1:
        return df[features]
    non_numeric = [c for c in features if df[c].dtype.kind not in "biuf"]
    if non_numeric:
        raise ScoringError(f"feature columns must be numeric for a tensor model: {non_numeric}", "fix the input dtypes")
    X = df[features].to_numpy(dtype=schema.numpy_types()[0], na_value=np.nan)
    bad = ~np.isfinite(X.astype(np.float64))
    if bad.any():
        counts = {f: int(n) for f, n in zip(features, bad.sum(axis=0), strict=True) if n}
        raise ScoringError(f"features contain NaN/inf values {counts}", "impute or drop those rows upstream")
    return X


def as_column(out: Any, rows: int, task_type: str) -> Any:
    """The prediction column (float64, one value per row) from whatever a pyfunc's ``predict`` returned."""
    import numpy as np

    if hasattr(out, "to_numpy"):  # pandas Series / DataFrame
        out = out.to_numpy()
    arr = np.asarray(out)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ScoringError(f"predict returned {arr.dtype} values, not numbers",
                           "log a model whose pyfunc predict returns numbers")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2 and arr.shape[1] == 2 and task_type == BINARY_CLASSIFICATION:
        arr = arr[:, 1]  # predict_proba: column 1 is P(label == 1)
    if arr.ndim != 1 or len(arr) != rows:
        expected = "P(label == 1): (n,) or (n, 2)" if task_type == BINARY_CLASSIFICATION else "one value per row: (n,)"
        raise ScoringError(f"predict returned shape {arr.shape} for {rows} rows; a {task_type} model must return "
                           f"{expected}", "log the model with ctx.log_model (classifiers: predict_proba)")
    arr = arr.astype(np.float64)
    if task_type == BINARY_CLASSIFICATION and len(arr) and (np.nanmin(arr) < 0.0 or np.nanmax(arr) > 1.0):
        raise ScoringError(f"predict returned values in [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}], not "
                           "probabilities", "a classifier's pyfunc must return P(label == 1) (e.g. predict_proba, "
                           "a sigmoid), or set --task-type regression")
    return arr


def score(model_uri: str, input_path: str, output_path: str, features: list[str] | None,
          task_type: str | None = None) -> dict[str, Any]:
    """Score ``input_path`` with ``model_uri``; write ``output_path``; return the summary."""
    import mlflow.pyfunc
    import numpy as np

    from mlops_airflow.training.data import DataAccessError, read_table, write_table

    try:
        df = read_table(input_path, what="input")
    except DataAccessError as err:
        if err.retryable:
            raise RuntimeError(str(err)) from None
        raise ScoringError(err.cause, f"{err.next_step}; check --input") from None
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # noqa: BLE001
        raise _model_error(model_uri, exc) from None
    if "torch" in sys.modules:  # a torch model: few threads, the worker's cores are shared
        sys.modules["torch"].set_num_threads(min(2, os.cpu_count() or 1))
    meta = model_metadata(model)
    try:
        task_type = validate_task_type(task_type or meta.get("task_type"))
    except ValueError as err:
        raise ScoringError(str(err), "pass --task-type or fix the model's metadata") from None
    features = features or (list(meta["features"]) if isinstance(meta.get("features"), list) else None)
    if not features:
        raise ScoringError(f"no feature list in the metadata of {model_uri}",
                           "pass --features a,b,c in training order, or log the model with ctx.log_model")
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ScoringError(f"input is missing feature columns {missing} (has {list(df.columns)})",
                           "fix the feature retrieval step or pass --features")
    columns = CLASSIFIER_COLUMNS if task_type == BINARY_CLASSIFICATION else REGRESSOR_COLUMNS
    clash = [c for c in columns if c in df.columns]
    if clash:
        raise ScoringError(f"input already has output columns {clash}", "drop them before scoring")
    X = _inputs(model, df, features)

    t0 = time.perf_counter()
    values = np.empty(len(df), dtype=np.float64)
    for start in range(0, len(df), CHUNK_ROWS):
        chunk = X.iloc[start : start + CHUNK_ROWS] if hasattr(X, "iloc") else X[start : start + CHUNK_ROWS]
        try:
            out = model.predict(chunk)
        except Exception as exc:  # noqa: BLE001 - e.g. wrong columns or dtypes
            raise ScoringError(f"model rejected input of shape {tuple(chunk.shape)} "
                               f"({type(exc).__name__}: {str(exc)[:300]})".replace("\n", " "),
                               "pass --features matching the features (and dtypes) the model was trained on") from None
        values[start : start + len(chunk)] = as_column(out, len(chunk), task_type)
    seconds = time.perf_counter() - t0

    out_df = df.copy()
    result: dict[str, Any] = {"status": "OK", "model_uri": model_uri, "input": input_path, "features": features,
                              "task_type": task_type, "rows": len(out_df), "seconds": seconds}
    if task_type == BINARY_CLASSIFICATION:
        out_df["prediction"] = (values >= 0.5).astype(np.int64)
        out_df["confidence"] = np.maximum(values, 1.0 - values)
        out_df["proba"] = values
        result.update({k: float(out_df[c].mean()) if len(out_df) else None for k, c in
                       (("mean_confidence", "confidence"), ("positive_rate", "prediction"), ("mean_proba", "proba"))})
    else:
        out_df["prediction"] = values
        result.update({"mean_prediction": float(values.mean()) if len(values) else None,
                       "std_prediction": float(values.std()) if len(values) else None})
    out_df["model_uri"] = model_uri
    try:
        result["output"] = write_table(out_df, output_path, what="scores")
    except DataAccessError as err:
        raise RuntimeError(str(err)) from None
    return result


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")  # never describe the Airflow project's uv lock
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--input", required=True, help="Parquet file (path, file:// or s3:// URI)")
    ap.add_argument("--output", required=True, help="Parquet file to write (path, file:// or s3:// URI)")
    ap.add_argument("--features", default=None, help="comma-separated feature columns (default: model metadata)")
    ap.add_argument("--task-type", default=None, help="binary_classification | regression (default: model metadata)")
    ap.add_argument("--result", default=None, help="optional JSON summary path")
    args = ap.parse_args(argv)
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    try:
        result = score(args.model_uri, args.input, args.output, features, args.task_type)
    except ScoringError as exc:
        msg, code = f"SCORING FAILED: {exc.cause}; {exc.next_step}", 2
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        msg, code = f"SCORING FAILED: {type(exc).__name__}: {str(exc)[:300]}; see the traceback above", 1
    else:
        if args.result:
            _write_json(args.result, result)
        print(f"SCORING DONE rows={result['rows']} task_type={result['task_type']} output={result['output']}",
              flush=True)
        return 0
    if args.result:
        _write_json(args.result, {"status": "FAILED", "error": msg, "model_uri": args.model_uri})
    print(msg.replace("\n", " "), file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
