"""MLflow hook credentials: sent on every request, never written to os.environ, never logged.

Two servers:
- a tiny local HTTP endpoint that records the ``Authorization`` header of every request (always runs);
- a real MLflow server with ``--app-name basic-auth`` (needs Flask-WTF, i.e. ``mlflow[auth]``; skipped
  with that reason when it is not installed).
Runtime: ~2 s for the echo tests; +20-60 s to start the basic-auth server.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook

SECRET = "s3cret-Pa55-do-not-log"
TOKEN = "tok-abc-123-do-not-log"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path.startswith("/health"):
            self._reply({})
        elif "/runs/get" in self.path:
            info = {"run_id": "r1", "run_uuid": "r1", "experiment_id": "1", "status": "RUNNING",
                    "artifact_uri": "mlflow-artifacts:/1/r1/artifacts", "lifecycle_stage": "active"}
            self._reply({"run": {"info": info, "data": {}}})
        elif "/registered-models/get" in self.path:
            self._reply({"registered_model": {"name": "m", "aliases": []}})
        else:
            self._reply({"experiments": []})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(("POST", self.path, self.headers.get("Authorization")))
        self._reply({"experiments": []})

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(("PUT", self.path, self.headers.get("Authorization")))
        self._reply({})


@pytest.fixture(scope="module")
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _conn(monkeypatch, conn_id: str, uri: str, **fields) -> MlflowHook:
    extra = {"tracking_uri": uri, **fields.pop("extra", {})}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", "extra": extra, **fields}))
    return MlflowHook(mlflow_conn_id=conn_id)


def _mlflow_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


@pytest.mark.unit
def test_basic_and_token_auth_are_sent_and_env_untouched(echo_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    before = dict(os.environ)
    basic = _conn(monkeypatch, "mlflow_basic", echo_server, login="alice", password=SECRET)
    token = _conn(monkeypatch, "mlflow_token", echo_server, extra={"token": TOKEN})
    env_with_conns = dict(os.environ)
    assert env_with_conns  # (connections are the test's own env; the hook must add nothing)
    _Recorder.seen.clear()

    basic.get_client().search_experiments(max_results=1)
    token.get_client().search_experiments(max_results=1)
    auths = [a for _, path, a in _Recorder.seen if "experiments/search" in path]
    assert auths == [f"Basic {base64.b64encode(f'alice:{SECRET}'.encode()).decode()}", f"Bearer {TOKEN}"]

    # Artifacts proxied by the server (mlflow-artifacts:) carry the same credentials.
    _Recorder.seen.clear()
    uri = basic.log_json_artifact(basic.get_client(), "r1", {"a": 1}, "reproducibility/record.json")
    assert uri == "runs:/r1/reproducibility/record.json"
    puts = [(p, a) for m, p, a in _Recorder.seen if m == "PUT"]
    assert puts and puts[0][0].endswith("/1/r1/artifacts/reproducibility/record.json")
    assert puts[0][1].startswith("Basic ")

    # Nothing was written into the worker's environment; MLflow's env-based creds stay unset.
    assert _mlflow_env() == {k: v for k, v in env_with_conns.items() if k.startswith("MLFLOW_")}
    assert not {k for k in _mlflow_env() if k not in before}
    assert not [k for k, v in os.environ.items() if SECRET in v and not k.startswith("AIRFLOW_CONN_")]
    # The secret is in the child env of a job, and nowhere in logs or reprs.
    assert basic.job_env()["MLFLOW_TRACKING_PASSWORD"] == SECRET and token.job_env()["MLFLOW_TRACKING_TOKEN"] == TOKEN
    for text in (caplog.text, repr(basic.settings), str(basic.settings), repr(token.settings), repr(basic)):
        assert SECRET not in text and TOKEN not in text
    assert "auth=basic" in repr(basic.settings) and "auth=token" in repr(token.settings)


@pytest.mark.unit
def test_two_connections_in_parallel_threads_keep_their_own_credentials(echo_server, monkeypatch):
    """Why not os.environ: two tasks of one worker with different credentials must not mix them."""
    hooks = {f"user{i}": _conn(monkeypatch, f"mlflow_u{i}", echo_server, login=f"user{i}", password=f"pw{i}")
             for i in range(2)}
    clients = {user: hook.get_client() for user, hook in hooks.items()}
    _Recorder.seen.clear()

    def work(user: str) -> None:
        for _ in range(5):
            clients[user].search_experiments(max_results=1)

    threads = [threading.Thread(target=work, args=(u,)) for u in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = {base64.b64decode(a.split()[1]).decode() for _, p, a in _Recorder.seen if "search" in p}
    assert sent == {"user0:pw0", "user1:pw1"}


@pytest.mark.unit
def test_unreachable_server_fails_fast_with_the_next_step(monkeypatch):
    hook = _conn(monkeypatch, "mlflow_down", f"http://127.0.0.1:{free_port()}", login="a", password=SECRET)
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"unreachable .*nothing was changed.*Airflow retries") as err:
        hook.ensure_reachable(attempts=2, delay_s=0.1)
    assert time.monotonic() - start < 10 and SECRET not in str(err.value)


@pytest.mark.unit
def test_credentials_on_a_non_http_store_are_refused(monkeypatch, tmp_path):
    hook = _conn(monkeypatch, "mlflow_file", f"sqlite:///{tmp_path}/x.db", login="a", password=SECRET)
    with pytest.raises(ValueError, match="not an http\\(s\\) tracking server"):
        hook.get_client()


# ------------------------------------------------------------------------- a real auth server
def _flask_wtf_available() -> bool:
    proc = subprocess.run([sys.executable, "-c", "import flask_wtf"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    if not _flask_wtf_available():
        pytest.skip("MLflow's basic-auth app needs Flask-WTF (`mlflow[auth]`), not installed in the Airflow env")
    base = tmp_path_factory.mktemp("mlflow-auth")
    ini = base / "auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{base}/auth.db\nadmin_username = admin\nadmin_password = {SECRET}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, 9) if proc.poll() is None else None
                pytest.fail(f"basic-auth MLflow server did not start: {(base / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()


@pytest.mark.integration
def test_real_basic_auth_server_registry_artifacts_and_ledger(auth_server, monkeypatch, caplog):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlops_airflow.operators.promotion import move_alias, read_ledger

    caplog.set_level(logging.DEBUG)
    with pytest.raises(MlflowException, match="401"):
        MlflowClient(auth_server).search_experiments()  # proves the server requires auth
    wrong = _conn(monkeypatch, "mlflow_wrong", auth_server, login="admin", password="wrong")
    ok, message = wrong.test_connection()
    assert not ok and "401" in message

    hook = _conn(monkeypatch, "mlflow_auth", auth_server, login="admin", password=SECRET)
    env_before = dict(os.environ)
    client = hook.get_client()
    experiment = client.create_experiment("auth-test")
    run = client.create_run(experiment)
    hook.log_json_artifact(client, run.info.run_id, {"schema_version": 2}, "reproducibility/record.json")
    assert hook.load_json_artifact(client, run.info.run_id, "reproducibility/record.json") == {"schema_version": 2}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "reproducibility")] == [
        "reproducibility/record.json"]

    client.create_registered_model("auth_model")
    mv = client.create_model_version("auth_model", f"runs:/{run.info.run_id}/reproducibility", run.info.run_id)
    entry, changed = move_alias(client, model_name="auth_model", alias="champion", version=mv.version,
                                approval={"approved_by": "alice", "approved_at": "now", "policy": "hitl"},
                                context=make_context("promote"))
    assert changed and client.get_registered_model("auth_model").aliases == {"champion": mv.version}
    assert [e["version"] for e in read_ledger(client, "auth_model")] == [mv.version]

    assert _mlflow_env() == {k: v for k, v in env_before.items() if k.startswith("MLFLOW_")}
    assert not [k for k, v in os.environ.items() if SECRET in v and not k.startswith("AIRFLOW_CONN_")]
    assert SECRET not in caplog.text
