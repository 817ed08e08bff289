"""MLflow hook: connection type ``mlflow`` -> tracking/registry client and the job environment.

Connection fields:
- host/port/schema, or ``extra.tracking_uri`` (wins): the tracking server, e.g. ``http://127.0.0.1:5055``;
- ``extra.registry_uri``: a separate model registry (defaults to the tracking URI);
- login/password: basic auth; ``extra.token`` (or password without login): bearer token;
- ``extra.ui_url``: the address people open in a browser, when it differs from the tracking URI.

Credentials are handed to the training job's *child* environment only; this hook never writes
them into ``os.environ`` of the (shared) worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    registry_uri: str
    ui_url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never show secrets in logs
        return f"MlflowSettings(tracking_uri={self.tracking_uri!r}, registry_uri={self.registry_uri!r})"


class MlflowHook(BaseHook):
    """Talks to an MLflow tracking server and model registry.

    :param mlflow_conn_id: Airflow connection of type ``mlflow``.
    :param tracking_uri: explicit tracking URI; wins over the connection.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self._explicit_tracking_uri = tracking_uri

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"host": "Tracking server host", "schema": "Scheme (http/https)"},
            "placeholders": {
                "host": "mlflow.example.com",
                "extra": '{"tracking_uri": "https://mlflow.example.com", "registry_uri": null, "ui_url": null}',
            },
        }

    @cached_property
    def settings(self) -> MlflowSettings:
        if self._explicit_tracking_uri:
            uri = self._explicit_tracking_uri
            return MlflowSettings(tracking_uri=uri, registry_uri=uri, ui_url=uri)
        conn = self.get_connection(self.mlflow_conn_id)
        extra = conn.extra_dejson
        uri = extra.get("tracking_uri")
        if not uri:
            if not conn.host:
                raise ValueError(
                    f"Connection {self.mlflow_conn_id!r} names no MLflow server: set extra.tracking_uri "
                    "or host/port, e.g. AIRFLOW_CONN_MLFLOW_DEFAULT='{\"conn_type\": \"mlflow\", "
                    "\"extra\": {\"tracking_uri\": \"http://127.0.0.1:5055\"}}'"
                )
            scheme = conn.schema or "http"
            uri = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
        token = extra.get("token") or (conn.password if conn.password and not conn.login else None)
        return MlflowSettings(
            tracking_uri=uri.rstrip("/"),
            registry_uri=(extra.get("registry_uri") or uri).rstrip("/"),
            ui_url=(extra.get("ui_url") or uri).rstrip("/"),
            username=conn.login or None,
            password=conn.password if conn.login else None,
            token=token,
        )

    def get_conn(self) -> MlflowClient:
        return self.get_client()

    def get_client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this connection's tracking and registry URIs."""
        from mlflow import MlflowClient

        s = self.settings
        if s.username or s.token:
            from mlops_airflow.hooks._mlflow_auth import client_with_credentials

            return client_with_credentials(s)
        return MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri)

    def job_env(self) -> dict[str, str]:
        """Environment for a training/scoring job (a child process or a pod), credentials included.

        Only for a child's environment: never merge it into ``os.environ`` of this process.
        """
        s = self.settings
        env = {"MLFLOW_TRACKING_URI": s.tracking_uri, "MLFLOW_REGISTRY_URI": s.registry_uri}
        if s.username:
            env["MLFLOW_TRACKING_USERNAME"] = s.username
            env["MLFLOW_TRACKING_PASSWORD"] = s.password or ""
        if s.token:
            env["MLFLOW_TRACKING_TOKEN"] = s.token
        return env

    # Links people open from the Airflow UI.
    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.settings.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, name: str, version: str | int) -> str:
        return f"{self.settings.ui_url}/#/models/{name}/versions/{version}"

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_client().search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 - the UI wants the message, not a traceback
            return False, f"MLflow at {self.settings.tracking_uri} is not reachable: {err}"
        return True, f"MLflow at {self.settings.tracking_uri} answered"
