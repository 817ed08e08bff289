"""Training: one entrypoint (``include/training/train.py``), one env contract, several backends.

The job writes its outcome to MLflow, tagged ``mlops.dag_id``/``mlops.run_id``/``mlops.task_id``;
the operator reads it back from there (no XCom sidecar), and a retry first adopts a FINISHED run
with those tags instead of training again.

Backends are chosen by configuration, not by editing the DAG: ``[mlops] training_backend``
(``AIRFLOW__MLOPS__TRAINING_BACKEND``), ``local`` by default. ``train_model_task`` builds the
operator for the configured backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import TrainingError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowRunLink
from mlops_airflow.operators._common import as_dict, run_identity

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_CONFIG: dict[str, Any] = {"epochs": 20, "batch_size": 256, "lr": 0.01, "hidden": 32, "seed": 42}


def mlops_conf(key: str, fallback: str | None = None) -> str | None:
    """``[mlops] <key>`` from Airflow's configuration (env ``AIRFLOW__MLOPS__<KEY>`` included)."""
    from airflow.configuration import conf

    return conf.get("mlops", key, fallback=fallback)


def default_entrypoint() -> str:
    """``include/training/train.py`` next to the DAGs folder, unless configured."""
    configured = mlops_conf("training_entrypoint")
    if configured:
        return configured
    from airflow.configuration import conf

    return str(Path(conf.get("core", "dags_folder")).resolve().parent / "include" / "training" / "train.py")


class TrainingJobMixin:
    """What every backend shares: the env contract and reading the outcome back from MLflow."""

    mlflow_conn_id: str
    experiment_name: str
    training_set: dict[str, Any] | str
    dataset_version: dict[str, Any] | str
    training_config: dict[str, Any] | str
    extra_tags: dict[str, str] | None

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def job_tags(self, context: Context) -> dict[str, str]:
        ident = run_identity(context)
        tags = {f"mlops.{k}": v for k, v in ident.items()}
        tags.update(self.extra_tags or {})
        return tags

    def job_env(self, context: Context) -> dict[str, str]:
        """The env contract of ``include/training/train.py`` (see DESIGN.md), credentials excluded."""
        training_set = as_dict(self.training_set, "training_set")
        dataset = as_dict(self.dataset_version, "dataset_version")
        config = {**DEFAULT_CONFIG, **as_dict(self.training_config or {}, "training_config")}
        config.setdefault("features", training_set.get("features"))
        config.setdefault("label", training_set.get("label", "churned"))
        return {
            "MLFLOW_EXPERIMENT_NAME": self.experiment_name,
            "MLOPS_TRAINING_SET_URI": training_set["uri"],
            "MLOPS_TRAINING_SET_HASH": training_set["hash"],
            "MLOPS_DATASET_VERSION": json.dumps({k: dataset.get(k) for k in ("repo", "rev", "path", "md5")}),
            "MLOPS_TRAINING_CONFIG": json.dumps(config, sort_keys=True),
            "MLOPS_RUN_TAGS": json.dumps(self.job_tags(context), sort_keys=True),
        }

    def find_job_run(self, context: Context, *, finished_only: bool = True) -> Any | None:
        """The newest MLflow run of this task instance's job (any try), or None."""
        client = self.mlflow_hook.get_client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return None
        ident = run_identity(context)
        clauses = [f"tags.`mlops.{k}` = '{ident[k]}'" for k in ("dag_id", "run_id", "task_id")]
        if finished_only:
            clauses.append("attributes.status = 'FINISHED'")
        runs = client.search_runs(
            [experiment.experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"], max_results=1
        )
        return runs[0] if runs else None

    def result_from_run(self, run: Any, *, backend: str, adopted: bool) -> dict[str, Any]:
        client = self.mlflow_hook.get_client()
        model_uri = run.data.tags.get("mlops.model_uri")
        if not model_uri:
            models = client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
            )
            model_uri = f"models:/{models[0].model_id}" if models else None
        if not model_uri:
            raise TrainingError(
                f"MLflow run {run.info.run_id} finished but logged no model; check the job log for the "
                "mlflow.pytorch.log_model step"
            )
        runtime = {k.removeprefix("mlops.runtime."): v for k, v in run.data.tags.items()
                   if k.startswith("mlops.runtime.")}
        return {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "model_uri": model_uri,
            "metrics": {k: round(v, 6) for k, v in run.data.metrics.items() if k.startswith("val_")},
            "backend": backend,
            "adopted": adopted,
            "runtime": runtime,
            "run_url": self.mlflow_hook.run_url(run.info.experiment_id, run.info.run_id),
        }


class LocalTrainingOperator(TrainingJobMixin, BaseOperator):
    """Run the training entrypoint as a subprocess of the worker, in the training environment.

    :param training_set: upstream training set ``{uri, hash, features, label}`` (templated / XCom).
    :param dataset_version: upstream DVC version ``{repo, rev, path, md5}`` (templated / XCom).
    :param training_config: hyper-parameters, merged over the defaults (templated).
    :param experiment_name: MLflow experiment (templated).
    :param python: interpreter of the training environment; default ``[mlops] training_python``.
    :param entrypoint: path of ``train.py``; default ``[mlops] training_entrypoint`` or
        ``include/training/train.py`` beside the DAGs folder.
    """

    template_fields: Sequence[str] = ("training_set", "dataset_version", "training_config", "experiment_name")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#3fb950"

    def __init__(
        self,
        *,
        training_set: dict[str, Any] | str,
        dataset_version: dict[str, Any] | str,
        experiment_name: str,
        training_config: dict[str, Any] | str | None = None,
        python: str | None = None,
        entrypoint: str | None = None,
        extra_tags: dict[str, str] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.dataset_version = dataset_version
        self.experiment_name = experiment_name
        self.training_config = training_config or {}
        self.python = python
        self.entrypoint = entrypoint
        self.extra_tags = extra_tags
        self.mlflow_conn_id = mlflow_conn_id
        self._proc: subprocess.Popen[str] | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        finished = self.find_job_run(context)
        if finished is not None:
            self.log.info("Adopting MLflow run %s: this task already trained (earlier try)", finished.info.run_id)
            result = self.result_from_run(finished, backend="local", adopted=True)
        else:
            self.run_subprocess(context)
            run = self.find_job_run(context)
            if run is None:
                raise TrainingError(
                    f"training exited 0 but no FINISHED MLflow run tagged with this task exists in experiment "
                    f"{self.experiment_name!r}; check that train.py sets MLOPS_RUN_TAGS"
                )
            result = self.result_from_run(run, backend="local", adopted=False)
        MlflowRunLink.persist(context, result["run_url"])
        self.log.info(
            "SUMMARY train backend=local run_id=%s model=%s metrics=%s adopted=%s url=%s",
            result["run_id"], result["model_uri"], result["metrics"], result["adopted"], result["run_url"],
        )
        return result

    def run_subprocess(self, context: Context) -> None:
        python = self.python or mlops_conf("training_python") or os.environ.get("MLOPS_TRAINING_PYTHON")
        if not python:
            raise TrainingError(
                "no training environment configured: set [mlops] training_python "
                "(AIRFLOW__MLOPS__TRAINING_PYTHON) to the interpreter that has torch and mlflow"
            )
        entrypoint = self.entrypoint or default_entrypoint()
        if not Path(entrypoint).is_file():
            raise TrainingError(f"training entrypoint {entrypoint} not found; set [mlops] training_entrypoint")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **self.mlflow_hook.job_env(),
            **self.job_env(context),
        }
        self.log.info("Training: %s %s (experiment %s)", python, entrypoint, self.experiment_name)
        self._proc = subprocess.Popen(  # noqa: S603 - interpreter and script come from configuration
            [python, entrypoint], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        tail: list[str] = []
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.rstrip()
            self.log.info("[train] %s", line)
            tail = (tail + [line])[-20:]
        code = self._proc.wait()
        if code != 0:
            failed = [ln for ln in tail if "TRAINING FAILED" in ln]
            cause = failed[-1] if failed else (tail[-1] if tail else "no output")
            raise TrainingError(
                f"training job exited with code {code}: {cause}. Full output above; "
                f"the MLflow run (if started) is marked FAILED in experiment {self.experiment_name!r}"
            )

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)


def train_model_task(**kwargs: Any) -> BaseOperator:
    """The training operator of the configured backend (``[mlops] training_backend``).

    Read at DAG parse time from Airflow's configuration (no connection, no Variable), so switching
    backends is a deployment setting, not a DAG edit.
    """
    backend = (kwargs.pop("backend", None) or mlops_conf("training_backend", "local") or "local").lower()
    if backend == "local":
        return LocalTrainingOperator(**kwargs)
    if backend == "kubernetes":
        from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator

        return GpuTrainingPodOperator(**kwargs)
    raise ValueError(f"[mlops] training_backend={backend!r} is not one of: local, kubernetes")
