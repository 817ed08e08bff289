"""Asset URIs of the pack, and their normaliser as Airflow applies it to ``Asset(uri=...)``."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from mlops_airflow.assets import (
    dvc_asset_uri,
    feature_asset_uri,
    model_asset_uri,
    monitoring_asset_uri,
    sanitize_uri,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("repo", "path", "uri"),
    [
        ("/srv/data_repo", "data/customer_events", "dvc://data_repo/data/customer_events"),
        ("/srv/data_repo/", "/data/customer_events/", "dvc://data_repo/data/customer_events"),
        ("https://git.example.com/org/data.git", "x.parquet", "dvc://data/x.parquet"),
        ("git@git.example.com:org/features.git/", "defs", "dvc://features/defs"),
        ("data_repo", "data/events", "dvc://data_repo/data/events"),
        ("", "data/events", "dvc://repo/data/events"),
        (".git", "p", "dvc://repo/p"),
    ],
)
def test_dvc_asset_uri(repo, path, uri):
    assert dvc_asset_uri(repo, path) == uri


def test_model_monitoring_and_feature_uris():
    assert model_asset_uri("churn_classifier") == "mlflow://models/churn_classifier"
    assert monitoring_asset_uri("churn_classifier") == "mlops://monitoring/churn_classifier"
    assert feature_asset_uri("churn") == "feast://churn"
    assert feature_asset_uri("churn", "customer_features") == "feast://churn/customer_features"
    assert feature_asset_uri("churn", "/customer_features/") == "feast://churn/customer_features"
    assert feature_asset_uri("churn", "") == "feast://churn"


@pytest.mark.parametrize("project", ["", "a/b", "/churn"])
def test_feature_project_must_be_one_non_empty_name(project):
    with pytest.raises(ValueError, match="must be non-empty and contain no '/'"):
        feature_asset_uri(project, "view")


def test_sanitize_uri_requires_a_location_and_drops_the_trailing_slash():
    assert sanitize_uri(urlsplit("dvc://repo/data/events/")).geturl() == "dvc://repo/data/events"
    assert sanitize_uri(urlsplit("feast://churn/")).geturl() == "feast://churn"
    assert sanitize_uri(urlsplit("mlflow://models/m")).geturl() == "mlflow://models/m"
    for bad in ("dvc:///data", "mlflow:models/m", "feast://"):
        with pytest.raises(ValueError, match=r"asset URI needs a location, e\.g\. \w+://name/path"):
            sanitize_uri(urlsplit(bad))


def test_airflow_applies_the_handler_to_every_scheme_of_the_pack():
    """``get_provider_info`` registers ``sanitize_uri`` for dvc/mlflow/mlops/feast: ``Asset`` goes through it."""
    from airflow.sdk import Asset

    built = [
        dvc_asset_uri("data_repo", "data/customer_events"),
        model_asset_uri("churn"),
        monitoring_asset_uri("churn"),
        feature_asset_uri("churn", "customer_features"),
        feature_asset_uri("churn"),
    ]
    for uri in built:
        assert Asset(uri=uri).uri == uri
    assert Asset(uri="dvc://data_repo/data/customer_events/").uri == "dvc://data_repo/data/customer_events"
    assert Asset(uri="feast://churn/").uri == "feast://churn"
    with pytest.raises(ValueError, match="dvc:// asset URI needs a location"):
        Asset(uri="dvc:///data/customer_events")
