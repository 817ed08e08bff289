"""A small client of MLflow's REST API (``/api/2.0/mlflow``) for the hot paths that only log: monitoring runs.

``import mlflow`` costs ~5 s (pandas, the genai and data packages) and its first request loads every
``mlflow.request_header_provider`` plugin (Feast registers one: ~8 s more). A drift check that logs a verdict, a few
metrics and two files needs none of that, so it talks to the documented REST API with the standard library: the
same endpoints ``MlflowClient`` calls (experiments/get-by-name, runs/search, runs/create, runs/log-batch,
runs/update) and, for a server that proxies artifacts (``mlflow-artifacts:`` URIs, the default of ``mlflow
server``), the artifact upload endpoint. Any other artifact store (``s3://`` written by the client itself, a local
path) goes through ``MlflowClient``: see ``MlflowHook.log_artifact``.

Credentials come from the connection (basic auth or a bearer token) and are sent as headers only.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_airflow.hooks._mlflow_settings import MlflowSettings

#: ``runs/log-batch`` limits (MLflow's REST API): 1000 metrics, 100 tags, and 1000 entries in all, per request.
MAX_METRICS = 1000
MAX_TAGS = 100
MAX_ENTRIES = 1000


class MlflowRestError(RuntimeError):
    """A failed MLflow REST call; ``error_code`` is MLflow's (e.g. ``RESOURCE_DOES_NOT_EXIST``) or ``HTTP_<n>``."""

    def __init__(self, message: str, error_code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status


class MlflowRestClient:
    """Tracking calls over HTTP(S) with the connection's credentials; no ``mlflow`` import.

    :param settings: the hook's ``MlflowSettings`` (tracking URI, auth, TLS).
    :param timeout_s: per request.
    """

    def __init__(self, settings: MlflowSettings, timeout_s: float = 30.0) -> None:
        if not settings.tracking_uri.startswith(("http://", "https://")):
            raise ValueError(f"the REST client needs an http(s) tracking URI, got {settings.tracking_uri!r}")
        self.base = settings.tracking_uri.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"
        elif settings.username:
            pair = f"{settings.username}:{settings.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._ssl = ssl._create_unverified_context() if settings.insecure_tls else None  # test servers only

    def __repr__(self) -> str:
        return f"MlflowRestClient({self.base!r})"

    # -- transport -------------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]) -> bytes:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._ssl) as resp:  # noqa: S310
                return resp.read()
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", "replace")
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            code = str(payload.get("error_code") or f"HTTP_{err.code}")
            message = str(payload.get("message") or body[:300] or err.reason)
            raise MlflowRestError(
                f"{method} {urllib.parse.urlsplit(url).path}: {code}: {message}", code, err.code
            ) from None
        except OSError as err:
            reason = getattr(err, "reason", err)
            raise MlflowRestError(f"{method} {self.base}: {type(err).__name__}: {reason}", "UNREACHABLE") from None

    def call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``endpoint`` under ``/api/2.0/mlflow/``; GET bodies become the query string."""
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        data = None
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        raw = self._request(method, url, data, self._headers)
        return json.loads(raw) if raw else {}

    # -- experiments and runs --------------------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing (another task creating it meanwhile is fine)."""
        try:
            experiment = self.call("GET", "experiments/get-by-name", {"experiment_name": name})["experiment"]
        except MlflowRestError as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        else:
            if experiment.get("lifecycle_stage") == "deleted":
                raise MlflowRestError(
                    f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or choose another "
                    "experiment_name",
                    "EXPERIMENT_DELETED",
                )
            return str(experiment["experiment_id"])
        try:
            return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])
        except MlflowRestError as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return str(
                self.call("GET", "experiments/get-by-name", {"experiment_name": name})["experiment"]["experiment_id"]
            )

    def search_runs(
        self, experiment_id: str, filter_string: str, max_results: int = 100, order_by: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        body = {
            "experiment_ids": [experiment_id],
            "filter": filter_string,
            "max_results": max_results,
            "order_by": list(order_by),
        }
        return list(self.call("POST", "runs/search", body).get("runs") or [])

    def create_run(self, experiment_id: str, tags: Mapping[str, str], run_name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "experiment_id": experiment_id,
            "start_time": int(time.time() * 1000),
            "tags": [{"key": k, "value": str(v)} for k, v in tags.items()],
        }
        if run_name:
            body["run_name"] = run_name
        return self.call("POST", "runs/create", body)["run"]

    def log_batch(
        self, run_id: str, metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """Metrics (step 0, now) and tags, split into requests within MLflow's limits."""
        now = int(time.time() * 1000)
        metric_rows = [{"key": k, "value": float(v), "timestamp": now, "step": 0} for k, v in (metrics or {}).items()]
        tag_rows = [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]
        while metric_rows or tag_rows:
            tags_now = tag_rows[:MAX_TAGS]
            metrics_now = metric_rows[: min(MAX_METRICS, MAX_ENTRIES - len(tags_now))]
            tag_rows, metric_rows = tag_rows[len(tags_now) :], metric_rows[len(metrics_now) :]
            self.call("POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics_now, "tags": tags_now})

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self.call("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})

    # -- artifacts -------------------------------------------------------------------------------------------------

    @staticmethod
    def proxies(artifact_uri: str) -> bool:
        """Whether the run's artifacts go through the tracking server (``mlflow-artifacts:``)."""
        return artifact_uri.startswith("mlflow-artifacts:")

    def upload_artifact(self, artifact_uri: str, local_path: str | Path, artifact_path: str | None = None) -> str:
        """PUT one file under ``<artifact_uri>/<artifact_path>/<name>`` (proxied artifacts only); returns its URI."""
        parts = urllib.parse.urlsplit(artifact_uri)
        if parts.scheme != "mlflow-artifacts":
            raise ValueError(f"not a proxied artifact URI: {artifact_uri!r}")
        base = f"{urllib.parse.urlsplit(self.base).scheme}://{parts.netloc}" if parts.netloc else self.base
        name = Path(local_path).name
        rel = "/".join(p.strip("/") for p in (parts.path, artifact_path or "", name) if p and p.strip("/"))
        url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(rel)}"
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        headers["Content-Type"] = "application/octet-stream"
        self._request("PUT", url, Path(local_path).read_bytes(), headers)
        return f"{artifact_uri.rstrip('/')}/{artifact_path.strip('/') + '/' if artifact_path else ''}{name}"
