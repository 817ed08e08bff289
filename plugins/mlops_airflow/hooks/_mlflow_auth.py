"""Explicit credentials for MLflow clients, without touching ``os.environ``.

MLflow builds its REST stores from environment variables (``MLFLOW_TRACKING_TOKEN`` ...), which
would leak one task's credentials to every other task of a shared worker. Its stores take a
``get_host_creds`` callable, so we build the stores ourselves and hand them to the client.
Uses MLflow internals (the ``store`` property of ``TrackingServiceClient`` and
``ModelRegistryClient``), checked against mlflow 3.17; artifact uploads through the server's
proxy (``mlflow-artifacts:``) still read credentials from the environment, so jobs get them in
their child environment. the tests cover it so an upgrade that breaks it fails loudly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_airflow.hooks.mlflow_registry import MlflowSettings


def client_with_credentials(settings: MlflowSettings) -> MlflowClient:
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    def creds_for(uri: str):
        return lambda: MlflowHostCreds(
            host=uri, username=settings.username, password=settings.password, token=settings.token
        )

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    tracking_store = RestStore(creds_for(settings.tracking_uri))
    registry_store = RegistryRestStore(creds_for(settings.registry_uri))
    _pin_store(client._tracking_client, tracking_store)
    _pin_store(client._get_registry_client(), registry_store)
    return client


def _pin_store(service_client: object, store: object) -> None:
    """Make ``service_client.store`` (a plain property in MLflow) return ``store`` for this instance."""
    base = type(service_client)
    pinned = type(f"Pinned{base.__name__}", (base,), {"store": property(lambda self: self._mlops_store)})
    service_client._mlops_store = store  # type: ignore[attr-defined]
    service_client.__class__ = pinned
