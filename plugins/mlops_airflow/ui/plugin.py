"""The pack's Airflow plugin (entry point ``airflow.plugins``).

- operator extra links, so the API server can render them for our operators;
- the "MLOps models" page: a FastAPI app mounted by the API server at ``/mlops`` (``ui/models_page.py``)
  and an external view that puts it in the UI's navigation, embedded at ``/plugin/mlops-models``. The UI
  embeds plugin pages in an iframe sandboxed without ``allow-popups``/``allow-top-navigation`` (Airflow
  3.3), where a ``target="_blank"`` link does nothing: the page's ``frame.js`` opens its links' new tabs
  from the Airflow window (same origin, not sandboxed) instead.

Every Airflow component loads plugins (scheduler, dag-processor, task processes); only the API server
serves the page. So the app is built on its first request (``_LazyApp``): importing this module costs
no FastAPI app and no route set-up elsewhere.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink

URL_PREFIX = "/mlops"


class _LazyApp:
    """An ASGI app that builds ``module:factory()`` on its first request and then delegates to it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._app: Any = None

    def _load(self) -> Any:
        if self._app is None:
            module, _, factory = self.target.partition(":")
            self._app = getattr(importlib.import_module(module), factory)()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._load()(scope, receive, send)

    def __repr__(self) -> str:
        return f"_LazyApp({self.target!r})"


models_app = _LazyApp("mlops_airflow.ui.models_page:create_app")


class MLOpsPlugin(AirflowPlugin):
    name = "mlops"
    operator_extra_links = [MlflowRunLink(), MlflowModelVersionLink(), EvidenceLink()]
    fastapi_apps = [{"app": models_app, "url_prefix": URL_PREFIX, "name": "MLOps models"}]
    # href is relative (no leading slash): the UI resolves it against its base URL, so the page also works
    # behind a reverse proxy that serves Airflow under a sub-path.
    external_views = [
        {"name": "MLOps models", "href": "mlops/", "destination": "nav", "url_route": "mlops-models",
         "icon": "mlops/icon.svg"}
    ]
