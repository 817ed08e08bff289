"""Training: any framework's entrypoint (a file or ``module:function``), one env contract, several backends.

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

from mlops_airflow._summary import log_summary
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.links.mlflow import MlflowRunLink
from mlops_airflow.operators._training_job import (
    DEFAULT_CONFIG,
    TrainingJobMixin,
    default_entrypoint,
    describe_entrypoint,
    entrypoint_search_path,
    pop_job_arguments,
    with_job_arguments,
)
from mlops_airflow.training.entrypoints import parse_entrypoint, python_path

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

    :param training_set: upstream training set ``{uri, hash, features, label[, entity_columns, task_type]}``
        (templated / XCom).
    :param dataset_version: upstream DVC version ``{repo, rev, path, md5}`` (templated / XCom).
    :param training_config: hyper-parameters, merged over ``{"seed": 42}`` (templated).
    :param experiment_name: MLflow experiment (templated).
    :param entrypoint: a Python file (run as ``python file.py``) or ``package.module:function`` (run as
        ``python -m mlops_airflow.training.run package.module:function``) using ``mlops_airflow.training.context``
        (templated); default ``[mlops] training_entrypoint`` or ``include/training/train.py`` beside the DAGs folder.
        The pack's folder, the project root and the file's folder are on its PYTHONPATH.
    :param python: interpreter of the training environment (templated); default: the environment of
        ``requirements``, else ``[mlops] training_python``.
    :param requirements: a pip requirements file of the model's environment (templated). Without ``python`` a
        virtual environment is built for it once, keyed by its sha256, under ``[mlops] training_envs_dir``; with
        ``python`` it names that interpreter's requirements. Its sha256 goes into the record either way.
    :param task_type: ``binary_classification`` (default) or ``regression`` (templated); else the training
        set's ``task_type`` (attribute ``model_task_type``: ``BaseOperator.task_type`` is taken).
    :param extra_tags: more MLflow run tags.
    :param mlflow_conn_id: MLflow connection; its credentials reach the job's environment only.

    An object-store training set (``s3://...``) is read by the job itself, with the settings and credentials of
    the connection ``[mlops] storage_conn_id`` in its environment (``mlops_airflow.training.data``).
    """

    template_fields: Sequence[str] = ("training_set", "dataset_version", "training_config", "experiment_name",
                                      "entrypoint", "python", "requirements", "model_task_type")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#3fb950"

    @with_job_arguments
    def __init__(self, **kwargs: Any) -> None:
        job = pop_job_arguments(kwargs)
        super().__init__(**kwargs)
        self.set_job(job)
        self._proc: subprocess.Popen[str] | None = None
        self._job: dict[str, Any] | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.registry.versions import registry_outage_guard

        self.mlflow_hook.ensure_reachable()  # MLflow down: one line now, not minutes of client retries
        with registry_outage_guard(self.mlflow_hook, f"train_model ({self.experiment_name})",
                                   "it adopts the FINISHED run of an earlier try instead of training again"):
            return self._train(context)

    def _train(self, context: Context) -> dict[str, Any]:
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
                    f"{self.experiment_name!r}; check that the entrypoint starts its run with "
                    "mlops_airflow.training.context().start_run() (it applies MLOPS_RUN_TAGS)"
                )
            result = self.result_from_run(run, backend="local", adopted=False)
        MlflowRunLink.persist(context, result["run_url"])
        log_summary(
            self.log, "train", backend="local", run_id=result["run_id"], model=result["model_uri"],
            task_type=result["task_type"], metrics=result["metrics"], entrypoint=result["entrypoint"],
            sha256=(result["entrypoint_sha256"] or "-")[:12], adopted=result["adopted"], url=result["run_url"],
        )
        return result

    # ------------------------------------------------------------------ the job
    def resolve_job(self) -> dict[str, Any]:
        """Interpreter, entrypoint, its record name and hash, requirements hash and PYTHONPATH (once per try)."""
        if self._job is not None:
            return self._job
        from mlops_airflow.config import project_root, training_envs_dir
        from mlops_airflow.training.env import ensure_env, requirements_sha256, stamped_sha256

        root = project_root()
        entry = parse_entrypoint(self.entrypoint or default_entrypoint())
        if entry.kind == "file" and not Path(entry.spec).is_absolute() and not Path(entry.spec).is_file():
            entry = parse_entrypoint(str(root / entry.spec))  # a path as the record names it: project-relative
        display, sha = describe_entrypoint(entry, root)
        python = self.python
        requirements = self.requirements or None
        if requirements and not Path(requirements).is_absolute() and not Path(requirements).is_file():
            requirements = str(root / requirements)
            self.requirements = requirements
        if requirements and not python:
            try:
                python = ensure_env(requirements, training_envs_dir(), log=self.log.info)
            except RuntimeError as err:
                raise TrainingError(str(err)) from None
        python = python or mlops_conf("training_python") or os.environ.get("MLOPS_TRAINING_PYTHON")
        if not python:
            raise TrainingError(
                "no training environment configured: pass requirements= (a requirements file: its environment is "
                "built once) or python=, or set [mlops] training_python (AIRFLOW__MLOPS__TRAINING_PYTHON)"
            )
        req_sha = requirements_sha256(requirements) if requirements else stamped_sha256(python)
        self._job = {"python": python, "entry": entry, "display": display, "sha256": sha,
                     "requirements_sha256": req_sha,
                     "pythonpath": python_path(*entrypoint_search_path(entry, root))}
        return self._job

    def lineage_env(self) -> dict[str, str]:
        job = self.resolve_job()
        env = {"MLOPS_ENTRYPOINT": job["display"], "MLOPS_ENTRYPOINT_SHA256": job["sha256"] or ""}
        if job["requirements_sha256"]:
            env["MLOPS_REQUIREMENTS_SHA256"] = job["requirements_sha256"]
        return env

    def run_subprocess(self, context: Context) -> None:
        job = self.resolve_job()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": job["pythonpath"],
            "MLFLOW_UV_AUTO_DETECT": "false",
            **self.mlflow_hook.job_env(),
            **self.job_env(context),
        }
        access = self.storage_access()
        if access is not None:  # the store's settings and credentials: this child's environment only
            env.update(access.job_env())
            self.log.info("Training set %s", access.describe())
        argv = job["entry"].argv(job["python"])
        self.log.info("Training: %s (experiment %s, entrypoint %s sha256 %s)", " ".join(argv), self.experiment_name,
                      job["display"], (job["sha256"] or "?")[:12])
        from mlops_airflow.config import project_root

        self._proc = subprocess.Popen(  # noqa: S603 - interpreter and entrypoint come from the DAG / configuration
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, cwd=str(project_root()) if project_root().is_dir() else None,
        )
        tail: list[str] = []
        failed: str | None = None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.rstrip()
            self.log.info("[train] %s", line)
            tail = (tail + [line])[-20:]
            if "TRAINING FAILED" in line:
                failed = line
        code = self._proc.wait()
        if code != 0:
            cause = failed or (tail[-1] if tail else "no output")
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
