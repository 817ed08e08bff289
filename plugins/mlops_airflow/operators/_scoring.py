"""Score a Parquet file with a registered model, in the *training* environment.

torch is never installed in the Airflow environment, so anything that loads a model runs
``include/training/score.py`` as a subprocess of the worker, with the training interpreter
(``[mlops] training_python``). Same rules as ``LocalTrainingOperator.run_subprocess``: the MLflow
credentials go into the child's environment only (never ``os.environ`` of the worker), and the
child's output is streamed to the task log.

Registered versions are immutable, so the predictions of (model version, input file content) are
cached under ``output_dir``: a retry, or a second evaluation on the same holdout, reuses them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow._io import file_sha256  # noqa: F401 - re-exported: callers import it from here
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._common import safe_part

if TYPE_CHECKING:
    import logging

    from mlops_airflow.hooks.mlflow_registry import MlflowHook


def training_python(explicit: str | None = None) -> str:
    python = explicit or mlops_conf("training_python") or os.environ.get("MLOPS_TRAINING_PYTHON")
    if not python:
        raise RegistryError(
            "no training environment configured to load models: set [mlops] training_python "
            "(AIRFLOW__MLOPS__TRAINING_PYTHON) to the interpreter that has torch and mlflow"
        )
    return python


def scoring_entrypoint(explicit: str | None = None) -> str:
    """``include/training/score.py`` beside the DAGs folder, unless configured (``[mlops] scoring_entrypoint``)."""
    configured = explicit or mlops_conf("scoring_entrypoint")
    if configured:
        return configured
    from mlops_airflow.config import include_dir

    return str(include_dir() / "training" / "score.py")


def score_parquet(
    *,
    hook: MlflowHook,
    model_uri: str,
    input_path: str,
    output_dir: str | Path,
    cache_key: str,
    log: logging.Logger,
    python: str | None = None,
    entrypoint: str | None = None,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Run score.py for ``model_uri`` on ``input_path``; returns score.py's result (output path, rows, ...).

    ``cache_key`` names the immutable model (e.g. ``churn_classifier-v3``); with the input's sha256 it
    names the output file, so the same model on the same bytes is scored once.
    Raises ``RegistryError`` with score.py's ``SCORING FAILED`` line (cause and next step) on failure.
    """
    python = training_python(python)
    script = scoring_entrypoint(entrypoint)
    if not Path(script).is_file():
        raise RegistryError(f"scoring entrypoint {script} not found; set [mlops] scoring_entrypoint")
    if not Path(input_path).is_file():
        raise RegistryError(f"holdout/input file {input_path} not found; check the upstream task that writes it")
    out_dir = Path(output_dir) / safe_part(cache_key)
    stem = file_sha256(input_path)[:16]
    output, result_path = out_dir / f"{stem}.parquet", out_dir / f"{stem}.json"
    if output.is_file() and result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("status") == "OK":
            log.info("Scoring %s on %s: reusing %s (same model version, same input bytes)", model_uri, input_path,
                     output)
            return result
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_UV_AUTO_DETECT": "false",
        **hook.job_env(),  # credentials: the child's environment only
    }
    argv = [python, script, "--model-uri", model_uri, "--input", str(input_path), "--output", str(output),
            "--result", str(result_path)]
    log.info("Scoring %s on %s with %s %s", model_uri, input_path, python, script)
    try:
        proc = subprocess.run(  # noqa: S603 - interpreter and script come from configuration
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"scoring {model_uri} on {input_path} took over {timeout_s:.0f}s; check the "
                            "training environment and the input size") from None
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    for line in lines[-40:]:
        log.info("[score] %s", line)
    if proc.returncode != 0:
        failed = [ln for ln in lines if "SCORING FAILED" in ln]
        cause = failed[-1] if failed else (lines[-1] if lines else "no output")
        raise RegistryError(
            f"scoring {model_uri} exited with code {proc.returncode}: {cause}. The scorer's output is in the "
            "task log above; check that the model version's artifact loads in the training environment "
            "([mlops] training_python) and that the input has the model's feature columns"
        )
    return json.loads(result_path.read_text())
