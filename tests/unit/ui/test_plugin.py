"""The pack's Airflow plugin as Airflow loads it, and the lazily built models app it mounts at ``/mlops``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlops_airflow.links.mlflow import EvidenceLink, MlflowModelVersionLink, MlflowRunLink
from mlops_airflow.ui.plugin import URL_PREFIX, MLOpsPlugin, _LazyApp, models_app

pytestmark = pytest.mark.unit


def test_plugin_declares_links_app_and_navigation_entry():
    assert MLOpsPlugin.name == "mlops"
    assert [type(link) for link in MLOpsPlugin.operator_extra_links] == [
        MlflowRunLink,
        MlflowModelVersionLink,
        EvidenceLink,
    ]
    assert MLOpsPlugin.fastapi_apps == [{"app": models_app, "url_prefix": "/mlops", "name": "MLOps models"}]
    assert URL_PREFIX == "/mlops"
    (view,) = MLOpsPlugin.external_views
    assert view["destination"] == "nav" and view["url_route"] == "mlops-models"
    # Relative, so the UI resolves it against its base URL (Airflow behind a reverse proxy under a sub-path).
    assert not view["href"].startswith("/") and view["href"] == f"{URL_PREFIX.lstrip('/')}/"
    assert view["icon"] == "mlops/icon.svg"
    assert repr(models_app) == "_LazyApp('mlops_airflow.ui.models_page:create_app')"


def test_airflow_s_plugins_manager_finds_it():
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [a for a in apps if a["url_prefix"] == URL_PREFIX] == [MLOpsPlugin.fastapi_apps[0]]
    external_views, _ = plugins_manager._get_ui_plugins()
    assert MLOpsPlugin.external_views[0] in external_views
    links = {type(link) for link in plugins_manager.get_operator_extra_links()}
    assert {MlflowRunLink, MlflowModelVersionLink, EvidenceLink} <= links
    assert not [e for e in plugins_manager.get_import_errors().values() if "mlops" in str(e)]


def test_importing_the_plugin_builds_no_app():
    """Every Airflow component loads plugins; only the API server should pay for the models page."""
    code = textwrap.dedent("""
        import sys
        from mlops_airflow.ui.plugin import models_app
        assert models_app._app is None
        assert "mlops_airflow.ui.models_page" not in sys.modules, "models page imported with the plugin"
        assert "mlflow" not in sys.modules, "mlflow imported with the plugin"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_lazy_app_builds_its_target_once_on_the_first_request(tmp_path, monkeypatch):
    import httpx

    (tmp_path / "lazy_target_app.py").write_text(
        textwrap.dedent("""
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        BUILT = []

        def factory():
            BUILT.append(1)
            return Starlette(routes=[Route("/hello", lambda request: PlainTextResponse("hi"))])
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazy_target_app

    app = _LazyApp("lazy_target_app:factory")
    assert lazy_target_app.BUILT == [] and repr(app) == "_LazyApp('lazy_target_app:factory')"

    async def calls():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return [await client.get("/hello"), await client.get("/hello"), await client.get("/nope")]

    import asyncio

    first, second, missing = asyncio.run(calls())
    assert (first.status_code, first.text, second.text, missing.status_code) == (200, "hi", "hi", 404)
    assert lazy_target_app.BUILT == [1]


def test_lazy_app_with_a_wrong_target_fails_on_the_request_not_on_import():
    app = _LazyApp("mlops_airflow.ui.no_such_module:create_app")
    with pytest.raises(ModuleNotFoundError):
        app._load()


def test_mounted_the_way_the_api_server_mounts_plugins_it_serves_the_models_app():
    """``airflow.api_fastapi.app.init_plugins`` mounts it; the real app answers (and asks for a login)."""
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    root = FastAPI()
    init_plugins(root)
    assert any(getattr(r, "path", None) == URL_PREFIX for r in root.routes)
    client = TestClient(root)
    for path in ("/mlops/", "/mlops/api/models", "/mlops/icon.svg"):
        assert client.get(path).status_code == 401, path  # no session cookie, no token
    assert models_app._app is not None and type(models_app._app).__name__ == "FastAPI"
