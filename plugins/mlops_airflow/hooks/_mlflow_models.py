"""The MLflow registry and run calls of the pack's registry code, operators and UI, as methods of ``MlflowHook``.

``MlflowModelsMixin`` is mixed into ``MlflowHook``: :mod:`mlops_airflow.registry`, the operators and the models
page call ``hook.get_model_version(...)`` instead of holding an ``MlflowClient``. The methods keep the names and
arguments of ``MlflowClient``'s, so code written against a client reads the same (and code that still hands a
client to the registry functions keeps working for one release); the few that add something (:meth:`get_version_by_
alias` answers None, :meth:`model_artifact_present`, the JSON artifacts) say so. Every call goes through the hook's
one client (``client``, credentials applied by ``get_client()``); ``mlflow`` is imported inside methods only.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MlflowModelsMixin"]


class MlflowModelsMixin:
    """Registered models, versions, aliases, tags, runs and artifacts, for ``MlflowHook``.

    Needs ``client`` (an ``MlflowClient``) from the class it is mixed into (``MlflowRunsMixin.client``).
    """

    if TYPE_CHECKING:
        client: MlflowClient

    # -- registered models --------------------------------------------------------------------------------------
    def get_registered_model(self, name: str) -> Any:
        """The registered model ``name`` (raises ``MlflowException`` RESOURCE_DOES_NOT_EXIST when there is none).

        :param name: the registered model.
        """
        return self.client.get_registered_model(name)

    def create_registered_model(self, name: str, tags: Mapping[str, str] | None = None,
                                description: str | None = None) -> Any:
        """Create registered model ``name`` (atomic: raises RESOURCE_ALREADY_EXISTS when the name is taken).

        :param name: the registered model.
        :param tags: its tags.
        :param description: the text the MLflow UI shows.
        """
        return self.client.create_registered_model(name, tags=dict(tags) if tags else None, description=description)

    def rename_registered_model(self, name: str, new_name: str) -> Any:
        """Rename registered model ``name`` to ``new_name`` (atomic: of two renames, one succeeds).

        :param name: the registered model.
        :param new_name: its new name.
        """
        return self.client.rename_registered_model(name, new_name)

    def delete_registered_model(self, name: str) -> None:
        """Delete registered model ``name`` and its versions.

        :param name: the registered model.
        """
        self.client.delete_registered_model(name)

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 100,
                                 order_by: Sequence[str] | None = None) -> list[Any]:
        """The registered models matching ``filter_string`` (``name = 'x'``, ``name LIKE 'x%'``).

        :param filter_string: an MLflow search filter; None: every model.
        :param max_results: at most this many.
        :param order_by: e.g. ``["name ASC"]``.
        """
        return list(self.client.search_registered_models(filter_string=filter_string, max_results=max_results,
                                                         order_by=list(order_by) if order_by else None))

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        """Set tag ``key`` of registered model ``name`` (overwrites).

        :param name: the registered model.
        :param key: the tag.
        :param value: its value (as text).
        """
        self.client.set_registered_model_tag(name, key, str(value))

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Delete tag ``key`` of registered model ``name`` (raises when it has none).

        :param name: the registered model.
        :param key: the tag.
        """
        self.client.delete_registered_model_tag(name, key)

    # -- aliases ------------------------------------------------------------------------------------------------
    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` of registered model ``name`` at ``version`` (moves it from another version).

        :param name: the registered model.
        :param alias: e.g. ``champion``.
        :param version: the version.
        """
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from registered model ``name``.

        :param name: the registered model.
        :param alias: the alias.
        """
        self.client.delete_registered_model_alias(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        """The version ``alias`` of registered model ``name`` points at (raises when the alias is not set).

        :param name: the registered model.
        :param alias: the alias.
        """
        return self.client.get_model_version_by_alias(name, alias)

    def get_version_by_alias(self, name: str, alias: str) -> Any | None:
        """The version ``alias`` of registered model ``name`` points at, or None when the alias (or the model) does
        not exist.

        :param name: the registered model.
        :param alias: the alias, e.g. ``champion``.
        """
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise

    # -- versions -----------------------------------------------------------------------------------------------
    def get_model_version(self, name: str, version: str | int) -> Any:
        """Version ``version`` of registered model ``name`` (raises when there is none).

        :param name: the registered model.
        :param version: the version.
        """
        return self.client.get_model_version(name, str(version))

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10000,
                              order_by: Sequence[str] | None = None) -> list[Any]:
        """The model versions matching ``filter_string`` (``name = 'x' and run_id = 'r'``, ``tags.`k` = 'v'``).

        :param filter_string: an MLflow search filter.
        :param max_results: at most this many.
        :param order_by: e.g. ``["version_number DESC"]``.
        """
        return list(self.client.search_model_versions(filter_string, max_results=max_results,
                                                      order_by=list(order_by) if order_by else None))

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: Mapping[str, str] | None = None, description: str | None = None,
                             model_id: str | None = None) -> Any:
        """A new version of registered model ``name`` from the model at ``source``.

        :param name: the registered model.
        :param source: the model's URI (``models:/m-...``, ``runs:/<run>/model``).
        :param run_id: the run that logged it.
        :param tags: the version's tags.
        :param description: the text the MLflow UI shows.
        :param model_id: the logged model's id (MLflow 3).
        """
        extra = {"model_id": model_id} if model_id else {}
        return self.client.create_model_version(name, source, run_id, tags=dict(tags) if tags else None,
                                                description=description, **extra)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any) -> None:
        """Set tag ``key`` of version ``version`` of ``name`` (overwrites).

        :param name: the registered model.
        :param version: the version.
        :param key: the tag.
        :param value: its value (as text).
        """
        self.client.set_model_version_tag(name, str(version), key, str(value))

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        """Delete tag ``key`` of version ``version`` of ``name``.

        :param name: the registered model.
        :param version: the version.
        :param key: the tag.
        """
        self.client.delete_model_version_tag(name, str(version), key)

    def get_logged_model(self, model_id: str) -> Any:
        """The logged model ``model_id`` (``m-...``; MLflow 3).

        :param model_id: the logged model's id.
        """
        return self.client.get_logged_model(model_id)

    def model_artifact_present(self, mv: Any) -> bool:
        """True when the source of model version ``mv`` holds an ``MLmodel`` file (a model that can be served).

        A logged model (``models:/m-...``) is listed in its own artifact store, a ``runs:/`` source in its run's
        artifacts; another source (``s3://...``) was copied by the registry, whose READY status is trusted. An
        unreadable source counts as missing (the caller reports it with the version).

        :param mv: an MLflow ``ModelVersion``.
        """
        try:
            source = mv.source or ""
            model_id = getattr(mv, "model_id", None) or (source.removeprefix("models:/")
                                                         if source.startswith("models:/m-") else None)
            if model_id:
                # MLflow has no public call listing a logged model's artifacts by id yet.
                repo = self.client._tracking_client._get_artifact_repo(model_id, resource="logged_model")
                return any(Path(f.path).name == "MLmodel" for f in repo.list_artifacts())
            if source.startswith("runs:/"):
                run_id, _, path = source.removeprefix("runs:/").partition("/")
                return any(Path(f.path).name == "MLmodel" for f in self.client.list_artifacts(run_id, path or None))
            return True
        except Exception:  # noqa: BLE001 - unreadable = missing, reported with the version by the caller
            return False

    # -- runs and artifacts -------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Any:
        """The MLflow run ``run_id`` (its info, params, metrics and tags; raises when there is none).

        :param run_id: the run.
        """
        return self.client.get_run(run_id)

    def get_experiment_by_name(self, name: str) -> Any | None:
        """The experiment ``name``, or None.

        :param name: the experiment.
        """
        return self.client.get_experiment_by_name(name)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        """The artifacts of run ``run_id`` under ``path`` (one level).

        :param run_id: the run.
        :param path: the folder in the run's artifacts (None: the root).
        """
        return list(self.client.list_artifacts(run_id, path))

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """Download artifact ``path`` of run ``run_id`` into ``dst_path``; returns the local path.

        :param run_id: the run.
        :param path: the artifact (a file or folder) in the run's artifacts.
        :param dst_path: the local folder (None: a temporary one MLflow picks).
        """
        return self.client.download_artifacts(run_id, path, dst_path)

    def write_json_artifact(self, run_id: str, payload: Any, artifact_file: str) -> str:
        """Write ``payload`` as JSON to ``runs:/<run_id>/<artifact_file>`` (overwrites: idempotent); returns that URI.

        :param run_id: the run.
        :param payload: JSON-ready data (other values are written as text).
        :param artifact_file: the file in the run's artifacts, e.g. ``evaluation/vs-v1.json``.
        """
        directory, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
            self.client.log_artifact(run_id, str(path), artifact_path=directory or None)
        return f"runs:/{run_id}/{artifact_file}"

    def read_json_artifact(self, run_id: str, artifact_file: str) -> Any:
        """The JSON artifact ``artifact_file`` of run ``run_id``, parsed.

        :param run_id: the run.
        :param artifact_file: the file in the run's artifacts.
        """
        with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
            return json.loads(Path(self.client.download_artifacts(run_id, artifact_file, tmp)).read_text())

    def search_runs_where(self, experiment_ids: Sequence[str], filter_string: str, *, max_results: int = 1,
                          order_by: Sequence[str] = ("attributes.start_time DESC",)) -> list[Any]:
        """The runs of ``experiment_ids`` matching the MLflow filter ``filter_string``, newest first.

        (``search_runs`` of this hook searches one experiment by exact tags.)

        :param experiment_ids: the experiments searched.
        :param filter_string: an MLflow search filter.
        :param max_results: at most this many runs.
        :param order_by: the order.
        """
        return list(self.client.search_runs(list(experiment_ids), filter_string=filter_string,
                                            max_results=max_results, order_by=list(order_by)))
