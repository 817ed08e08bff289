"""The Celery shape of docker-compose.celery.yaml on loopback, for tests/integration/test_multi_worker.py.

- PostgreSQL (127.0.0.1:5432): databases of its own for the Airflow metadata (and Celery's result backend), MLflow
  and the Feast SQL registry;
- Redis (127.0.0.1:6379): an empty DB index for the Celery broker and another for Feast's online store (claimed
  with a marker key, flushed at the end);
- an S3 API: moto's server behind a loopback TCP forwarder (:class:`Switch`); the forwarder is the endpoint every
  client uses, so the test can take "the S3 endpoint" down and bring it back on the same port while moto keeps
  its objects in memory;
- MLflow on PostgreSQL with ``--artifacts-destination s3://<bucket>/mlflow`` (MLFLOW_S3_ENDPOINT_URL);
- the DVC data repository served by ``git daemon`` (``git://127.0.0.1:<port>/data.git``), built by the compose
  stack's own ``docker/init_mlops.sh`` (MLOPS_DATA_REPO_URL), its remote ``s3://<bucket>/dvc``;
- Airflow 3 with the CeleryExecutor: api-server, scheduler, dag-processor, and two ``airflow celery worker``
  processes, each with a private AIRFLOW_HOME, working directory, HOME and TMPDIR; their Feast connection names
  the DVC connection (``dvc_conn_id``): each Feast task clones the data repository, whose root is the feature
  repository, and pulls ``data/customer_events`` (the offline source) into it;
  ``[mlops] data_root`` is ``s3://<bucket>/data``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TRAIN_PYTHON, free_port, start_moto

_SCHED = "mlops_it_test_scheduler_run"  # the name test_models_page.py loads it under: one module object
if _SCHED not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_SCHED, Path(__file__).with_name("test_scheduler_run.py"))
    sys.modules[_SCHED] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_SCHED])
sched = sys.modules[_SCHED]  # its REST, PostgreSQL and wait helpers

PG = "postgresql://postgres@127.0.0.1:5432"
WORKERS = ("worker-a", "worker-b")
OUTPUT = ROOT / "test-output"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Switch:
    """A loopback TCP forwarder to ``target_port``: ``down()`` closes its port and every open connection (clients
    get "connection refused", as from a store that is down), ``up()`` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        server, self._server = self._server, None
        if server:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)


def _claim_redis_dbs(count: int, marker: str) -> list[int]:
    """``count`` empty Redis DB indexes (15 down to 1), each claimed with a marker key at once."""
    import redis

    claimed = []
    for index in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=index)
        if client.dbsize() == 0 and client.set("mlops-multi-worker:claimed", marker, nx=True):
            claimed.append(index)
            if len(claimed) == count:
                return claimed
    pytest.skip(f"fewer than {count} empty Redis DB indexes (1-15) on 127.0.0.1:6379")


@dataclass
class MultiWorkerStack:
    base: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    redis_dbs: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_port: int = 0
    mlflow_port: int = 0
    git_port: int = 0
    token: str = ""
    bucket: str = ""
    moto_endpoint: str = ""
    switch: Switch | None = None
    moto: subprocess.Popen | None = None

    api_url = property(lambda self: f"http://127.0.0.1:{self.api_port}")
    mlflow_url = property(lambda self: f"http://127.0.0.1:{self.mlflow_port}")
    logs = property(lambda self: self.base / "logs")
    git_dir = property(lambda self: self.base / "git" / "data.git")
    repo_url = property(lambda self: f"git://127.0.0.1:{self.git_port}/data.git")
    feast_project = property(lambda self: f"churn_mw_{self.suffix}")

    def db(self, kind: str) -> str:
        return f"{kind}_mw_{self.suffix}"

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        for kind in ("airflow", "mlflow", "feast"):
            sched._psql(f"CREATE DATABASE {self.db(kind)}")
            self.databases.append(self.db(kind))
        broker_db, feast_db = self.redis_dbs = _claim_redis_dbs(2, self.suffix)
        clean = sched._clean_env()

        # The S3 API: moto behind the switch; one bucket for the data, the DVC remote and MLflow's artefacts.
        (self.base / "moto").mkdir()
        self.moto, self.moto_endpoint = start_moto(self.base / "moto")
        self.switch = Switch(int(self.moto_endpoint.rsplit(":", 1)[1]))
        self.switch.up()
        self.bucket = f"mlops-mw-{self.suffix}"
        self.s3().create_bucket(Bucket=self.bucket)
        endpoint = self.switch.endpoint

        # The data repository's git server.
        self.git_dir.parent.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.git_dir)], check=True)
        self.git_port = free_port()
        self._spawn("git-daemon", ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
                                   f"--base-path={self.git_dir.parent}", "--listen=127.0.0.1",
                                   f"--port={self.git_port}", str(self.git_dir.parent)], clean)

        # MLflow on PostgreSQL, artefacts on S3 (booting while airflow db migrate runs).
        self.mlflow_port, self.api_port = free_port(), free_port()
        self._spawn("mlflow", [
            str(sched.VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"{PG}/{self.db('mlflow')}",
            "--artifacts-destination", f"s3://{self.bucket}/mlflow", "--host", "127.0.0.1",
            "--port", str(self.mlflow_port), "--workers", "1",
        ], {**clean, **S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

        stack = sched._load_local_stack(self.base / "stack", self.mlflow_port, clean)
        with sched._environ(clean):
            env = stack.stack_env()
        store_conn = {"conn_type": "aws", "login": "testing", "password": "testing",
                      "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.db('airflow')}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{self.db('airflow')}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__FERNET_KEY": sched._fernet_key(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__MLOPS__DATA_ROOT": f"s3://{self.bucket}/data",
            "AIRFLOW__MLOPS__STORAGE_CONN_ID": "mlops_store",
            "AIRFLOW__MLOPS__APPROVAL_POLICY": "auto",
            "AIRFLOW_CONN_MLOPS_STORE": json.dumps(store_conn),
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow",
                                                       "extra": {"tracking_uri": self.mlflow_url}}),
            # No repo_path: every task clones the served repository into a temporary folder of its own.
            "AIRFLOW_CONN_DVC_DEFAULT": json.dumps({"conn_type": "dvc", "login": "testing", "password": "testing",
                                                    "extra": {"repo_url": self.repo_url, "branch": "main",
                                                              "remote": "storage",
                                                              "remote_url": f"s3://{self.bucket}/dvc"}}),
            "FEAST_REGISTRY_PATH": f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db('feast')}",
            "FEAST_REDIS_CONNECTION_STRING": f"127.0.0.1:6379,db={feast_db}",
            "MLOPS_S3_ENDPOINT_URL": endpoint,
        })
        env.pop("AIRFLOW_CONN_FEAST_DIABETES", None)  # the scenario runs the churn example only
        # The feature repository is the data repository's root (docker/init_mlops.sh): every Feast task clones it and
        # pulls the offline source's DVC path (the churn spec's dataset_path) into its clone.
        env["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps({"conn_type": "feast", "extra": {
            "dvc_conn_id": "dvc_default", "repo_subdir": ".", "feature_store_yaml": "feature_store.redis.yaml",
            "data_paths": ["data/customer_events"]}})
        self.env = env

        feast_src = self.base / "feast_repo"
        shutil.copytree(ROOT / "include" / "feast_repo", feast_src, ignore=shutil.ignore_patterns(".feast", "__py*"))
        for yaml_file in feast_src.glob("feature_store*.yaml"):
            yaml_file.write_text(yaml_file.read_text().replace("project: churn\n", f"project: {self.feast_project}\n"))
        self.timings["services_s"] = time.monotonic() - t0

        t1 = time.monotonic()
        _wait_port(self.git_port, "git daemon", self)
        init = subprocess.run(
            ["bash", str(ROOT / "docker" / "init_mlops.sh")],
            env={**env, "MLOPS_DATA_REPO_URL": self.repo_url, "MLOPS_FEAST_SRC": str(feast_src),
                 "DVC_REMOTE_URL": f"s3://{self.bucket}/dvc", "AIRFLOW_UID": str(os.getuid()),
                 "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(16), "TMPDIR": str(self._mkdir("init-tmp"))},
            capture_output=True, text=True, timeout=900, cwd=self.base)
        (self.logs / "airflow-init.log").write_text(init.stdout + init.stderr)
        assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
        self.timings["init_s"] = time.monotonic() - t1

        t2 = time.monotonic()
        airflow = str(sched.VENV_BIN / "airflow")
        self._spawn("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                   "--workers", "1"], env)
        self._spawn("scheduler", [airflow, "scheduler"], env)
        self._spawn("dag-processor", [airflow, "dag-processor"], env)
        for name in WORKERS:
            self._start_worker(name)
        sched._wait("MLflow /health", lambda: sched._http("GET", f"{self.mlflow_url}/health")[0] == 200, 240,
                    self.procs, self.logs)
        sched._wait("the api-server", lambda: sched._http("GET", f"{self.api_url}/api/v2/monitor/health")[0] == 200,
                    240, self.procs, self.logs)
        status, body = sched._http("GET", f"{self.api_url}/auth/token")
        assert status in (200, 201) and body.get("access_token"), (status, body)
        self.token = body["access_token"]
        for name in WORKERS:
            sched._wait(f"Celery {name} ready", lambda n=name: b" ready." in (self.logs / f"{n}.log").read_bytes(),
                        240, self.procs, self.logs)
        self.timings["airflow_start_s"] = time.monotonic() - t2
        self.timings["boot_s"] = time.monotonic() - t0

    def _start_worker(self, name: str) -> None:
        root = self._mkdir(name)
        dirs = {part: self._mkdir(f"{name}/{part}") for part in ("airflow", "home", "tmp", "work")}
        for path in (root, *dirs.values()):
            path.chmod(0o700)
        env = {**self.env, "AIRFLOW_HOME": str(dirs["airflow"]), "HOME": str(dirs["home"]), "TMPDIR": str(dirs["tmp"]),
               "MLOPS_WORKER_NAME": name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": "_multi_hostname.hostname",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), self.env.get("PYTHONPATH")]))}
        self.workers[name] = {"root": root, **dirs, "env": env}
        self._spawn(name, [str(sched.VENV_BIN / "airflow"), "celery", "worker", "--concurrency", "2",
                           "--skip-serve-logs", "--celery-hostname", f"{name}@%h", "--without-gossip"],
                    env, cwd=dirs["work"])

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.switch:
            self.switch.down()
        if self.moto and self.moto.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.moto.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.moto.wait(timeout=10)
        with contextlib.suppress(Exception):
            import redis

            for index in self.redis_dbs:
                redis.Redis(host="127.0.0.1", port=6379, db=index).flushdb()
        for db in self.databases:
            with contextlib.suppress(Exception):
                sched._psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        kept = OUTPUT / "multi_worker_logs"
        with contextlib.suppress(Exception):
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(self.logs, kept)
            for name, worker in self.workers.items():
                if (worker["airflow"] / "logs").is_dir():
                    shutil.copytree(worker["airflow"] / "logs", kept / name)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- what the test uses ----------------------------------------------------------------------------------------
    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.moto_endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def s3_bytes(self, prefix: str) -> int:
        """Sum of the object sizes under ``prefix`` (read from moto directly, not through the switch)."""
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sum(o["Size"] for page in pages for o in page.get("Contents", []))

    def clean_worker_dirs(self) -> None:
        """Empty every worker's TMPDIR, HOME and working directory (between DAG runs: the workers are idle), so that
        a task can only find what a task of another run left through the store, git or MLflow."""
        for worker in self.workers.values():
            for part in ("tmp", "home", "work"):
                for child in worker[part].iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)

    def commits(self) -> list[str]:
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", "log", "--format=%s", "main"], capture_output=True,
                              text=True, check=True)
        return proc.stdout.splitlines()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = sched._query(
            "SELECT task_id, map_index, state, hostname, try_number, executor FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY start_date", self.db("airflow"), (dag_id, run_id))
        return [dict(zip(("task_id", "map_index", "state", "hostname", "try_number", "executor"), r, strict=True))
                for r in rows]

    def xcom_values(self, dag_id: str, run_id: str) -> dict[str, Any]:
        rows = sched._query("SELECT task_id, map_index, key, value::text FROM xcom WHERE dag_id = %s AND run_id = %s",
                            self.db("airflow"), (dag_id, run_id))
        return {f"{task}[{index}].{key}": value for task, index, key, value in rows}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        texts = []
        for worker in self.workers.values():
            folder = worker["airflow"] / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
            texts += [p.read_text(errors="replace") for p in folder.glob(f"**/attempt={try_number}.log")]
        return "\n".join(texts)

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """Task states (with the worker), each failed try's error records, and the tail of any process that died."""
        lines = [f"{ti['task_id']}[{ti['map_index']}]: {ti['state']} on {ti['hostname']} (try {ti['try_number']})"
                 for ti in self.task_instances(dag_id, run_id)]
        for worker in self.workers.values():
            for log in sorted((worker["airflow"] / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/**/*.log")):
                errors = _error_records(log)
                if errors:
                    lines.append(f"--- {log.relative_to(worker['airflow'] / 'logs')}")
                    lines += errors[-6:]
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                lines.append(f"--- {name} exited {proc.returncode}\n"
                             f"{(self.logs / f'{name}.log').read_text(errors='replace')[-1500:]}")
        return "\n".join(lines)[:20000]

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _mkdir(self, rel: str) -> Path:
        path = self.base / rel
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child process
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=cwd or self.base)


def _wait_port(port: int, what: str, stack: MultiWorkerStack) -> None:
    from conftest import service_up

    sched._wait(what, lambda: service_up(port), 60, stack.procs, stack.logs)


def _error_records(log: Path) -> list[str]:
    """The error records of one task log (JSON lines), each as ``event: exc_type: exc_value``."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or str(record.get("level", "")).lower() not in ("error", "critical"):
            continue
        detail = "; ".join(f"{d.get('exc_type')}: {d.get('exc_value')}" for d in record.get("error_detail") or [])
        found.append(f"{record.get('event', '')}: {detail}"[:1500])
    return found


def training_venv_present() -> bool:
    return TRAIN_PYTHON.exists()
