"""What every training backend shares (local subprocess, GPU pod): the environment contract of the entrypoint
and reading the outcome back from MLflow by tags. Its own module so the GPU operator and the local one import
it without importing each other.

The entrypoint is any framework's code: a Python file (``python file.py``) or ``package.module:function``
(``python -m mlops_airflow.training.run package.module:function``), using ``mlops_airflow.training.context()``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow import storage
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators._common import as_dict, run_identity
from mlops_airflow.training.entrypoints import (
    EntryPoint,
    display_path,
    file_sha256,
    module_source,
    package_parent,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.operators._training_storage import StorageAccess

# Hyper-parameters every job gets unless its training_config says otherwise (the seed: runs are reproducible).
DEFAULT_CONFIG: dict[str, Any] = {"seed": 42}
# Run tags the training helper writes, returned in the XCom (``mlops.<key>`` -> key).
LINEAGE_TAGS = ("task_type", "label", "entrypoint", "entrypoint_sha256", "requirements_sha256")


def default_entrypoint() -> str:
    """``include/training/train.py`` next to the DAGs folder, unless configured."""
    configured = mlops_conf("training_entrypoint")
    if configured:
        return configured
    from mlops_airflow.config import include_dir

    return str(include_dir() / "training" / "train.py")


def entrypoint_search_path(entry: EntryPoint, root: Path) -> list[Path]:
    """Where the job's Python finds the code: the pack's parent folder, the project root, the file's folder."""
    paths = [package_parent(), root]
    if entry.kind == "file":
        paths.append(Path(entry.spec).resolve().parent)
    return paths


def describe_entrypoint(entry: EntryPoint, root: Path) -> tuple[str, str | None]:
    """(what the record names, sha256 of its source) of a local entrypoint, without importing it.

    :raises TrainingError: the file or the module's source cannot be found (named, with the next step).
    """
    if entry.kind == "file":
        path = Path(entry.spec)
        if not path.is_file():
            raise TrainingError(f"training entrypoint {entry.spec} not found; pass entrypoint= (a Python file or "
                                "package.module:function) or set [mlops] training_entrypoint")
        return display_path(path, root), file_sha256(path)
    source = module_source(entry.module or "", entrypoint_search_path(entry, root))
    if source is None:
        raise TrainingError(f"training entrypoint {entry.spec}: module {entry.module!r} is not under the project "
                            f"root {root} nor the pack's folder; put it there or pass a file path")
    return entry.spec, file_sha256(source)


def _job_arguments(
    *,
    training_set: dict[str, Any] | str,
    dataset_version: dict[str, Any] | str,
    experiment_name: str,
    training_config: dict[str, Any] | str | None = None,
    python: str | None = None,
    entrypoint: str | None = None,
    requirements: str | None = None,
    task_type: str | None = None,
    extra_tags: dict[str, str] | None = None,
    mlflow_conn_id: str = MlflowHook.default_conn_name,
) -> dict[str, Any]:
    """The arguments every training backend takes, defined once (each operator documents them)."""
    return {"training_set": training_set, "dataset_version": dataset_version, "experiment_name": experiment_name,
            "training_config": training_config, "python": python, "entrypoint": entrypoint,
            "requirements": requirements, "task_type": task_type, "extra_tags": extra_tags,
            "mlflow_conn_id": mlflow_conn_id}


JOB_PARAMETERS = tuple(inspect.signature(_job_arguments).parameters.values())


def with_job_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Give an operator's ``__init__(self, *, <its own arguments>, **kwargs)`` the job arguments in its signature.

    Airflow fills arguments from ``default_args``, names a missing required one and checks ``partial()`` by the
    signature of ``__init__``: with the job arguments in it, both operators behave as if each declared them.
    """
    sig = inspect.signature(init)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    init.__signature__ = sig.replace(parameters=[*own, *JOB_PARAMETERS, *rest])  # type: ignore[attr-defined]
    return init


def pop_job_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job arguments taken out of an operator's ``kwargs`` (the rest goes to the base operator).

    :raises TypeError: a required one is missing (Airflow's wrapper names it first).
    """
    return _job_arguments(**{p.name: kwargs.pop(p.name) for p in JOB_PARAMETERS if p.name in kwargs})


class TrainingJobMixin:
    """What every backend shares: the job's arguments, the env contract and reading the outcome back from MLflow."""

    mlflow_conn_id: str
    experiment_name: str
    training_set: dict[str, Any] | str
    dataset_version: dict[str, Any] | str
    training_config: dict[str, Any] | str
    extra_tags: dict[str, str] | None
    python: str | None
    entrypoint: str | None
    requirements: str | None
    model_task_type: str | None

    def set_job(self, job: dict[str, Any]) -> None:
        """Keep the job arguments (from :func:`pop_job_arguments`) as the operator's attributes."""
        self.training_set = job["training_set"]
        self.dataset_version = job["dataset_version"]
        self.experiment_name = job["experiment_name"]
        self.training_config = job["training_config"] or {}
        self.python = job["python"]
        self.entrypoint = job["entrypoint"]
        self.requirements = job["requirements"]
        self.model_task_type = job["task_type"]  # BaseOperator.task_type is the operator's class name
        self.extra_tags = job["extra_tags"]
        self.mlflow_conn_id = job["mlflow_conn_id"]

    def training_set_uri(self) -> str:
        """The training set's URI (a plain path becomes ``file://``; a connection id in the authority is dropped)."""
        return storage.to_uri(as_dict(self.training_set, "training_set")["uri"])

    def storage_access(self) -> StorageAccess | None:
        """How the job reaches the store of its training set (None: a local file)."""
        from mlops_airflow.operators._training_storage import storage_access

        return storage_access(self.training_set_uri())

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def job_tags(self, context: Context) -> dict[str, str]:
        ident = run_identity(context)
        tags = {f"mlops.{k}": v for k, v in ident.items()}
        if self.requirements:
            tags["mlops.requirements"] = self.requirements_display()
        tags.update(self.extra_tags or {})
        return tags

    def requirements_display(self) -> str:
        from mlops_airflow.config import project_root

        return display_path(self.requirements, project_root()) if self.requirements else ""

    def lineage_env(self) -> dict[str, str]:
        """MLOPS_ENTRYPOINT / _SHA256 / MLOPS_REQUIREMENTS_SHA256 as far as the worker knows them (the job hashes
        the code it runs itself; a file inside an image is hashed there)."""
        return {}

    def job_config(self) -> dict[str, Any]:
        """The training config: defaults, the task's config, then the data keys from the training set."""
        from mlops_airflow.task_types import validate_task_type

        training_set = as_dict(self.training_set, "training_set")
        config = {**DEFAULT_CONFIG, **as_dict(self.training_config or {}, "training_config")}
        for key in ("features", "label", "entity_columns"):
            if config.get(key) in (None, "", []):
                config[key] = training_set.get(key)
        try:
            config["task_type"] = validate_task_type(
                self.model_task_type or config.get("task_type") or training_set.get("task_type"))
        except ValueError as err:
            raise TrainingError(f"{err}; fix task_type= of the training task") from None
        return config

    def job_env(self, context: Context) -> dict[str, str]:
        """The env contract of the training helper (``mlops_airflow.training.context``), credentials excluded."""
        training_set = as_dict(self.training_set, "training_set")
        dataset = as_dict(self.dataset_version, "dataset_version")
        return {
            "MLFLOW_EXPERIMENT_NAME": self.experiment_name,
            "MLOPS_TRAINING_SET_URI": self.training_set_uri(),
            "MLOPS_TRAINING_SET_HASH": training_set["hash"],
            "MLOPS_DATASET_VERSION": json.dumps({k: dataset.get(k) for k in ("repo", "rev", "path", "md5")}),
            "MLOPS_TRAINING_CONFIG": json.dumps(self.job_config(), sort_keys=True),
            "MLOPS_RUN_TAGS": json.dumps(self.job_tags(context), sort_keys=True),
            **self.lineage_env(),
        }

    def find_job_run(self, context: Context, *, finished_only: bool = True) -> Any | None:
        """The newest MLflow run of this task instance's job (any try), or None."""
        ident = run_identity(context)
        tags = {f"mlops.{k}": ident[k] for k in ("dag_id", "run_id", "task_id")}
        return self.mlflow_hook.find_run(self.experiment_name, tags, finished_only=finished_only)

    def result_from_run(self, run: Any, *, backend: str, adopted: bool) -> dict[str, Any]:
        tags = run.data.tags
        model_uri = self.mlflow_hook.logged_model_uri(run)
        if not model_uri:
            raise TrainingError(
                f"MLflow run {run.info.run_id} finished but logged no model; check the job log for the "
                "ctx.log_model(...) step of the entrypoint"
            )
        runtime = {k.removeprefix("mlops.runtime."): v for k, v in tags.items() if k.startswith("mlops.runtime.")}
        result = {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "model_uri": model_uri,
            "metrics": {k: round(v, 6) for k, v in run.data.metrics.items() if k.startswith("val_")},
            "backend": backend,
            "adopted": adopted,
            "runtime": runtime,
            "run_url": self.mlflow_hook.run_url(run.info.experiment_id, run.info.run_id),
        }
        result.update({key: tags.get(f"mlops.{key}") for key in LINEAGE_TAGS})
        result["task_type"] = result["task_type"] or self.job_config().get("task_type")
        return result
