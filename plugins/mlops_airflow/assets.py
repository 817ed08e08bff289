"""Asset URIs of the pack and their normaliser.

- ``dvc://<repo>/<path>``: a DVC-tracked dataset; every new version is an asset event whose
  extras carry ``{rev, md5, size, rows}``.
- ``mlflow://models/<name>``: a registered model; every alias move is an asset event.
- ``mlops://monitoring/<model>``: a failing monitoring verdict (retraining trigger).
- ``feast://<project>/<feature view>``: features materialised to the online store; the event extra records
  the materialised windows ``{project, feature_views, start, end, windows: [...]}``.
- ``feast://<project>``: the feature definitions of a project were applied (CI/CD DAG).
"""

from __future__ import annotations

from urllib.parse import SplitResult


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow asset-URI handler: require a location and drop a trailing slash."""
    if not uri.netloc:
        raise ValueError(f"{uri.scheme}:// asset URI needs a location, e.g. {uri.scheme}://name/path")
    return uri._replace(path=uri.path.rstrip("/"))


def dvc_asset_uri(repo: str, path: str) -> str:
    """``dvc://<repo name>/<path inside repo>``; the repo name is the last part of its URL or path."""
    name = repo.rstrip("/").split("/")[-1].removesuffix(".git") or "repo"
    return f"dvc://{name}/{path.strip('/')}"


def model_asset_uri(model_name: str) -> str:
    return f"mlflow://models/{model_name}"


def monitoring_asset_uri(model_name: str) -> str:
    return f"mlops://monitoring/{model_name}"


def feature_asset_uri(project: str, view: str | None = None) -> str:
    """``feast://<project>/<view>`` (materialised features) or ``feast://<project>`` (applied definitions)."""
    if not project or "/" in project:
        raise ValueError(f"Feast project name {project!r} must be non-empty and contain no '/'")
    return f"feast://{project}/{view.strip('/')}" if view else f"feast://{project}"
