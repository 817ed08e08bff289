"""Provider metadata, entry points and the plugin, as Airflow discovers them."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mlops_airflow.assets import dvc_asset_uri, model_asset_uri, sanitize_uri
from mlops_airflow.get_provider_info import get_provider_info

pytestmark = pytest.mark.unit


def test_provider_info_matches_airflow_schema():
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert {c["connection-type"] for c in info["connection-types"]} == {"mlflow", "dvc", "feast"}


def test_every_class_named_in_provider_info_imports():
    import importlib

    info = get_provider_info()
    names = [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]
    names += [p["plugin-class"] for p in info["plugins"]]
    for dotted in names:
        module, _, attr = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), dotted
    # Every module listed for operators, sensors and triggers imports (and lists what the package has).
    for kind in ("operators", "sensors", "triggers", "hooks"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    listed = {m for e in info["operators"] for m in e["python-modules"]}
    package = Path(__file__).resolve().parents[2] / "plugins" / "mlops_airflow" / "operators"
    assert listed == {f"mlops_airflow.operators.{f.stem}" for f in package.glob("*.py") if not f.stem.startswith("_")}


def test_entry_points_are_registered():
    providers = {ep.value for ep in entry_points(group="apache_airflow_provider")}
    plugins = {ep.value for ep in entry_points(group="airflow.plugins")}
    assert "mlops_airflow.get_provider_info:get_provider_info" in providers
    assert "mlops_airflow.ui.plugin:MLOpsPlugin" in plugins


def test_airflow_cli_lists_provider_and_plugin():
    """What `airflow providers list` and `airflow plugins` show, in a fresh process."""
    bin_dir = Path(sys.executable).parent
    providers = subprocess.run([str(bin_dir / "airflow"), "providers", "list", "-o", "json"], capture_output=True,
                               text=True, timeout=300)
    assert providers.returncode == 0, providers.stderr[-2000:]
    assert "airflow-provider-mlops" in providers.stdout
    plugins = subprocess.run([str(bin_dir / "airflow"), "plugins", "-o", "json"], capture_output=True, text=True,
                             timeout=300)
    assert plugins.returncode == 0, plugins.stderr[-2000:]
    assert '"mlops"' in plugins.stdout


def test_asset_uris():
    assert dvc_asset_uri("/srv/data_repo/", "data/customer_events/") == "dvc://data_repo/data/customer_events"
    assert dvc_asset_uri("git@host:org/data.git", "x.parquet") == "dvc://data.git".replace(".git", "") + "/x.parquet"
    assert model_asset_uri("churn") == "mlflow://models/churn"
    assert sanitize_uri(urlsplit("dvc://repo/data/")).path == "/data"
    with pytest.raises(ValueError, match="needs a location"):
        sanitize_uri(urlsplit("dvc:///data"))


def test_hooks_resolve_connections(monkeypatch):
    from mlops_airflow.hooks.dvc_repo import DvcHook
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "mlflow", "host": "mlflow.internal", "port": 5000, "schema": "https", "login": "bot",
         "password": "s3cret"}))
    s = MlflowHook().settings
    assert s.tracking_uri == "https://mlflow.internal:5000" and s.username == "bot"
    assert "s3cret" not in repr(s)
    env = MlflowHook().job_env()
    assert env["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    import os

    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # only the child's environment gets it

    monkeypatch.setenv("AIRFLOW_CONN_DVC_DEFAULT", json.dumps(
        {"conn_type": "dvc", "login": "AKIA", "password": "secret-key",
         "extra": {"repo_path": "/tmp/r", "remote": "s3", "remote_url": "s3://b/dvc"}}))
    d = DvcHook().settings
    assert (d.remote, d.remote_url, d.branch) == ("s3", "s3://b/dvc", "main")
    assert "secret-key" not in repr(d)
    assert DvcHook()._child_env()["AWS_SECRET_ACCESS_KEY"] == "secret-key"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
