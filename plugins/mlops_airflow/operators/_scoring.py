"""Score a Parquet file with a registered model, in an environment that can load it.

The Airflow environment need not have the model's framework (torch is never installed there), so anything that
loads a model runs the pack's scorer ``python -m mlops_airflow.training.score`` (any MLflow flavour, through
``mlflow.pyfunc``) as a subprocess of the worker, with the pack's folder on PYTHONPATH; ``[mlops]
scoring_entrypoint`` replaces it with a script. The interpreter (``scoring_python``): ``python=`` of the caller;
else the environment the model version was trained in, found from its training run's tags
(``mlops.requirements_sha256``, ``mlops.requirements``: the venv of that requirements file under ``[mlops]
training_envs_dir``, built when missing, or ``[mlops] training_python`` when its stamp is that hash); else
``[mlops] training_python``. So every operator that scores works for a model of any framework, unchanged.
Same rules as ``LocalTrainingOperator.run_subprocess``: the MLflow credentials go into the child's environment
only (never ``os.environ`` of the worker), and the child's output is streamed to the task log.

Registered versions are immutable, so the predictions of (model version, input file content) are
cached under ``output_dir`` (a URI: :mod:`mlops_airflow.storage`): a retry, or a second evaluation on the same
holdout, on any worker, reuses them.
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
from mlops_airflow.training.entrypoints import package_parent

SCORER_MODULE = "mlops_airflow.training.score"

if TYPE_CHECKING:
    import logging

    from mlops_airflow.hooks.mlflow_registry import MlflowHook


def training_python(explicit: str | None = None) -> str:
    python = explicit or mlops_conf("training_python") or os.environ.get("MLOPS_TRAINING_PYTHON")
    if not python:
        raise RegistryError(
            "no environment configured to load models: set [mlops] training_python "
            "(AIRFLOW__MLOPS__TRAINING_PYTHON) to an interpreter with mlflow and the model's framework, or pass "
            "python= to the operator"
        )
    return python


def model_run_id(hook: MlflowHook, model_uri: str) -> str | None:
    """The MLflow run that logged ``model_uri`` (``models:/<name>/<version>``, ``models:/<name>@<alias>``,
    ``models:/<model_id>``, ``runs:/<run_id>/...``); None for another form (a local path).

    :param hook: the ``MlflowHook`` (an ``MlflowClient`` still works, for one release).
    :param model_uri: the model.
    """
    if model_uri.startswith("runs:/"):
        return model_uri.removeprefix("runs:/").split("/", 1)[0] or None
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri.removeprefix("models:/").strip("/")
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        return hook.get_model_version_by_alias(name, alias).run_id
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return hook.get_model_version(name, version).run_id
    return hook.get_logged_model(ref).source_run_id


def scoring_python(hook: MlflowHook, model_uri: str, log: logging.Logger, explicit: str | None = None) -> str:
    """The interpreter that loads ``model_uri``: ``explicit``; else the model's training environment; else
    ``[mlops] training_python`` (see the module docstring).

    The training environment is named by the training run's tags ``mlops.requirements_sha256`` (the hash of the
    requirements the job ran with) and ``mlops.requirements`` (the file, project-relative): the venv
    ``<training_envs_dir>/<sha256[:16]>`` stamped with that hash; else ``[mlops] training_python`` when its venv
    is stamped with it; else the venv built now from the file, when the file still has that hash. A model whose
    environment cannot be found is scored with ``[mlops] training_python``, and the log says why.

    :raises RegistryError: nothing found and no ``[mlops] training_python`` configured.
    """
    if explicit:
        return explicit
    from mlops_airflow.config import project_root, training_envs_dir
    from mlops_airflow.training.env import ensure_env, requirements_sha256, stamped_sha256

    configured = mlops_conf("training_python") or os.environ.get("MLOPS_TRAINING_PYTHON") or None
    try:
        run_id = model_run_id(hook, model_uri)
        tags = hook.get_run(run_id).data.tags if run_id else {}
    except Exception as err:  # noqa: BLE001 - the scorer reports a missing model itself, with its next step
        log.warning("Scoring %s: its training run cannot be read (%s: %s); using [mlops] training_python",
                    model_uri, type(err).__name__, str(err)[:200])
        return training_python(None)
    sha, requirements = tags.get("mlops.requirements_sha256"), tags.get("mlops.requirements")
    if not sha:
        log.info("Scoring %s: its training run names no requirements (no mlops.requirements_sha256 tag); using "
                 "[mlops] training_python", model_uri)
        return training_python(None)
    venv_python = training_envs_dir() / sha[:16] / "bin" / "python"
    if venv_python.exists() and stamped_sha256(venv_python) == sha:
        log.info("Scoring %s in its training environment %s (requirements sha256 %s)", model_uri, venv_python,
                 sha[:12])
        return str(venv_python)
    if configured and stamped_sha256(configured) == sha:
        log.info("Scoring %s with [mlops] training_python %s: its training environment (requirements sha256 %s)",
                 model_uri, configured, sha[:12])
        return configured
    if requirements:
        path = Path(requirements) if Path(requirements).is_absolute() else project_root() / requirements
        if path.is_file() and requirements_sha256(path) == sha:
            try:
                return ensure_env(path, training_envs_dir(), log=log.info)
            except RuntimeError as err:
                raise RegistryError(f"scoring {model_uri}: {err}") from None
        why = "not found" if not path.is_file() else "changed since the model was trained"
        log.warning("Scoring %s: its training requirements %s (sha256 %s) are %s and no environment under %s has "
                    "that hash; using [mlops] training_python (pass python= to choose the interpreter)", model_uri,
                    requirements, sha[:12], why, training_envs_dir())
    else:
        log.warning("Scoring %s: no environment with its requirements hash %s (under %s, or [mlops] "
                    "training_python); using [mlops] training_python (pass python= to choose)", model_uri, sha[:12],
                    training_envs_dir())
    return training_python(None)


def scoring_entrypoint(explicit: str | None = None) -> str | None:
    """A scoring script replacing the pack's scorer (``[mlops] scoring_entrypoint``), or None: the pack's scorer."""
    return explicit or mlops_conf("scoring_entrypoint") or None


def scoring_command(python: str, entrypoint: str | None = None) -> list[str]:
    """``python <script>`` when a script is configured, else ``python -m mlops_airflow.training.score``.

    :raises RegistryError: the configured script does not exist.
    """
    script = scoring_entrypoint(entrypoint)
    if script is None:
        return [python, "-m", SCORER_MODULE]
    if not Path(script).is_file():
        raise RegistryError(f"scoring entrypoint {script} not found; fix or unset [mlops] scoring_entrypoint "
                            "(default: the pack's scorer)")
    return [python, script]


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
    task_type: str | None = None,
    features: list[str] | None = None,
) -> dict[str, Any]:
    """Score ``model_uri`` on ``input_path``; returns the scorer's result (``output`` URI, rows, task_type, ...).

    ``input_path`` and ``output_dir`` are URIs (``s3://...``, ``file://...``) or local paths, read and written
    through :mod:`mlops_airflow.storage`: the input is staged into a task-local folder, the scorer writes there, and
    the scores (``<output_dir>/<cache_key>/<sha16>.parquet``) and the result (``.json``, written last: the marker of
    a complete entry) are put under ``output_dir``. ``cache_key`` names the immutable model (e.g. ``<model>-v3``);
    with the input's sha256 it names the output, so the same model on the same bytes is scored once, whichever
    worker asks.

    :param python: the scoring interpreter; None = ``scoring_python`` (the model's training environment).
    :param task_type: overrides the model metadata's task type (``--task-type``).
    :param features: overrides the model metadata's feature list (``--features``).
    :raises RegistryError: with the scorer's ``SCORING FAILED`` line (cause and next step) on failure, or when the
        input does not exist.
    """
    import tempfile

    from mlops_airflow import storage

    if not storage.exists(input_path):
        raise RegistryError(f"holdout/input file {storage.to_uri(input_path)} not found; check the upstream task "
                            "that writes it")
    with storage.local_copy(input_path) as local_input:
        sha = file_sha256(local_input)
        out_dir = storage.join(storage.to_uri(output_dir), safe_part(cache_key))
        stem = sha[:16] + (f"-{safe_part(task_type)}" if task_type else "")
        output, result_uri = storage.join(out_dir, f"{stem}.parquet"), storage.join(out_dir, f"{stem}.json")
        if storage.exists(result_uri) and storage.exists(output):
            result = storage.read_json(result_uri)
            if result.get("status") == "OK":
                log.info("Scoring %s on %s: reusing %s (same model version, same input bytes)", model_uri,
                         input_path, output)
                return {**result, "output": output, "input_sha256": sha}
        command = scoring_command(scoring_python(hook, model_uri, log, python), entrypoint)
        with tempfile.TemporaryDirectory(prefix="mlops-score-") as tmp:
            local_output, local_result = Path(tmp) / f"{stem}.parquet", Path(tmp) / f"{stem}.json"
            _run_scorer(hook, command, model_uri, local_input, local_output, local_result, log, timeout_s,
                        task_type, features, shown_input=str(input_path))
            result = json.loads(local_result.read_text())
            storage.put_file(local_output, output)
            result.update(output=output, input=storage.to_uri(input_path), input_sha256=sha)
            storage.write_json(result_uri, result)  # last: its presence marks a complete cache entry
    return result


def _run_scorer(hook: MlflowHook, command: list[str], model_uri: str, local_input: Path, output: Path,
                result_path: Path, log: logging.Logger, timeout_s: float, task_type: str | None,
                features: list[str] | None, *, shown_input: str) -> None:
    """Run the scorer subprocess on local files (the credentials in the child's environment only)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_UV_AUTO_DETECT": "false",
        "PYTHONPATH": str(package_parent()),
        **hook.job_env(),  # credentials: the child's environment only
    }
    argv = [*command, "--model-uri", model_uri, "--input", str(local_input), "--output", str(output),
            "--result", str(result_path)]
    argv += ["--task-type", task_type] if task_type else []
    argv += ["--features", ",".join(features)] if features else []
    log.info("Scoring %s on %s with %s", model_uri, shown_input, " ".join(command))
    try:
        proc = subprocess.run(  # noqa: S603 - interpreter and script come from configuration
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"scoring {model_uri} on {shown_input} took over {timeout_s:.0f}s; check the "
                            "training environment and the input size") from None
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    for line in lines[-40:]:
        log.info("[score] %s", line)
    if proc.returncode != 0:
        failed = [ln for ln in lines if "SCORING FAILED" in ln]
        cause = failed[-1] if failed else (lines[-1] if lines else "no output")
        raise RegistryError(
            f"scoring {model_uri} exited with code {proc.returncode}: {cause}. The scorer's output is in the "
            "task log above; check that the model version's artifact loads in the scoring environment "
            "(python= / [mlops] training_python: mlflow and the model's framework) and that the input has the "
            "model's feature columns"
        )
