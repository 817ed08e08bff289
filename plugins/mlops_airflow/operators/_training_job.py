"""What every training backend shares (local subprocess, GPU pod): the environment contract of the entrypoint
and reading the outcome back from MLflow by tags. Its own module so the GPU operator and the local one import
it without importing each other."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.operators._common import as_dict, run_identity

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_CONFIG: dict[str, Any] = {"epochs": 20, "batch_size": 256, "lr": 0.01, "hidden": 32, "seed": 42}


def default_entrypoint() -> str:
    """``include/training/train.py`` next to the DAGs folder, unless configured."""
    configured = mlops_conf("training_entrypoint")
    if configured:
        return configured
    from mlops_airflow.config import include_dir

    return str(include_dir() / "training" / "train.py")


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


