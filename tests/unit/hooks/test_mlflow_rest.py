"""``MlflowRestClient`` against the session's real MLflow server (SQLite, proxied artifacts): experiments, runs,
batched metrics and tags, artifact upload, search by tags; and its errors (MLflow's codes, HTTP, unreachable).

The results are read back with ``MlflowClient``: what the REST client wrote is what MLflow's own client sees.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port
from mlops_airflow.hooks._mlflow_settings import MlflowSettings
from mlops_airflow.hooks.mlflow_rest import MAX_METRICS, MAX_TAGS, MlflowRestClient, MlflowRestError

pytestmark = pytest.mark.unit


def _settings(uri: str, **kw) -> MlflowSettings:
    return MlflowSettings(tracking_uri=uri, registry_uri=uri, ui_url=uri, **kw)


@pytest.fixture(scope="module")
def rest(mlflow_server) -> MlflowRestClient:
    return MlflowRestClient(_settings(mlflow_server + "/"))


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    client.search_experiments(max_results=1)  # the first request loads MLflow's header plugins (seconds)
    return client


def _name(prefix: str = "rest") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_only_http_tracking_uris(tmp_path):
    with pytest.raises(ValueError, match=r"the REST client needs an http\(s\) tracking URI, got 'file:///x'"):
        MlflowRestClient(_settings("file:///x"))
    with pytest.raises(ValueError, match="needs an http"):
        MlflowRestClient(_settings(str(tmp_path)))
    assert (
        repr(MlflowRestClient(_settings("https://mlflow.example.com/", token="t0k")))
        == "MlflowRestClient('https://mlflow.example.com')"
    )


def test_experiment_is_created_once_then_found(rest, client):
    name = _name()
    created = rest.experiment_id(name)
    assert rest.experiment_id(name) == created
    assert client.get_experiment_by_name(name).experiment_id == created
    existing = client.create_experiment(_name("made-by-client"))
    assert rest.experiment_id(client.get_experiment(existing).name) == existing


def test_a_deleted_experiment_is_an_error_with_the_next_step(rest, client):
    name = _name("deleted")
    client.delete_experiment(client.create_experiment(name))
    with pytest.raises(MlflowRestError, match=rf"MLflow experiment '{name}' is deleted; restore it") as err:
        rest.experiment_id(name)
    assert err.value.error_code == "EXPERIMENT_DELETED"


def test_run_lifecycle_batch_logging_artifacts_and_search(rest, client, tmp_path):
    experiment_id = rest.experiment_id(_name())
    keys = {"mlops.kind": "drift", "mlops.dag_id": "monitoring", "mlops.run_id": "run-1"}
    run = rest.create_run(experiment_id, {**keys, "mlflow.runName": "drift-check"}, run_name="drift-check")
    run_id, artifact_uri = run["info"]["run_id"], run["info"]["artifact_uri"]
    assert run["info"]["status"] == "RUNNING" and run["info"]["run_name"] == "drift-check"
    assert MlflowRestClient.proxies(artifact_uri), artifact_uri  # mlflow server --artifacts-destination

    # More than one request's worth of metrics, then of tags: split within MLflow's limits.
    metrics = {f"m{i}": i / 10 for i in range(MAX_METRICS + 5)}
    tags = {f"t{i}": i for i in range(MAX_TAGS + 3)}
    rest.log_batch(run_id, metrics={**metrics, "drift_share": 0.4})
    rest.log_batch(run_id, tags={**tags, "mlops.verdict": "failed"})
    rest.log_batch(run_id, metrics={"auc": 0.81}, tags={"mlops.kind_detail": "x"})
    rest.log_batch(run_id)  # nothing to log: no request, no error

    report = tmp_path / "drift_report.html"
    report.write_text("<html>report</html>")
    verdict = tmp_path / "drift_verdict.json"
    verdict.write_text(json.dumps({"passed": False}))
    uri = rest.upload_artifact(artifact_uri, report, "monitoring")
    assert uri == f"{artifact_uri}/monitoring/drift_report.html"
    assert rest.upload_artifact(artifact_uri, verdict) == f"{artifact_uri}/drift_verdict.json"
    rest.set_terminated(run_id)

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.end_time >= got.info.start_time
    assert got.data.metrics["drift_share"] == 0.4 and got.data.metrics[f"m{MAX_METRICS + 4}"] == pytest.approx(100.4)
    assert len([k for k in got.data.metrics if k.startswith("m")]) == MAX_METRICS + 5
    assert got.data.tags["t102"] == "102" and got.data.tags["mlops.verdict"] == "failed"
    assert {k: got.data.tags[k] for k in keys} == keys
    listed = {f.path for f in client.list_artifacts(run_id)} | {
        f.path for f in client.list_artifacts(run_id, "monitoring")
    }
    assert {"drift_verdict.json", "monitoring/drift_report.html"} <= listed
    local = client.download_artifacts(run_id, "monitoring/drift_report.html", str(tmp_path / "dl"))
    assert Path(local).read_text() == "<html>report</html>"

    # A retry finds its run by the identifying tags.
    other = rest.create_run(experiment_id, {**keys, "mlops.run_id": "run-2"})
    rest.set_terminated(other["info"]["run_id"], "FAILED")
    found = rest.search_runs(experiment_id, " and ".join(f"tags.`{k}` = '{v}'" for k, v in keys.items()))
    assert [r["info"]["run_id"] for r in found] == [run_id]
    both = rest.search_runs(experiment_id, "tags.`mlops.kind` = 'drift'", order_by=["attributes.start_time DESC"])
    assert [r["info"]["run_id"] for r in both] == [other["info"]["run_id"], run_id]
    assert client.get_run(other["info"]["run_id"]).info.status == "FAILED"
    assert rest.search_runs(experiment_id, "tags.`mlops.kind` = 'quality'") == []
    assert len(rest.search_runs(experiment_id, "", max_results=1)) == 1


def test_many_metrics_with_tags_are_split_within_the_total_limit(rest, client):
    experiment_id = rest.experiment_id(_name())
    run_id = rest.create_run(experiment_id, {})["info"]["run_id"]
    metrics = {f"m{i}": float(i) for i in range(MAX_METRICS)}
    rest.log_batch(run_id, metrics=metrics, tags={"mlops.verdict": "failed"})
    got = client.get_run(run_id).data
    assert len(got.metrics) == MAX_METRICS and got.tags["mlops.verdict"] == "failed"


def test_artifacts_must_be_proxied(rest, tmp_path):
    file = tmp_path / "x.json"
    file.write_text("{}")
    for uri in ("s3://bucket/1/abc/artifacts", "/tmp/mlruns/1/abc/artifacts", "file:///tmp/a"):
        assert not MlflowRestClient.proxies(uri)
        with pytest.raises(ValueError, match="not a proxied artifact URI"):
            rest.upload_artifact(uri, file)


def test_mlflow_s_error_codes_come_through(rest):
    with pytest.raises(MlflowRestError, match=r"GET /api/2.0/mlflow/runs/get: RESOURCE_DOES_NOT_EXIST: ") as err:
        rest.call("GET", "runs/get", {"run_id": "0" * 32})
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST" and err.value.status == 404
    with pytest.raises(MlflowRestError) as err:
        rest.call("POST", "runs/create", {"experiment_id": "999999999"})
    assert err.value.status is not None and err.value.status >= 400 and err.value.error_code
    with pytest.raises(MlflowRestError) as err:
        rest.call("GET", "no-such-endpoint")
    assert err.value.error_code.startswith(("HTTP_", "ENDPOINT_NOT_FOUND")) and err.value.status == 404


def test_an_unreachable_server_is_unreachable():
    dead = MlflowRestClient(_settings(f"http://127.0.0.1:{free_port()}"), timeout_s=2)
    with pytest.raises(MlflowRestError, match=r"GET http://127.0.0.1:\d+: URLError: ") as err:
        dead.experiment_id("anything")
    assert err.value.error_code == "UNREACHABLE" and err.value.status is None


class _Echo(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: bytes, ctype: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.path, dict(self.headers), None))
        if "teapot" in self.path:
            self._answer(418, b"<html>I'm a teapot</html>", "text/html")
        else:
            self._answer(200, b"")

    def do_PUT(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("PUT", self.path, dict(self.headers), body))
        self._answer(200, b"{}")


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_credentials_go_in_headers_only(echo, tmp_path):
    _Echo.seen.clear()
    basic = MlflowRestClient(_settings(echo, username="bot", password="pa55"))
    token = MlflowRestClient(_settings(echo, username="ignored", token="t0k"))
    anonymous = MlflowRestClient(_settings(echo))
    assert basic.call("GET", "experiments/get-by-name", {"experiment_name": "a b"}) == {}  # empty body: {}
    token.call("GET", "experiments/get-by-name", {"experiment_name": "x"})
    anonymous.call("GET", "experiments/get-by-name", {"experiment_name": "x"})
    auths = [headers.get("Authorization") for _, _, headers, _ in _Echo.seen]
    assert auths == [f"Basic {base64.b64encode(b'bot:pa55').decode()}", "Bearer t0k", None]
    assert _Echo.seen[0][1] == "/api/2.0/mlflow/experiments/get-by-name?experiment_name=a+b"
    assert "pa55" not in repr(basic) and "t0k" not in repr(token)

    # Uploads keep the credentials and send the bytes as they are, to the netloc the artifact URI names.
    file = tmp_path / "report.html"
    file.write_bytes(b"\x00<html>\xff")
    netloc = echo.removeprefix("http://")
    uri = basic.upload_artifact(f"mlflow-artifacts://{netloc}/3/abc/artifacts", file, "/monitoring/")
    assert uri == f"mlflow-artifacts://{netloc}/3/abc/artifacts/monitoring/report.html"
    method, path, headers, body = _Echo.seen[-1]
    assert (method, path, body) == (
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/3/abc/artifacts/monitoring/report.html",
        b"\x00<html>\xff",
    )
    assert headers["Content-Type"] == "application/octet-stream" and headers["Authorization"].startswith("Basic ")

    with pytest.raises(MlflowRestError, match=r"GET /api/2.0/mlflow/teapot: HTTP_418: <html>I'm a teapot") as err:
        basic.call("GET", "teapot")
    assert (err.value.error_code, err.value.status) == ("HTTP_418", 418)


def test_the_hook_hands_out_a_rest_client_with_its_connection(mlflow_server, monkeypatch):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_REST_TEST", json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}})
    )
    hook = MlflowHook(mlflow_conn_id="mlflow_rest_test")
    assert isinstance(hook.rest, MlflowRestClient) and hook.rest is hook.rest
    assert hook.rest.base == mlflow_server
    assert hook.rest.experiment_id(_name("via-hook"))
