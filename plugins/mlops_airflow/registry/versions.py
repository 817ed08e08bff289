"""Model versions in the MLflow registry: the registered model with a clear error, and whether a version can
move (exists, READY, its model artifact present). No Airflow operator here: promotion, evaluation and rollback
share it without importing each other."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def registered_model(client: Any, model_name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model_name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"registered model {model_name!r} does not exist; check model_name, or register a version first "
                "(RegisterModelOperator)"
            ) from None
        raise


def run_ids(client: Any, mv: Any) -> tuple[str, str]:
    return client.get_run(mv.run_id).info.experiment_id, mv.run_id


def check_version_usable(hook: MlflowHook, client: Any, model_name: str, version: str) -> Any:
    """The version exists, is READY, and its model artifact (MLmodel) is present; else a clear error."""
    from mlflow.exceptions import MlflowException

    registered_model(client, model_name)
    try:
        mv = client.get_model_version(model_name, version)
    except MlflowException:
        raise RegistryError(f"{model_name} has no version {version!r}; check the version passed to this task") \
            from None
    if mv.status != "READY":
        raise RegistryError(f"{model_name} v{version} is {mv.status} ({mv.status_message}); only READY versions move")
    if not model_artifact_present(client, mv):
        raise RegistryError(
            f"{model_name} v{version}: the model artifact behind {mv.source} is missing (no MLmodel file); it cannot "
            "be served. Re-register the version from a run that logged a model, or pick another version"
        )
    return mv


def model_artifact_present(client: Any, mv: Any) -> bool:
    """True when the version's source holds an ``MLmodel`` file."""
    try:
        source = mv.source or ""
        model_id = getattr(mv, "model_id", None) or (source.removeprefix("models:/")
                                                     if source.startswith("models:/m-") else None)
        if model_id:
            repo = client._tracking_client._get_artifact_repo(model_id, resource="logged_model")
            return any(Path(f.path).name == "MLmodel" for f in repo.list_artifacts())
        if source.startswith("runs:/"):
            run_id, _, path = source.removeprefix("runs:/").partition("/")
            return any(Path(f.path).name == "MLmodel" for f in client.list_artifacts(run_id, path or None))
        return True  # other sources (s3://...): the registry copied them; trust its READY status
    except Exception:  # noqa: BLE001 - unreadable = missing, reported with the version by the caller
        return False
