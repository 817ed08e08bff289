"""Batch scoring with a model logged by ``train.py``; runs in the training environment.

    python include/training/score.py --model-uri models:/churn_classifier@champion \
        --input in.parquet --output out.parquet [--features a,b,c] [--result result.json]

The output holds the input rows plus ``prediction`` (0/1 at threshold 0.5), ``proba``
(P(label == 1)), ``confidence`` (max(proba, 1 - proba)) and ``model_uri``.  When
``--features`` is omitted the feature list stored in the model's metadata by train.py is used.
MLFLOW_TRACKING_URI (and optional credentials) come from the environment.

Exit codes: 0 success; 2 invalid input (missing columns, NaNs, unreadable file, unknown
model); 1 unexpected error.  Failures print ``SCORING FAILED: <cause>; <next step>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from urllib.parse import unquote, urlparse

# Do not describe/restore environments from a uv project found in the working directory.
os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CHUNK_ROWS = 65_536
OUTPUT_COLUMNS = ("prediction", "confidence", "proba", "model_uri")


class ScoringError(Exception):
    def __init__(self, cause: str, next_step: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.next_step = next_step


def _local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _write_json(path: str, payload: dict) -> None:
    path = os.path.abspath(_local_path(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def _model_error(model_uri: str, exc: Exception) -> ScoringError:
    return ScoringError(
        f"cannot load model {model_uri} ({type(exc).__name__}: {str(exc)[:300]})".replace("\n", " "),
        "check --model-uri (registered name@alias, models:/<id> or runs:/<run_id>/model) and MLFLOW_TRACKING_URI",
    )


def model_features(model_uri: str) -> list[str] | None:
    """Feature list that train.py stored in the MLmodel metadata (None if absent)."""
    from mlflow.models import get_model_info

    try:
        meta = get_model_info(model_uri).metadata or {}
    except Exception as exc:  # noqa: BLE001
        raise _model_error(model_uri, exc) from None
    feats = meta.get("features")
    return list(feats) if isinstance(feats, list) and feats else None


def score(model_uri: str, input_path: str, output_path: str, features: list[str] | None) -> dict:
    import mlflow.pytorch
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    path = _local_path(input_path)
    if "://" not in path and not os.path.exists(path):
        raise ScoringError(f"input not found: {path}", "check --input")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise ScoringError(
            f"cannot read {path} as Parquet ({type(exc).__name__}: {exc})".replace("\n", " "),
            "check --input",
        ) from None

    if not features:
        features = model_features(model_uri)
    if not features:
        raise ScoringError(
            f"no feature list in the metadata of {model_uri}",
            "pass --features a,b,c in training order",
        )
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ScoringError(
            f"input is missing feature columns {missing} (has {list(df.columns)})",
            "fix the feature retrieval step or pass --features",
        )
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        raise ScoringError(f"input already has output columns {clash}", "drop them before scoring")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ScoringError(f"feature columns must be numeric: {non_numeric}", "fix the input dtypes")
    X = df[features].to_numpy(dtype=np.float32, na_value=np.nan)
    bad = ~np.isfinite(X)
    if bad.any():
        counts = {f: int(n) for f, n in zip(features, bad.sum(axis=0), strict=True) if n}
        raise ScoringError(f"features contain NaN/inf values {counts}", "impute or drop those rows upstream")

    try:
        model = mlflow.pytorch.load_model(model_uri)  # pt2 archive: no pickle, no class import
    except Exception as exc:  # noqa: BLE001
        raise _model_error(model_uri, exc) from None

    t0 = time.perf_counter()
    proba = np.empty(len(df), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(df), CHUNK_ROWS):
            chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + CHUNK_ROWS]))
            try:
                out = model(chunk)
            except Exception as exc:  # noqa: BLE001 - e.g. wrong number of features
                raise ScoringError(
                    f"model rejected input of shape {tuple(chunk.shape)} "
                    f"({type(exc).__name__}: {str(exc)[:200]})".replace("\n", " "),
                    "pass --features matching the features the model was trained on",
                ) from None
            proba[start : start + len(chunk)] = out.float().reshape(-1).cpu().numpy()
    seconds = time.perf_counter() - t0

    out_df = df.copy()
    out_df["prediction"] = (proba >= 0.5).astype(np.int64)
    out_df["confidence"] = np.maximum(proba, 1.0 - proba).astype(np.float64)
    out_df["proba"] = proba.astype(np.float64)
    out_df["model_uri"] = model_uri
    out_path = os.path.abspath(_local_path(output_path))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    out_df.to_parquet(out_path, index=False)
    return {
        "status": "OK",
        "model_uri": model_uri,
        "input": input_path,
        "output": out_path,
        "features": features,
        "rows": len(out_df),
        "mean_confidence": float(out_df["confidence"].mean()) if len(out_df) else None,
        "positive_rate": float(out_df["prediction"].mean()) if len(out_df) else None,
        "mean_proba": float(out_df["proba"].mean()) if len(out_df) else None,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--input", required=True, help="Parquet file (path or file:// URI)")
    ap.add_argument("--output", required=True, help="Parquet file to write")
    ap.add_argument("--features", default=None, help="comma-separated feature columns")
    ap.add_argument("--result", default=None, help="optional JSON summary path")
    args = ap.parse_args(argv)
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    try:
        result = score(args.model_uri, args.input, args.output, features)
    except ScoringError as exc:
        msg = f"SCORING FAILED: {exc.cause}; {exc.next_step}"
        code = 2
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        msg = f"SCORING FAILED: {type(exc).__name__}: {str(exc)[:300]}; see the traceback above"
        code = 1
    else:
        if args.result:
            _write_json(args.result, result)
        mc = result["mean_confidence"]
        print(
            f"SCORING DONE rows={result['rows']} mean_confidence="
            f"{'nan' if mc is None else f'{mc:.4f}'} output={result['output']}",
            flush=True,
        )
        return 0
    if args.result:
        _write_json(args.result, {"status": "FAILED", "error": msg, "model_uri": args.model_uri})
    print(msg.replace("\n", " "), file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
