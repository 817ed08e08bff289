"""No credential the pack is given ends up anywhere it writes: a CT day with sentinel passwords, then a scan.

An isolated local stack (``scripts/local_stack.py bootstrap`` in its own folder and port), whose MLflow server
is MLflow's ``basic-auth`` app with the admin password set to a sentinel, so the MLflow connection's password
is *needed* (every REST call of every task, and of the training subprocess, authenticates with it). The DVC
connection carries a sentinel access key and secret (the pack hands them to its DVC/git child processes only;
the local remote does not check them). One CT day runs with ``airflow dags test`` (the real DAG, every task,
2 epochs). Then everything the run wrote is scanned for the sentinels (raw, base64 ``login:password`` and URL-
encoded forms): every file of the stack folder (task logs, the Airflow metadata DB with its XComs, the MLflow
store with params/tags/metrics, the artifact store with models, evidence and the reproducibility record, the
DVC data repository's config files and remote), each git commit of the data repository (``git log -p``) and
its git config, gzip/zip members; and, through the APIs, every XCom value, every run's params and tags, every
registered model's and version's tags. The scanner is checked first to find a planted sentinel in each form.
Not covered: S3/GCS credentials (the local stack has no object store), the Feast connection (the SQLite online
store takes none). Skipped when Flask-WTF (``mlflow[auth]``) or the training venv is missing.
Runtime: ~4-10 min (bootstrap, Airflow DB migration, Feast apply, one DAG run).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT, TRAIN_PYTHON, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo"),
]

MLFLOW_PASSWORD = "SENTINEL-mlflow-pw-7f3a9c2e"
DVC_KEY = "SENTINEL-dvc-key-41b7d0"
DVC_SECRET = "SENTINEL-dvc-secret-9e2c55"
LOCAL_STACK = [sys.executable, str(ROOT / "scripts" / "local_stack.py")]


def _needles() -> dict[str, bytes]:
    basic = base64.b64encode(f"admin:{MLFLOW_PASSWORD}".encode())
    out = {"mlflow password": MLFLOW_PASSWORD.encode(), "mlflow basic-auth header": basic,
           "dvc key": DVC_KEY.encode(), "dvc secret": DVC_SECRET.encode()}
    return {**out, "sentinel prefix": b"SENTINEL-"}


def _hits(data: bytes, where: str) -> list[str]:
    return [f"{where}: {name}" for name, needle in _needles().items() if needle in data]


def scan_tree(root: Path) -> tuple[list[str], int]:
    """(hits, files scanned) over every file below ``root``, gzip and zip members included."""
    hits, count = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        count += 1
        hits += _hits(data, str(path.relative_to(root)))
        if data[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError, zlib.error):
                hits += _hits(gzip.decompress(data), f"{path.relative_to(root)} (gunzipped)")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    hits += _hits(zf.read(member), f"{path.relative_to(root)}!{member}")
    return hits, count


def test_the_scanner_finds_a_planted_sentinel_in_every_form(tmp_path):
    (tmp_path / "a.log").write_text(f"x {MLFLOW_PASSWORD} y")
    (tmp_path / "b.gz").write_bytes(gzip.compress(DVC_SECRET.encode()))
    with zipfile.ZipFile(tmp_path / "c.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inner.txt", DVC_KEY * 50)
    (tmp_path / "d.txt").write_bytes(b"Authorization: Basic " + base64.b64encode(f"admin:{MLFLOW_PASSWORD}".encode()))
    hits, count = scan_tree(tmp_path)
    assert count == 4
    assert {"a.log: mlflow password", "b.gz (gunzipped): dvc secret", "c.zip!inner.txt: dvc key",
            "d.txt: mlflow basic-auth header"} <= set(hits)


def _flask_wtf() -> bool:
    return subprocess.run([sys.executable, "-c", "import flask_wtf"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A bootstrapped local stack folder whose MLflow server needs the sentinel password."""
    if not _flask_wtf():
        pytest.skip("MLflow's basic-auth app needs Flask-WTF (`mlflow[auth]`), not installed in the Airflow env")
    local, private = tmp_path_factory.mktemp("stack"), tmp_path_factory.mktemp("auth-config")
    port = free_port()
    ini = private / "auth.ini"  # outside the scanned folder: it is where the operator keeps the password
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{private}/auth.db\nadmin_username = admin\n"
                   f"admin_password = {MLFLOW_PASSWORD}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    (local / "mlflow" / "artifacts").mkdir(parents=True)
    (local / "logs").mkdir()
    log = open(local / "logs" / "mlflow.log", "wb")  # noqa: SIM115 - closed after the server stops
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{local / 'mlflow' / 'mlflow.db'}",
         "--artifacts-destination", str(local / "mlflow" / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key",
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_"))}
    env.update({"MLOPS_LOCAL_DIR": str(local), "MLOPS_MLFLOW_PORT": str(port)})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"basic-auth MLflow did not start: {(local / 'logs' / 'mlflow.log').read_text()}")
                time.sleep(0.5)
        boot = subprocess.run([*LOCAL_STACK, "bootstrap"], env=env, capture_output=True, text=True, timeout=900)
        assert boot.returncode == 0, boot.stdout[-3000:] + boot.stderr[-3000:]
        assert "MLflow server already up" in boot.stdout  # the stack uses the basic-auth server
        yield {"local": local, "uri": uri, "env": env}
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()


def _connections(uri: str, local: Path) -> dict[str, str]:
    mlflow = {"conn_type": "mlflow", "login": "admin", "password": MLFLOW_PASSWORD, "extra": {"tracking_uri": uri}}
    dvc = {"conn_type": "dvc", "login": DVC_KEY, "password": DVC_SECRET,
           "extra": {"repo_path": str(local / "data_repo"), "remote": "local", "remote_url": str(local / "dvc_remote")}}
    return {"AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(mlflow), "AIRFLOW_CONN_DVC_DEFAULT": json.dumps(dvc)}


def test_a_ct_day_writes_no_credential_anywhere(stack, monkeypatch):
    local, uri, env = stack["local"], stack["uri"], stack["env"]
    day = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    conns = [f"{k}={v}" for k, v in _connections(uri, local).items()]
    run_log = local / "logs" / f"ct-{day}.log"
    started = time.monotonic()
    with open(run_log, "w") as out:
        proc = subprocess.run(
            [*LOCAL_STACK, "exec", "--", "env", *conns, str(ROOT / ".venv" / "bin" / "airflow"), "dags", "test",
             "mlops_continuous_training", "-c", json.dumps({"day": day, "epochs": 2})],
            env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1500, check=False)
    text = run_log.read_text(errors="replace")
    summary = local / "data" / "runs" / "latest_summary.json"
    assert proc.returncode == 0 and summary.exists(), text[-6000:]
    assert "state=failed" not in text.lower(), text[-6000:]
    wall = time.monotonic() - started

    # The password was needed and used: the run registered a model on the basic-auth server.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW_PASSWORD)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    models = client.search_registered_models()
    assert models, "the CT day registered no model"
    api_hits, checked = [], 0
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            checked += 1
            api_hits += _hits(json.dumps({"params": run.data.params, "tags": run.data.tags}).encode(),
                              f"run {run.info.run_id} params/tags")
    for model in models:
        api_hits += _hits(json.dumps(model.tags).encode(), f"registered model {model.name} tags")
        for mv in client.search_model_versions(f"name = '{model.name}'"):
            api_hits += _hits(json.dumps(mv.tags).encode(), f"{model.name} v{mv.version} tags")
    assert checked > 0
    with sqlite3.connect(local / "airflow" / "airflow.db") as db:
        xcoms = db.execute("SELECT task_id, key, value FROM xcom").fetchall()
    assert xcoms, "no XCom recorded: the scan would prove nothing"
    for task_id, key, value in xcoms:
        api_hits += _hits(value if isinstance(value, bytes) else str(value).encode(), f"XCom {task_id}/{key}")

    records = list((local / "mlflow" / "artifacts").rglob("reproducibility/record.json"))
    assert records, "no reproducibility record written"
    data_repo = local / "data_repo"
    assert (data_repo / ".dvc" / "config").exists()
    git_history = subprocess.run(["git", "log", "--all", "-p", "--binary"], cwd=data_repo, capture_output=True,
                                 check=True).stdout
    git_config = subprocess.run(["git", "config", "--list", "--show-origin"], cwd=data_repo, capture_output=True,
                                check=True).stdout
    file_hits, scanned = scan_tree(local)
    hits = [*api_hits, *file_hits, *_hits(git_history, "data repo git history"),
            *_hits(git_config, "data repo git config")]
    print(f"SECRETS-SCAN files={scanned} runs={checked} xcoms={len(xcoms)} records={len(records)} "
          f"ct_day_wall={wall:.0f}s hits={len(hits)}")
    assert not hits, "credentials written where they must not be:\n" + "\n".join(hits)
