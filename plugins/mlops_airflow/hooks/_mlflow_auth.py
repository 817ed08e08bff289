"""Explicit credentials for MLflow clients, without touching ``os.environ``.

MLflow reads credentials from process-wide environment variables (``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_TRACKING_USERNAME`` ...). Setting them would leak one task's credentials to every other
task of a shared worker, and two connections could not be used side by side. So this module builds
an ``MlflowClient`` whose every request carries *this* connection's credentials:

- tracking and registry REST stores are built with a ``get_host_creds`` callable (their public
  constructor argument) and pinned on the client's service clients;
- artifacts served through the tracking server (``mlflow-artifacts:`` / ``http(s)``) go through an
  artifact repository whose host credentials are ours. MLflow caches artifact repositories per run
  in a *process-wide* dict (``_artifact_repos_cache``); the pinned tracking client keeps its own cache
  so an authenticated repository never leaks to another client (and vice versa);
- ``list_artifacts``/``download_artifacts`` (module-level functions in MLflow that rebuild a store
  from the environment) are re-routed through that repository.

Uses MLflow internals (``TrackingServiceClient.store``, ``ModelRegistryClient.store``,
``TrackingServiceClient._get_artifact_repo``, ``HttpArtifactRepository._host_creds`` and
``list_artifacts``), checked against mlflow 3.17. ``tests/unit/hooks/test_mlflow_auth.py`` runs the
client against a server that requires auth, so an MLflow upgrade that breaks this fails loudly.
Artifact stores that are *not* proxied by the tracking server (s3://, gs://) use their own
credentials (IAM, workload identity) and are left alone.
"""

from __future__ import annotations

import functools
import posixpath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_airflow.hooks._mlflow_settings import MlflowSettings


def host_creds_factory(settings: MlflowSettings, uri: str) -> Any:
    """A zero-argument callable returning ``MlflowHostCreds`` for ``uri`` with the settings' credentials."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    def get_host_creds() -> MlflowHostCreds:
        return MlflowHostCreds(
            host=uri, username=settings.username, password=settings.password, token=settings.token,
            ignore_tls_verification=settings.insecure_tls,
        )

    return get_host_creds


@functools.cache
def _classes() -> dict[str, type]:
    """Build the subclasses once, on first use (mlflow is imported lazily, never at module import)."""
    from mlflow import MlflowClient
    from mlflow.entities import FileInfo
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient
    from mlflow.utils.rest_utils import augmented_raise_for_status, http_request
    from mlflow.utils.uri import validate_path_is_safe

    class AuthedArtifactsRepository(MlflowArtifactsRepository):
        """Artifacts proxied by the tracking server, requested with our credentials."""

        def __init__(self, artifact_uri: str, tracking_uri: str, get_host_creds: Any) -> None:
            self._mlops_get_host_creds = get_host_creds
            super().__init__(artifact_uri, tracking_uri=tracking_uri)

        def _creds(self, uri: str) -> Any:
            creds = self._mlops_get_host_creds()
            creds.host = uri
            return creds

        @property
        def _host_creds(self) -> Any:
            return self._creds(self.artifact_uri)

        @property
        def _artifact_server_host_creds(self) -> Any:
            return self._creds(self.artifact_uri.partition("/api/2.0/mlflow-artifacts/artifacts")[0].rstrip("/"))

        # Multipart transfers call module-level credential lookups; records and evidence are small.
        def _is_multipart_upload_enabled(self) -> bool:
            return False

        def _is_multipart_download_enabled(self) -> bool:
            return False

        def list_artifacts(self, path: str | None = None) -> list[Any]:
            # Same as HttpArtifactRepository.list_artifacts (mlflow 3.17), with our credentials.
            endpoint = "/mlflow-artifacts/artifacts"
            url, tail = self.artifact_uri.split(endpoint, maxsplit=1)
            root = tail.lstrip("/")
            params = {"path": posixpath.join(root, path) if path else root}
            resp = http_request(self._creds(url), endpoint, "GET", params=params)
            augmented_raise_for_status(resp)
            infos = []
            for f in resp.json().get("files", []):
                rel = validate_path_is_safe(f["path"])
                infos.append(FileInfo(posixpath.join(path, rel) if path else rel, f["is_dir"],
                                      int(f["file_size"]) if "file_size" in f else None))
            if (len(infos) == 1 and not infos[0].is_dir and path is not None
                    and infos[0].path == posixpath.join(path, posixpath.basename(path))):
                return []
            return sorted(infos, key=lambda f: f.path)

    class PinnedTrackingServiceClient(TrackingServiceClient):
        def __init__(self, tracking_uri: str, store: Any, get_host_creds: Any) -> None:
            self._mlops_store = store
            self._mlops_get_host_creds = get_host_creds
            self._mlops_repos: dict[str, Any] = {}
            super().__init__(tracking_uri)

        @property
        def store(self) -> Any:
            return self._mlops_store

        def _get_artifact_repo(self, resource_id: str, *, resource: str = "run") -> Any:
            if resource_id in self._mlops_repos:
                return self._mlops_repos[resource_id]
            if resource == "run":
                location = self.get_run(resource_id).info.artifact_uri
            elif resource == "logged_model":
                location = self.get_logged_model(resource_id).artifact_location
            else:
                raise ValueError(f"Unexpected resource type {resource!r}.")
            if location.startswith(("mlflow-artifacts:", "http:", "https:")):
                repo = AuthedArtifactsRepository(location, self.tracking_uri, self._mlops_get_host_creds)
            else:
                repo = get_artifact_repository(location, tracking_uri=self.tracking_uri)
            if len(self._mlops_repos) > 256:
                self._mlops_repos.pop(next(iter(self._mlops_repos)))
            self._mlops_repos[resource_id] = repo
            return repo

        # MLflow implements these two with module-level functions that rebuild a store from the
        # environment; route them through this client's repository instead.
        def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
            return self._get_artifact_repo(run_id).list_artifacts(path)

        def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
            return self._get_artifact_repo(run_id).download_artifacts(path, dst_path)

    class PinnedModelRegistryClient(ModelRegistryClient):
        def __init__(self, registry_uri: str, tracking_uri: str, store: Any) -> None:
            self._mlops_store = store
            super().__init__(registry_uri, tracking_uri)

        @property
        def store(self) -> Any:
            return self._mlops_store

    class AuthedMlflowClient(MlflowClient):
        """``MlflowClient`` whose tracking, registry and proxied-artifact requests carry explicit credentials."""

        def __init__(self, settings: MlflowSettings) -> None:
            from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
            from mlflow.store.tracking.rest_store import RestStore

            super().__init__(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
            tracking_creds = host_creds_factory(settings, settings.tracking_uri)
            self._tracking_client = PinnedTrackingServiceClient(
                settings.tracking_uri, RestStore(tracking_creds), tracking_creds)
            self._registry_client_lazy = PinnedModelRegistryClient(
                settings.registry_uri, settings.tracking_uri,
                RegistryRestStore(host_creds_factory(settings, settings.registry_uri)))

        def _get_registry_client(self) -> Any:
            return self._registry_client_lazy

        def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
            return self._tracking_client.download_artifacts(run_id, path, dst_path)

    return {"client": AuthedMlflowClient, "artifacts_repo": AuthedArtifactsRepository}


def client_with_credentials(settings: MlflowSettings) -> MlflowClient:
    """An ``MlflowClient`` for ``settings`` whose requests carry its credentials (nothing set in os.environ)."""
    for uri in (settings.tracking_uri, settings.registry_uri):
        if not uri.startswith(("http://", "https://")):
            raise ValueError(
                f"credentials are set on the MLflow connection, but {uri!r} is not an http(s) tracking server; "
                "remove login/password/token from the connection or point it at the MLflow server"
            )
    return _classes()["client"](settings)
