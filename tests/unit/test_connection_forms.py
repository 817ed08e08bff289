"""The pack's connection types render labelled form fields in the Airflow 3 UI (issue #15 item 1).

Airflow >= 3.2 builds the Add/Edit Connection form from the provider's declared ``conn-fields`` and
``ui-field-behaviour`` (``get_provider_info``), served by the UI's ``/ui/connections/hook_meta`` endpoint; the
hooks' ``get_connection_form_widgets`` path is deprecated and, without Flask-AppBuilder, returns no field at all.
This asks Airflow's own service (what that endpoint returns) for our three types, and checks each field name is a
key the hook really reads from the connection's extra (a form field the hook ignores would be a silent trap).
"""

from __future__ import annotations

import json
import warnings

import pytest

EXPECTED = {
    "mlflow": {"tracking_uri": "Tracking URI", "registry_uri": "Registry URI", "ui_url": "UI URL", "token": "Token",
               "insecure_tls": "Skip TLS verification"},
    "dvc": {"repo_path": "Working copy path", "repo_url": "Git URL", "branch": "Branch", "remote": "DVC remote name",
            "remote_url": "DVC remote URL", "endpoint_url": "DVC remote endpoint", "working_copy": "Working copy"},
    "feast": {"repo_path": "Feature repository path", "feature_store_yaml": "Store configuration file",
              "dvc_conn_id": "DVC connection", "repo_subdir": "Folder in the data repository",
              "data_paths": "DVC data paths"},
}


@pytest.fixture(scope="module")
def hook_meta() -> dict:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated hook-method path would warn
        return {m.connection_type: m for m in HookMetaService.hook_meta_data()}


@pytest.mark.parametrize("conn_type", sorted(EXPECTED))
def test_form_shows_labelled_fields(hook_meta: dict, conn_type: str) -> None:
    meta = hook_meta[conn_type]
    fields = meta.extra_fields or {}
    assert {name: f["schema"]["title"] for name, f in fields.items()} == EXPECTED[conn_type]
    if conn_type == "mlflow":
        assert fields["token"]["schema"]["format"] == "password"  # masked in the form, redacted in logs


def test_a_connection_saved_from_the_form_is_read_by_the_hooks(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The form stores each field under its name in extra: the hooks must read exactly those keys."""
    from mlops_airflow.hooks.feast_store import FeastHook
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    monkeypatch.setenv("AIRFLOW_CONN_FORM_MLFLOW", json.dumps({"conn_type": "mlflow", "extra": {
        "tracking_uri": "https://mlflow.example.com", "registry_uri": "https://registry.example.com",
        "ui_url": "https://ui.example.com", "token": "s3cr3t", "insecure_tls": True}}))
    s = MlflowHook(mlflow_conn_id="form_mlflow").settings
    assert (s.tracking_uri, s.registry_uri, s.ui_url, s.token, s.insecure_tls) == (
        "https://mlflow.example.com", "https://registry.example.com", "https://ui.example.com", "s3cr3t", True)
    assert "s3cr3t" not in repr(s)

    (tmp_path / "feature_store.prod.yaml").write_text("project: p\n")
    monkeypatch.setenv("AIRFLOW_CONN_FORM_FEAST", json.dumps({"conn_type": "feast", "extra": {
        "repo_path": str(tmp_path), "feature_store_yaml": "feature_store.prod.yaml"}}))
    hook = FeastHook(feast_conn_id="form_feast")
    assert hook.repo_path == tmp_path.resolve() and hook.config_file == "feature_store.prod.yaml"

    from mlops_airflow.hooks.dvc_repo import DvcHook

    monkeypatch.setenv("AIRFLOW_CONN_FORM_DVC", json.dumps({"conn_type": "dvc", "extra": {
        "repo_path": str(tmp_path), "repo_url": "git@host:org/data.git", "branch": "prod", "remote": "storage",
        "remote_url": "s3://bucket/dvc"}}))
    d = DvcHook(dvc_conn_id="form_dvc").settings
    assert (str(d.repo_path), d.repo_url, d.branch, d.remote, d.remote_url) == (
        str(tmp_path), "git@host:org/data.git", "prod", "storage", "s3://bucket/dvc")
