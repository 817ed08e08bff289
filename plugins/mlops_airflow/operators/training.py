"""Training: one entrypoint (``include/training/train.py``), one env contract, several backends.

The job writes its outcome to MLflow, tagged ``mlops.dag_id``/``mlops.run_id``/``mlops.task_id``;
the operator reads it back from there (no XCom sidecar), and a retry first adopts a FINISHED run
with those tags instead of training again.

Backends are chosen by configuration, not by editing the DAG: ``[mlops] training_backend``
(``AIRFLOW__MLOPS__TRAINING_BACKEND``), ``local`` by default. ``train_model_task`` builds the
operator for the configured backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowRunLink
from mlops_airflow.operators._training_job import DEFAULT_CONFIG, TrainingJobMixin, default_entrypoint

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "DEFAULT_CONFIG",
    "LocalTrainingOperator",
    "TrainingJobMixin",
    "default_entrypoint",
    "mlops_conf",
    "train_model_task",
]



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
