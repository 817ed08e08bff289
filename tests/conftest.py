"""Shared fixtures. Airflow is configured for tests *before* it is imported anywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mlops-test-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__MLOPS__DATA_ROOT", str(_AIRFLOW_HOME / "data"))
os.environ.setdefault("AIRFLOW__MLOPS__INCLUDE_DIR", str(ROOT / "include"))
os.environ.setdefault("AIRFLOW__MLOPS__PROJECT_ROOT", str(ROOT))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REQUIRE_SERVICES = os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"
TRAIN_PYTHON = Path(os.environ.get("MLOPS_TRAIN_VENV", ROOT / ".venv-train")) / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Skip (with the reason) when a service is absent; fail instead under MLOPS_REQUIRE_SERVICES=1 (CI)."""
    if service_up(port):
        return
    msg = f"{name} is not reachable on 127.0.0.1:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{msg}, and MLOPS_REQUIRE_SERVICES=1 makes it mandatory")
    pytest.skip(msg)


def load_generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlops_generator", ROOT / "include" / "data" / "generator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generator():
    return load_generator()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server (SQLite backend, proxied file artifacts) on a free loopback port."""
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{base}/mlflow.db",
         "--artifacts-destination", str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=open(base / "server.log", "wb"),  # noqa: SIM115 - owned by the server process
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"MLflow server exited: {(base / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, 9)
        pytest.fail("MLflow server did not start in 240 s")
    yield uri
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's workers are in its process group
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


class S3Store:
    """A real S3 API (moto's server mode) on a free loopback port, with one bucket and an Airflow connection."""

    def __init__(self, endpoint: str, bucket: str, conn_id: str) -> None:
        self.endpoint, self.bucket, self.conn_id = endpoint, bucket, conn_id
        self.root = f"s3://{bucket}"
        self.conn_json = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                     "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def start_moto(base: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """moto's S3 server as a child process; returns (process, endpoint)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(base / f"moto-{port}.log", "wb"),  # noqa: SIM115 - owned by the server process
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service_up(port):
            return proc, endpoint
        if proc.poll() is not None:
            pytest.fail(f"moto server exited: {(base / f'moto-{port}.log').read_text()[-2000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, 9)
    pytest.fail("moto server did not start in 60 s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> str:
    """One moto S3 server for the session; its endpoint URL."""
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto"))
    yield endpoint
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


@pytest.fixture
def s3_store(s3_server, monkeypatch, request) -> S3Store:
    """A fresh bucket on the session's S3 server, the Airflow connection ``mlops_store`` to it, and
    ``[mlops] storage_conn_id`` set; ``store.root`` is ``s3://<bucket>``."""
    import re

    bucket = re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:50].strip("-") + f"-{free_port()}"
    store = S3Store(s3_server, bucket, "mlops_store")
    store.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STORE", store.conn_json)
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", store.conn_id)
    return store


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True,
        text=True,
    ).stdout


def make_dvc_repo(base: Path) -> dict:
    """Create a real git + DVC repository with a local remote under ``base``."""
    repo, remote = base / "data_repo", base / "remote"
    repo.mkdir()
    remote.mkdir()
    git(repo, "init", "-q", "-b", "main")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*dvc, "remote", "add", "-d", "local", str(remote)], cwd=repo, check=True, capture_output=True)
    git(repo, "add", ".dvc")
    git(repo, "commit", "-q", "-m", "init")
    return {"repo": repo, "remote": remote}


def dvc_conn(repo_info: dict) -> str:
    extra = {"repo_path": str(repo_info["repo"]), "remote": "local", "remote_url": str(repo_info["remote"])}
    return json.dumps({"conn_type": "dvc", "extra": extra})


@pytest.fixture
def dvc_repo(tmp_path) -> dict:
    """A real git + DVC repository with a local remote, and a matching Airflow connection (env)."""
    info = make_dvc_repo(tmp_path)
    old = os.environ.get("AIRFLOW_CONN_DVC_DEFAULT")
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = dvc_conn(info)
    yield info
    if old is None:
        os.environ.pop("AIRFLOW_CONN_DVC_DEFAULT", None)
    else:
        os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = old


class FakeTI:
    """Collects what an operator pushes to XCom (the Task SDK's TI needs a running supervisor)."""

    def __init__(self, task_id: str = "task", try_number: int = 1):
        self.task_id, self.try_number, self.dag_id, self.run_id = task_id, try_number, "test_dag", "test_run"
        self.xcom: dict = {}

    def xcom_push(self, key: str, value) -> None:
        self.xcom[key] = value


class OutletEvents(dict):
    def __missing__(self, key):
        from types import SimpleNamespace

        self[key] = SimpleNamespace(extra={})
        return self[key]


def make_context(task_id: str = "task", run_id: str = "test_run", try_number: int = 1) -> dict:
    from types import SimpleNamespace

    ti = FakeTI(task_id, try_number)
    ti.run_id = run_id
    return {"dag": SimpleNamespace(dag_id="test_dag"), "run_id": run_id, "ti": ti, "task_instance": ti,
            "outlet_events": OutletEvents()}


@pytest.fixture
def context():
    return make_context
