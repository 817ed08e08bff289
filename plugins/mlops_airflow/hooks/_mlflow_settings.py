"""The resolved MLflow connection (tracking/registry/UI URIs and credentials), shared by the hook and its
clients without importing the hook (no import cycle, no Airflow import)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    registry_uri: str
    ui_url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    insecure_tls: bool = False

    def __repr__(self) -> str:  # never show secrets in logs
        auth = "token" if self.token else ("basic" if self.username else "none")
        return f"MlflowSettings(tracking_uri={self.tracking_uri!r}, registry_uri={self.registry_uri!r}, auth={auth})"

    __str__ = __repr__
