"""The CT DAG under a real scheduler: the production shape, on loopback.

Starts, each with its own fresh state:
- PostgreSQL databases (127.0.0.1:5432): Airflow metadata, MLflow backend store, Feast SQL registry;
- an MLflow server on the PostgreSQL backend (free port, proxied file artifacts);
- the environment of ``scripts/local_stack.py`` (``stack_env``, under a tmp MLOPS_LOCAL_DIR) turned into the
  production shape, and the compose stack's own init step ``docker/init_mlops.sh``: ``airflow db migrate``,
  the DVC data repository with the Feast repository inside, ``feast apply`` with the production config
  ``include/feast_repo/feature_store.redis.yaml`` (Redis online store on 127.0.0.1:6379 in an empty DB index
  and under a project name of its own, SQL registry on PostgreSQL);
- Airflow 3 with LocalExecutor: ``api-server`` (free port), ``scheduler`` and ``dag-processor`` as
  subprocesses with their own AIRFLOW_HOME.

Then it triggers ``mlops_continuous_training`` through the REST API (JWT from the simple auth manager),
waits for success, and checks the run's XCom, the MLflow registry, the Airflow metadata in PostgreSQL and
the features in Redis. ``test_models_page.py`` reuses the running stack (one per pytest session).

Skips with the reason when PostgreSQL, Redis or the training venv are absent (fails instead under
MLOPS_REQUIRE_SERVICES=1, as in CI). Wall time: written to ``test-output/scheduler_run_timing.json``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REQUIRE_SERVICES, ROOT, TRAIN_PYTHON, free_port, require_service

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

DAG_ID = "mlops_continuous_training"
DAY = "2026-11-10"
PG = "postgresql://postgres@127.0.0.1:5432"
VENV_BIN = Path(sys.executable).parent
OUTPUT = ROOT / "test-output"
STASH = "_mlops_airflow_stack"  # the running stack, shared with test_models_page.py (one per pytest session)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Run a block with exactly ``values`` as os.environ (restored afterwards)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _clean_env() -> dict[str, str]:
    """This process's environment without the Airflow/MLOps settings of the test session (conftest.py)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_", "FEAST_"))}


def _psql(sql: str, db: str = "postgres") -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _query(sql: str, db: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _http(method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    except (urllib.error.URLError, OSError):  # not listening (yet)
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


def _wait(what: str, probe, timeout_s: float, procs: dict[str, subprocess.Popen], logs: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(2)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; logs in {logs}")


def _load_local_stack(local_dir: Path, mlflow_port: int, env: dict[str, str]):
    """scripts/local_stack.py as a module whose paths point at ``local_dir`` (its constants are read at import)."""
    spec = importlib.util.spec_from_file_location(f"mlops_local_stack_{uuid.uuid4().hex[:6]}",
                                                  ROOT / "scripts" / "local_stack.py")
    module = importlib.util.module_from_spec(spec)
    with _environ({**env, "MLOPS_LOCAL_DIR": str(local_dir), "MLOPS_MLFLOW_PORT": str(mlflow_port),
                   "MLOPS_TRAIN_VENV": str(TRAIN_PYTHON.parent.parent)}):
        spec.loader.exec_module(module)
    return module


def _pick_redis_db() -> int:
    """An empty Redis DB index (15 down to 1): other users of this Redis keep theirs."""
    import redis

    for index in range(15, 0, -1):
        if redis.Redis(host="127.0.0.1", port=6379, db=index).dbsize() == 0:
            return index
    pytest.skip("no empty Redis DB index (1-15) on 127.0.0.1:6379")


@dataclass
class AirflowStack:
    base: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    redis_db: int = 0
    api_port: int = 0
    mlflow_port: int = 0
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    run: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    data_repo: Path | None = None
    task_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def feast_project(self) -> str:
        return f"churn_it_{self.suffix}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    def db(self, kind: str) -> str:
        return f"{kind}_it_{self.suffix}"

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        for kind in ("airflow", "mlflow", "feast"):
            _psql(f"CREATE DATABASE {self.db(kind)}")
            self.databases.append(self.db(kind))
        self.redis_db = _pick_redis_db()
        self.api_port, self.mlflow_port = free_port(), free_port()
        clean = _clean_env()
        stack = _load_local_stack(self.base / "stack", self.mlflow_port, clean)

        # MLflow on PostgreSQL (the local stack's server uses SQLite; this one is the production shape).
        self._spawn("mlflow", [
            str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"{PG}/{self.db('mlflow')}",
            "--artifacts-destination", str(self.base / "mlflow-artifacts"), "--host", "127.0.0.1",
            "--port", str(self.mlflow_port), "--workers", "1",
        ], {**clean, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

        # The local stack's environment (AIRFLOW_HOME, dags/plugins folders, [mlops] config, PATH), turned into
        # the production shape: PostgreSQL metadata, LocalExecutor, the connections as docker-compose.yaml
        # writes them (DVC remote 'storage' - a local folder here instead of MinIO -, Feast on Redis).
        with _environ(clean):
            env = stack.stack_env()
        self.data_repo = stack.DATA_REPO
        remote = stack.DVC_REMOTE
        remote.mkdir(parents=True, exist_ok=True)
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.db('airflow')}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "mlflow", "extra": {"tracking_uri": self.mlflow_url}}),
            "AIRFLOW_CONN_DVC_DEFAULT": json.dumps({"conn_type": "dvc", "extra": {
                "repo_path": str(self.data_repo), "branch": "main", "remote": "storage", "remote_url": str(remote)}}),
            "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps({"conn_type": "feast", "extra": {
                "repo_path": str(self.data_repo), "feature_store_yaml": "feature_store.redis.yaml"}}),
            "FEAST_REGISTRY_PATH": f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db('feast')}",
            "FEAST_REDIS_CONNECTION_STRING": f"127.0.0.1:6379,db={self.redis_db}",
        })
        self.env = env

        # The compose stack's init step (docker/init_mlops.sh): db migrate, DVC data repository with the Feast
        # repository inside, feast apply with feature_store.redis.yaml (Redis online store, SQL registry) -
        # under a project name of this stack's own, so its Redis keys and registry rows are its alone.
        feast_src = self.base / "feast_repo"
        shutil.copytree(ROOT / "include" / "feast_repo", feast_src, ignore=shutil.ignore_patterns(".feast", "__py*"))
        redis_yaml = feast_src / "feature_store.redis.yaml"
        assert "project: churn\n" in redis_yaml.read_text()
        redis_yaml.write_text(redis_yaml.read_text().replace("project: churn\n", f"project: {self.feast_project}\n"))
        self.timings["services_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        init = subprocess.run(
            ["bash", str(ROOT / "docker" / "init_mlops.sh")],
            env={**env, "MLOPS_DATA_REPO": str(self.data_repo), "MLOPS_FEAST_SRC": str(feast_src),
                 "DVC_REMOTE_URL": str(remote), "AIRFLOW_UID": str(os.getuid()),
                 "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(16)},
            capture_output=True, text=True, timeout=900, cwd=self.base)
        (self.logs / "airflow-init.log").write_text(init.stdout + init.stderr)
        assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
        self.timings["init_s"] = time.monotonic() - t1

        t2 = time.monotonic()
        airflow = str(VENV_BIN / "airflow")
        self._spawn("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                   "--workers", "1"], env)
        self._spawn("scheduler", [airflow, "scheduler"], env)
        self._spawn("dag-processor", [airflow, "dag-processor"], env)
        _wait("MLflow /health", lambda: _http("GET", f"{self.mlflow_url}/health")[0] == 200, 240, self.procs,
              self.logs)
        _wait("the api-server", lambda: _http("GET", f"{self.api_url}/api/v2/monitor/health")[0] == 200, 240,
              self.procs, self.logs)
        status, body = _http("GET", f"{self.api_url}/auth/token")
        assert status in (200, 201) and body.get("access_token"), (status, body)
        self.token = body["access_token"]
        self.timings["airflow_start_s"] = time.monotonic() - t2

    def run_dag(self) -> None:
        t0 = time.monotonic()
        dag_url = f"{self.api_url}/api/v2/dags/{DAG_ID}"

        def parsed() -> bool:
            status, body = _http("GET", dag_url, self.token)
            return status == 200 and not body.get("has_import_errors")

        try:
            _wait(f"the dag-processor to parse {DAG_ID}", parsed, 300, self.procs, self.logs)
        except pytest.fail.Exception:
            errors = _http("GET", f"{self.api_url}/api/v2/importErrors", self.token)[1]
            pytest.fail(f"{DAG_ID} was not parsed in 300 s; import errors: {json.dumps(errors)[:3000]}")
        self.timings["dag_parsed_s"] = time.monotonic() - t0

        status, body = _http("POST", f"{dag_url}/dagRuns", self.token,
                             {"logical_date": None, "conf": {"day": DAY}})
        assert status == 200, (status, body)
        self.run_id = body["dag_run_id"]
        t1 = time.monotonic()
        run_url = f"{dag_url}/dagRuns/{urllib.request.quote(self.run_id, safe='')}"

        def finished() -> dict | None:
            status, run = _http("GET", run_url, self.token)
            return run if status == 200 and run.get("state") in ("success", "failed") else None

        self.run = _wait(f"the DAG run {self.run_id}", finished, 900, self.procs, self.logs)
        self.timings["dag_run_s"] = time.monotonic() - t1
        self.task_seconds = {task: round(float(sec or 0), 1) for task, sec in _query(
            "SELECT task_id, extract(epoch FROM end_date - start_date) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY start_date", self.db("airflow"), (DAG_ID, self.run_id))}
        if self.run["state"] == "success":
            status, xcom = _http("GET", f"{run_url}/taskInstances/summarize/xcomEntries/return_value"
                                        "?deserialize=true&stringify=false", self.token)
            assert status == 200, (status, xcom)
            value = xcom["value"]
            self.summary = json.loads(value) if isinstance(value, str) else value

    def failure_report(self) -> str:
        """Task states and the last log lines of failed tasks (what an on-call engineer would look at)."""
        run_url = f"{self.api_url}/api/v2/dags/{DAG_ID}/dagRuns/{urllib.request.quote(self.run_id, safe='')}"
        _, tis = _http("GET", f"{run_url}/taskInstances", self.token)
        lines = []
        for ti in (tis or {}).get("task_instances", []):
            lines.append(f"{ti['task_id']}: {ti['state']} (try {ti.get('try_number')})")
        for log in sorted(Path(self.env.get("AIRFLOW_HOME", self.base)).glob("logs/**/*.log")):
            text = log.read_text(errors="replace")
            if "ERROR" in text or "Traceback" in text:
                lines.append(f"--- {log.relative_to(self.base)}\n{text[-2500:]}")
        for name in self.procs:
            lines.append(f"--- {name}.log\n{(self.logs / f'{name}.log').read_text(errors='replace')[-1500:]}")
        return "\n".join(lines)[-12000:]

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
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
        with contextlib.suppress(Exception):
            self._delete_redis_keys()
        for db in self.databases:
            with contextlib.suppress(Exception):
                _psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        # Keep the process and task logs next to the screenshots (small; what to read when CI fails).
        kept = OUTPUT / "scheduler_run_logs"
        with contextlib.suppress(Exception):
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(self.logs, kept)
            task_logs = Path(self.env.get("AIRFLOW_HOME", self.base / "none")) / "logs"
            if task_logs.is_dir():
                shutil.copytree(task_logs, kept / "airflow")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child process
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.base)

    def redis_keys(self) -> list[bytes]:
        """Feast's keys of this stack's project (a Redis key ends with the project name)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db)
        return list(client.scan_iter(match=f"*{self.feast_project}", count=1000))

    def _delete_redis_keys(self) -> None:
        import redis

        keys = self.redis_keys()
        if keys:
            redis.Redis(host="127.0.0.1", port=6379, db=self.redis_db).delete(*keys)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def running_stack(request: pytest.FixtureRequest) -> AirflowStack:
    """The session's stack, started and run once (the first test that asks starts it; cleanup at session end)."""
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    if not TRAIN_PYTHON.exists():
        msg = f"training venv missing ({TRAIN_PYTHON}); run make demo"
        pytest.fail(msg) if REQUIRE_SERVICES else pytest.skip(msg)
    config = request.config
    stack = getattr(config, STASH, None)
    if stack is None:
        stack = AirflowStack(base=Path(tempfile.mkdtemp(prefix="mlops-sched-it-")))
        setattr(config, STASH, stack)
        config.add_cleanup(stack.stop)
        t0 = time.monotonic()
        stack.start()
        stack.run_dag()
        stack.timings["total_s"] = time.monotonic() - t0
        OUTPUT.mkdir(exist_ok=True)
        (OUTPUT / "scheduler_run_timing.json").write_text(json.dumps(
            {k: round(v, 1) for k, v in stack.timings.items()}
            | {"run_id": stack.run_id, "state": stack.run.get("state"), "task_seconds": stack.task_seconds}, indent=2))
    if stack.run.get("state") != "success":
        pytest.fail(f"the DAG run {stack.run_id} ended {stack.run.get('state')}:\n{stack.failure_report()}")
    return stack


@pytest.fixture
def airflow_stack(request: pytest.FixtureRequest) -> AirflowStack:
    return running_stack(request)


def test_ct_dag_succeeds_under_the_scheduler(airflow_stack: AirflowStack, record_property) -> None:
    stack = airflow_stack
    record_property("scheduler_run_timings", json.dumps({k: round(v, 1) for k, v in stack.timings.items()}))
    print(f"\n[scheduler-run] timings: {json.dumps({k: round(v, 1) for k, v in stack.timings.items()})}")
    summary = stack.summary
    assert summary["validation"]["passed"] is True
    assert summary["model"]["name"] == "churn_classifier"
    assert summary["model"]["aliases"] == ["champion"]
    assert summary["dag_run"] == stack.run_id

    # The registry (MLflow on PostgreSQL) holds the champion with the run's lineage.
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    mv = client.get_model_version_by_alias("churn_classifier", "champion")
    assert mv.version == summary["model"]["version"] and mv.run_id == summary["mlflow_run"]["run_id"]
    assert mv.tags["mlops.dataset_rev"] == summary["dataset_version"]["rev"]
    assert mv.tags["mlops.training_set_hash"] == summary["training_set"]["hash"]
    assert mv.tags["mlops.run_id"] == stack.run_id
    rows = _query("SELECT count(*) FROM model_versions WHERE name = %s", stack.db("mlflow"), ("churn_classifier",))
    assert rows[0][0] >= 1

    # Airflow's metadata is in PostgreSQL, and every task ran through the LocalExecutor (a first model has
    # no champion to be compared with: the challenger branch, where the DAG has one, is skipped).
    states = dict(_query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                         stack.db("airflow"), (DAG_ID, stack.run_id)))
    core = ("land_batch", "validate_batch", "version_dataset", "materialize_features", "build_training_set",
            "train_model", "register_model", "check_drift", "summarize")
    assert all(states.get(task) == "success" for task in core), states
    assert set(states.values()) <= {"success", "skipped"}, states
    executors = {row[0] for row in _query("SELECT executor FROM task_instance WHERE dag_id = %s AND run_id = %s",
                                          stack.db("airflow"), (DAG_ID, stack.run_id))}
    assert executors <= {None, "LocalExecutor"}, executors
    assert _query("SELECT state FROM dag_run WHERE run_id = %s", stack.db("airflow"), (stack.run_id,)) == [
        ("success",)]

    # Features were materialised into Redis (the online store), under this stack's project.
    assert stack.redis_keys(), f"no Feast keys for project {stack.feast_project} in Redis db {stack.redis_db}"
    # ... and the registry is the SQL registry on PostgreSQL.
    projects = _query("SELECT project_id FROM projects", stack.db("feast"))
    assert (stack.feast_project,) in projects

    # The drift verdict was logged to the monitoring experiment for the UI page.
    drift_runs = client.search_runs(
        [client.get_experiment_by_name("mlops-monitoring").experiment_id],
        filter_string="tags.`mlops.kind` = 'data_drift' and tags.`mlops.model_name` = 'churn_classifier'")
    assert drift_runs, "no drift run in mlops-monitoring"


def _trigger_and_wait(stack: AirflowStack, dag_id: str, conf: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    dag_url = f"{stack.api_url}/api/v2/dags/{dag_id}"
    _wait(f"the dag-processor to parse {dag_id}", lambda: _http("GET", dag_url, stack.token)[0] == 200, 300,
          stack.procs, stack.logs)
    status, body = _http("POST", f"{dag_url}/dagRuns", stack.token, {"logical_date": None, "conf": conf})
    assert status == 200, (status, body)
    return _wait_run(stack, dag_id, body["dag_run_id"], timeout_s)


def _wait_run(stack: AirflowStack, dag_id: str, run_id: str, timeout_s: float) -> dict[str, Any]:
    run_url = f"{stack.api_url}/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}"

    def finished() -> dict | None:
        status, run = _http("GET", run_url, stack.token)
        return run if status == 200 and run.get("state") in ("success", "failed") else None

    run = _wait(f"the {dag_id} run {run_id}", finished, timeout_s, stack.procs, stack.logs)
    status, xcom = _http("GET", f"{run_url}/taskInstances/summarize/xcomEntries/return_value"
                                "?deserialize=true&stringify=false", stack.token)
    value = xcom.get("value") if status == 200 and isinstance(xcom, dict) else None
    run["summary"] = json.loads(value) if isinstance(value, str) else value
    return run


def test_a_drift_verdict_retrains_through_the_asset_under_the_scheduler(airflow_stack: AirflowStack) -> None:
    """mlops_monitoring on a drifted window emits mlops://monitoring/churn_classifier; the scheduler itself then
    starts mlops_continuous_training (asset-triggered, no conf), whose guard lets it retrain with the reason."""
    stack = airflow_stack
    t0 = time.monotonic()
    monitoring = _trigger_and_wait(stack, "mlops_monitoring",
                                   {"day": "2026-11-11", "covariate_shift": 0.3, "concept_drift": 1.0}, 900)
    assert monitoring["state"] == "success", stack.failure_report()
    summary = monitoring["summary"]
    assert summary["drift"]["passed"] is False and summary["drift"]["drift_share"] >= 0.5, summary["drift"]
    assert [e["kind"] for e in summary["retrain_events"]] == ["data_drift"]
    events = _query(
        "SELECT e.id, e.extra::text FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = %s",
        stack.db("airflow"), ("mlops://monitoring/churn_classifier",))
    assert len(events) == 1 and json.loads(events[0][1])["kind"] == "data_drift", events
    monitoring_s = time.monotonic() - t0

    # The scheduler, not the test, creates the CT run from the asset event.
    ct_url = f"{stack.api_url}/api/v2/dags/{DAG_ID}/dagRuns?run_type=asset_triggered"

    def asset_run() -> str | None:
        status, body = _http("GET", ct_url, stack.token)
        runs = (body or {}).get("dag_runs") or [] if status == 200 else []
        return runs[0]["dag_run_id"] if runs else None

    run_id = _wait("the scheduler to start the asset-triggered CT run", asset_run, 300, stack.procs, stack.logs)
    ct = _wait_run(stack, DAG_ID, run_id, 900)
    assert ct["state"] == "success", stack.failure_report()
    consumed = _query("SELECT event_id FROM dagrun_asset_event WHERE dag_run_id = (SELECT id FROM dag_run WHERE "
                      "dag_id = %s AND run_id = %s)", stack.db("airflow"), (DAG_ID, run_id))
    assert [row[0] for row in consumed] == [events[0][0]]
    retrain = ct["summary"]["retrain"]
    assert retrain["proceed"] is True and retrain["reason"].startswith("dataset drift:"), retrain
    assert "mlops_monitoring" in retrain["triggered_by"], retrain

    # The new version carries the reason into the registry and its reproducibility record.
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    new = client.get_model_version("churn_classifier", ct["summary"]["model"]["version"])
    assert new.version != stack.summary["model"]["version"]
    assert new.tags["mlops.retrain.kind"] == "data_drift" and new.tags["mlops.retrain.reason"].startswith(
        "dataset drift:")
    assert new.tags["mlops.retrain.triggered_by"].startswith("asset mlops://monitoring/churn_classifier")
    timings = json.loads((OUTPUT / "scheduler_run_timing.json").read_text())
    timings["retrain_via_asset"] = {"monitoring_run_s": round(monitoring_s, 1),
                                    "total_s": round(time.monotonic() - t0, 1), "ct_run_id": run_id}
    (OUTPUT / "scheduler_run_timing.json").write_text(json.dumps(timings, indent=2))
    print(f"\n[scheduler-run] retrain via asset: {json.dumps(timings['retrain_via_asset'])}")


def _error_lines(log_file: Path) -> list[str]:
    """The ERROR/CRITICAL records of one task log (Airflow 3 writes JSON lines; a plain line counts when it carries
    an ERROR level word)."""
    found = []
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if " ERROR " in line or line.startswith("ERROR") or "CRITICAL" in line:
                found.append(line)
            continue
        if isinstance(record, dict) and str(record.get("level", "")).lower() in ("error", "critical", "fatal"):
            found.append(f"{record.get('logger', '')}: {record.get('event', '')}"[:300])
    return found


def test_successful_ct_runs_log_no_error_line(airflow_stack: AirflowStack) -> None:
    """An on-call engineer reads red ERROR lines as failures: a successful CT run (the first model, and the
    asset-triggered retrain with evaluation and promotion when the drift test ran before) logs none."""
    stack = airflow_stack
    runs = [row[0] for row in _query("SELECT run_id FROM dag_run WHERE dag_id = %s AND state = 'success'",
                                     stack.db("airflow"), (DAG_ID,))]
    assert stack.run_id in runs, runs
    task_logs = Path(stack.env.get("AIRFLOW_HOME", stack.base)) / "logs"
    scanned, errors = 0, {}
    for run_id in runs:
        folder = task_logs / f"dag_id={DAG_ID}" / f"run_id={run_id}"
        files = sorted(folder.glob("**/*.log"))
        assert files, f"no task logs under {folder}"
        for log_file in files:
            scanned += 1
            if lines := _error_lines(log_file):
                errors[str(log_file.relative_to(task_logs))] = lines[:5]
    print(f"\n[scheduler-run] scanned {scanned} task logs of {len(runs)} successful CT runs for ERROR lines")
    assert not errors, json.dumps(errors, indent=2)[:6000]
