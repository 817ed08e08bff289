"""The embedded local stack behind `make demo` / `make up` (stdlib only; run with the project venv).

Everything lives under ``.local/`` (git-ignored) and every step is idempotent: a second run reuses
what exists.

  python scripts/local_stack.py bootstrap   # MLflow, DVC data repo + remote, Feast apply, Airflow DB, training env
  python scripts/local_stack.py demo        # bootstrap, run the simulated timeline (scripts/scenario.py)
  python scripts/local_stack.py demo --day D   # bootstrap, run the CT DAG once for day D (airflow dags test)
  python scripts/local_stack.py up          # bootstrap, then Airflow (api-server, scheduler, ...) on 127.0.0.1:8080
  python scripts/local_stack.py exec -- CMD # run CMD with the stack's environment (AIRFLOW_HOME, connections, ...)
  python scripts/local_stack.py stop        # stop the MLflow server
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("MLOPS_LOCAL_DIR", ROOT / ".local")).resolve()
VENV = ROOT / ".venv"
TRAIN_VENV = Path(os.environ.get("MLOPS_TRAIN_VENV", ROOT / ".venv-train"))
MLFLOW_PORT = int(os.environ.get("MLOPS_MLFLOW_PORT", "5055"))
MLFLOW_URI = f"http://127.0.0.1:{MLFLOW_PORT}"
DATA_REPO = LOCAL / "data_repo"
DVC_REMOTE = LOCAL / "dvc_remote"
DAG_ID = "mlops_continuous_training"
# The other examples' Feast repositories: name -> (source in include/, folder in the data repository).
FEATURE_REPOS_DIR = "feature_repos"
FEATURE_REPOS = {"diabetes": (ROOT / "include" / "diabetes" / "feast_repo", DATA_REPO / FEATURE_REPOS_DIR / "diabetes")}


def log(msg: str) -> None:
    print(f"[local-stack] {msg}", flush=True)


def stack_env() -> dict[str, str]:
    """The environment every Airflow command of the local stack runs with."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(LOCAL / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": "8080",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__MLOPS__DATA_ROOT": str(LOCAL / "data"),
            "AIRFLOW__MLOPS__INCLUDE_DIR": str(ROOT / "include"),
            "AIRFLOW__MLOPS__PROJECT_ROOT": str(ROOT),
            "AIRFLOW__MLOPS__TRAINING_BACKEND": os.environ.get("MLOPS_TRAINING_BACKEND", "local"),
            "AIRFLOW__MLOPS__TRAINING_PYTHON": str(TRAIN_VENV / "bin" / "python"),
            # The local demo has nobody to click "approve": an explicit, logged auto-approve policy.
            "AIRFLOW__MLOPS__APPROVAL_POLICY": os.environ.get("MLOPS_APPROVAL_POLICY", "auto"),
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "extra": {"tracking_uri": MLFLOW_URI}}),
            "AIRFLOW_CONN_DVC_DEFAULT": json.dumps(
                {
                    "conn_type": "dvc",
                    "extra": {"repo_path": str(DATA_REPO), "remote": "local", "remote_url": str(DVC_REMOTE)},
                }
            ),
            "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps({"conn_type": "feast", "extra": {"repo_path": str(DATA_REPO)}}),
            "AIRFLOW_CONN_FEAST_DIABETES": json.dumps(
                {"conn_type": "feast", "extra": {"repo_path": str(FEATURE_REPOS["diabetes"][1])}}
            ),
            "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env or stack_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"[local-stack] command failed ({proc.returncode}): {' '.join(argv)}")
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip())
    return proc.stdout


def stamp_ok(name: str, fingerprint: str) -> bool:
    stamp = LOCAL / "stamps" / name
    return stamp.exists() and stamp.read_text() == fingerprint


def write_stamp(name: str, fingerprint: str) -> None:
    stamp = LOCAL / "stamps" / name
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def sha(*paths: Path) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.read_bytes())
    return digest.hexdigest()


# -- MLflow ---------------------------------------------------------------------------------
def mlflow_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{MLFLOW_URI}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow() -> None:
    if mlflow_healthy():
        log(f"MLflow server already up at {MLFLOW_URI}")
        return
    (LOCAL / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    (LOCAL / "logs").mkdir(parents=True, exist_ok=True)
    logf = open(LOCAL / "logs" / "mlflow.log", "ab")  # noqa: SIM115 - handed to the daemon
    proc = subprocess.Popen(
        [
            str(VENV / "bin" / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{LOCAL / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination", str(LOCAL / "mlflow" / "artifacts"),
            "--host", "127.0.0.1", "--port", str(MLFLOW_PORT), "--workers", "1",
        ],
        stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        # No background job workers: the stack does not use MLflow's job execution (saves ~7 processes).
        env={**stack_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    (LOCAL / "mlflow" / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if mlflow_healthy():
            log(f"MLflow server started at {MLFLOW_URI} (pid {proc.pid}, log .local/logs/mlflow.log)")
            return
        if proc.poll() is not None:
            break
        time.sleep(1)
    raise SystemExit(f"[local-stack] MLflow server did not become healthy; see {LOCAL / 'logs' / 'mlflow.log'}")


def stop_mlflow() -> None:
    pid_file = LOCAL / "mlflow" / "server.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            log("MLflow server stopped")
        except ProcessLookupError:
            pass
        pid_file.unlink()


# -- DVC data repository + Feast repo -------------------------------------------------------
def init_data_repo() -> None:
    env = stack_env()
    git = ["git", "-c", "user.name=airflow-mlops", "-c", "user.email=airflow-mlops@localhost"]
    if not (DATA_REPO / ".dvc").is_dir():
        DATA_REPO.mkdir(parents=True, exist_ok=True)
        DVC_REMOTE.mkdir(parents=True, exist_ok=True)
        run([*git, "init", "-q", "-b", "main"], cwd=DATA_REPO, env=env)
        run([sys.executable, "-m", "dvc", "init", "-q"], cwd=DATA_REPO, env=env)
        run([sys.executable, "-m", "dvc", "config", "core.autostage", "false"], cwd=DATA_REPO, env=env)
        run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(DVC_REMOTE)], cwd=DATA_REPO, env=env)
        log(f"DVC repository created at {DATA_REPO} (remote 'local' -> {DVC_REMOTE})")
    # The bundled feature repositories live in the data repository (definitions versioned with the data): the
    # churn one at its root, every other example's under feature_repos/<name>/ (FEATURE_REPOS).
    changed = False
    staged = []
    for src_dir, dst_dir in ((ROOT / "include" / "feast_repo", DATA_REPO), *FEATURE_REPOS.values()):
        dst_dir.mkdir(parents=True, exist_ok=True)
        for name in ("feature_store.yaml", "features.py", ".feastignore"):
            src, dst = src_dir / name, dst_dir / name
            if not src.exists():
                continue
            content = src.read_bytes()
            if dst_dir == DATA_REPO and name == ".feastignore" and f"{FEATURE_REPOS_DIR}/".encode() not in content:
                # The root repository must not import the other examples' definitions (`feast apply` reads
                # every .py below its folder that .feastignore does not exclude).
                content = content.rstrip(b"\n") + f"\n{FEATURE_REPOS_DIR}/\n".encode()
            if not dst.exists() or dst.read_bytes() != content:
                dst.write_bytes(content)
                changed = True
            staged.append(str(dst.relative_to(DATA_REPO)))
    gitignore = DATA_REPO / ".gitignore"
    if not gitignore.exists() or ".feast/" not in gitignore.read_text():
        gitignore.write_text(".feast/\n__pycache__/\n")  # no leading slash: also every feature_repos/*/.feast/
        changed = True
    if changed:
        run([*git, "add", *staged, ".gitignore", ".dvc"], cwd=DATA_REPO, env=env)
        run([*git, "commit", "-q", "-m", "feature definitions from include/feast_repo and include/*/feast_repo"],
            cwd=DATA_REPO, env=env)
        log("feature definitions committed to the data repository")


def feast_apply() -> None:
    fingerprint = sha(DATA_REPO / "features.py", DATA_REPO / "feature_store.yaml")
    if stamp_ok("feast_apply", fingerprint) and (DATA_REPO / ".feast" / "registry.db").exists():
        log("Feast registry up to date")
    else:
        run([sys.executable, "-m", "feast.cli.cli", "--chdir", str(DATA_REPO), "apply"], quiet=True)
        write_stamp("feast_apply", fingerprint)
        log("feast apply done (SQLite online store at data_repo/.feast/online_store.db)")
    for name, (_, repo) in FEATURE_REPOS.items():
        fingerprint = sha(repo / "features.py", repo / "feature_store.yaml")
        if stamp_ok(f"feast_apply_{name}", fingerprint) and (repo / ".feast" / "registry.db").exists():
            log(f"Feast registry of {name} up to date")
            continue
        run([sys.executable, "-m", "feast.cli.cli", "--chdir", str(repo), "apply"], quiet=True)
        write_stamp(f"feast_apply_{name}", fingerprint)
        log(f"feast apply done for {name} ({repo.relative_to(LOCAL)})")


# -- Airflow and the training environment -----------------------------------------------------
def airflow_db() -> None:
    if (LOCAL / "airflow" / "airflow.db").exists() and stamp_ok("airflow_db", sha(ROOT / "uv.lock")):
        log("Airflow metadata DB ready")
        return
    (LOCAL / "airflow").mkdir(parents=True, exist_ok=True)
    run([str(VENV / "bin" / "airflow"), "db", "migrate"], quiet=True)
    write_stamp("airflow_db", sha(ROOT / "uv.lock"))
    log("Airflow metadata DB migrated (SQLite)")


def training_env() -> None:
    req = ROOT / "include" / "training" / "requirements.txt"
    python = TRAIN_VENV / "bin" / "python"
    stamp = TRAIN_VENV / ".requirements.sha256"  # lives with the venv, shared by every stack dir
    if python.exists() and stamp.exists() and stamp.read_text() == sha(req):
        log(f"training environment ready ({TRAIN_VENV})")
        return
    start = time.monotonic()
    base = shutil.which("python3.11") or sys.executable
    if not python.exists():
        run([base, "-m", "venv", str(TRAIN_VENV)], quiet=True)
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)], quiet=True)
    stamp.write_text(sha(req))
    log(f"training environment installed in {time.monotonic() - start:.0f}s ({TRAIN_VENV})")


def bootstrap() -> None:
    LOCAL.mkdir(parents=True, exist_ok=True)
    start_mlflow()
    init_data_repo()
    feast_apply()
    airflow_db()
    training_env()


# -- demo ------------------------------------------------------------------------------------
def next_demo_day() -> date:
    """One new day per demo run: the day after the newest batch, from 14 days ago up to yesterday."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    batches = sorted((DATA_REPO / "data" / "customer_events").glob("*.parquet"))
    if not batches:
        return yesterday - timedelta(days=13)
    return min(date.fromisoformat(batches[-1].stem) + timedelta(days=1), yesterday)


def scenario(spec: str | None) -> int:
    """The simulated timeline (monitoring, drift, retraining, promotion), every DAG run in one process."""
    t0 = time.monotonic()
    bootstrap()
    log(f"bootstrap {time.monotonic() - t0:.0f}s; running the scenario (DAG runs in one process; their output: "
        f"{LOCAL / 'logs' / 'scenario.log'})")
    argv = [str(VENV / "bin" / "python"), str(ROOT / "scripts" / "scenario.py"), "--log",
            str(LOCAL / "logs" / "scenario.log")]
    if spec:
        argv += ["--spec", spec]
    code = subprocess.call(argv, env=stack_env())
    if code != 0:
        scenario_log = LOCAL / "logs" / "scenario.log"
        tail = scenario_log.read_text(errors="replace").splitlines() if scenario_log.exists() else []
        print("\n".join([ln for ln in tail if "SUMMARY" in ln or "Error" in ln][-15:]))
        log(f"the scenario FAILED (exit {code}); full log: {LOCAL / 'logs' / 'scenario.log'}")
        return 1
    log(f"demo done in {time.monotonic() - t0:.0f}s")
    return 0


def demo(day: str | None, dag_id: str = DAG_ID, data_dir: str = "") -> int:
    """One CT run for ``day`` (``dag_id``; its summary under ``<data_root>/<data_dir>``), then its summary."""
    t0 = time.monotonic()
    bootstrap()
    t_boot = time.monotonic() - t0
    day = day or next_demo_day().isoformat()
    log(f"running {dag_id} for day {day} (airflow dags test; task logs: .local/logs/demo-{day}.log)")
    summary_file = artefact(stack_env()["AIRFLOW__MLOPS__DATA_ROOT"], data_dir, "runs", "latest_summary.json")
    read_artefact(summary_file, remove=True)
    log_path = LOCAL / "logs" / f"demo-{day}.log"
    with open(log_path, "w") as logf:
        proc = subprocess.run(
            [str(VENV / "bin" / "airflow"), "dags", "test", dag_id, "-c", json.dumps({"day": day})],
            env=stack_env(), stdout=logf, stderr=subprocess.STDOUT, check=False,
        )
    text = log_path.read_text(errors="replace")
    summary = read_artefact(summary_file)
    failed = proc.returncode != 0 or "state=failed" in text.lower() or summary is None
    if failed:
        tail = [ln for ln in text.splitlines() if "SUMMARY" in ln or "Error" in ln or "error" in ln][-15:]
        print("\n".join(tail))
        log(f"the DAG run FAILED (exit {proc.returncode}); full log: {log_path}")
        return 1
    print_summary(summary, t_boot, time.monotonic() - t0, dag_id)
    return 0


# -- run summaries (the DAGs write them through mlops_airflow.storage under [mlops] data_root: a folder or a URI) --
def artefact(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))])


def _storage():  # noqa: ANN202 - mlops_airflow.storage, imported (with the stack's configuration) for a URI only
    os.environ.update(stack_env())
    sys.path.insert(0, str(ROOT / "plugins"))
    from mlops_airflow import storage

    return storage


def read_artefact(location: str, remove: bool = False) -> dict | None:
    """The JSON document at ``location`` (None when there is none); ``remove``: delete it instead."""
    if "://" in location and not location.startswith("file://"):
        storage = _storage()
        return storage.remove(location) if remove else (
            storage.read_json(location) if storage.exists(location) else None)
    local = Path(location.removeprefix("file://"))
    if remove:
        return local.unlink(missing_ok=True)
    return json.loads(local.read_text()) if local.exists() else None


def print_summary(s: dict, t_boot: float, t_total: float, dag_id: str = DAG_ID) -> None:
    outcome = s.get("outcome") or {}
    if s.get("blocked"):
        print(f"\n=== {dag_id}: {outcome.get('headline') or 'retraining blocked'} (summary: {s.get('summary_uri')})\n")
        return
    d, m, dr, run = s["dataset_version"], s["model"], s["drift"], s["mlflow_run"]
    gate = s.get("validation")
    lines = [
        "",
        f"=== {dag_id}: run summary ({s.get('model_name', m['name'])}, {s.get('task_type', 'binary_classification')}) "
        "===",
        f"outcome           : {outcome.get('headline', 'n/a')}",
        f"dataset version   : {d['path']} rev {d['rev'][:12]} md5 {d['md5']} ({d['rows']} rows)",
        "validation        : " + ("none (no suite)" if gate is None else
                                  f"{'PASSED' if gate['passed'] else 'FAILED'} ({gate['evidence']})"),
        f"training set      : hash {s['training_set']['hash'][:16]} ({s['training_set']['rows']} rows)",
        f"MLflow run        : {s['mlflow_run']['run_id']} {s['mlflow_run']['metrics']}",
        f"                    {s['mlflow_run']['url']}",
        f"training code     : {run.get('entrypoint')} sha256 {str(run.get('entrypoint_sha256'))[:16]}",
        f"model version     : {m['name']} v{m['version']} aliases={m['aliases'] or '[] (champion unchanged)'}",
        f"                    {m['url']}",
        f"drift             : {'no drift' if dr['passed'] else 'DRIFT'} share={dr['drift_share']:.2f} "
        f"drifted={dr['drifted_columns']}",
        f"drift report      : {dr['report']}",
        f"                    {dr['report_path']}",
        *evaluation_lines(s),
        f"full summary      : {s.get('summary_uri')}",
        f"timing            : bootstrap {t_boot:.0f}s, total {t_total:.0f}s",
        "",
    ]
    print("\n".join(lines))


def evaluation_lines(s: dict) -> list[str]:
    ev, pr = s.get("evaluation"), s.get("promotion")
    if ev is None:
        return ["evaluation        : none (first model, or no challenger this run)"]
    lines = [f"evaluation        : {'PASSED' if ev['passed'] else 'not promoted'} vs champion v{ev['champion']} "
             f"delta={ev['delta']} ci={ev['ci']} ({'; '.join(ev['reasons'])[:160]})"]
    if pr:
        lines.append(f"promotion         : {pr['alias']} v{pr.get('previous_version')} -> v{pr['version']} "
                     f"approved_by={pr['approved_by']} ledger #{pr.get('ledger_seq')}")
    return lines


def up() -> int:
    bootstrap()
    log("starting Airflow (api-server, scheduler, dag-processor, triggerer) at http://127.0.0.1:8080 ; Ctrl-C stops it")
    log("the admin password is printed below and stored in .local/airflow/simple_auth_manager_passwords.json.generated")
    env = stack_env()
    # Sized to the machine: Airflow's defaults (parallelism 32: LocalExecutor workers) swamp a small laptop.
    cpus = os.cpu_count() or 2
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(max(2, cpus)))
    env.setdefault("AIRFLOW__API__WORKERS", "1")
    env.setdefault("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", str(max(1, min(2, cpus // 2))))
    log(f"executor parallelism {env['AIRFLOW__CORE__PARALLELISM']} ({cpus} CPUs; AIRFLOW__CORE__PARALLELISM overrides)")
    return subprocess.call([str(VENV / "bin" / "airflow"), "standalone"], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("bootstrap")
    sub.add_parser("training-env")
    p_demo = sub.add_parser("demo")
    p_demo.add_argument("--day", help="run the CT DAG once for this batch day YYYY-MM-DD (default: the scenario)")
    p_demo.add_argument("--scenario", help="scenario spec JSON (default include/scenario/drift_timeline.json; "
                        "include/scenario/diabetes_short.json: the regression example)")
    p_demo.add_argument("--dag", default=DAG_ID, help=f"with --day: the CT DAG to run (default {DAG_ID})")
    p_demo.add_argument("--data-dir", default="", help="with --day: the model's folder under the data root "
                        "(e.g. diabetes for mlops_diabetes_ct)")
    sub.add_parser("up")
    sub.add_parser("stop")
    p_exec = sub.add_parser("exec")
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.cmd == "bootstrap":
        bootstrap()
        return 0
    if args.cmd == "training-env":
        training_env()
        return 0
    if args.cmd == "demo":
        return demo(args.day, args.dag, args.data_dir) if args.day else scenario(args.scenario)
    if args.cmd == "up":
        return up()
    if args.cmd == "stop":
        stop_mlflow()
        return 0
    argv = [a for a in args.argv if a != "--"]
    return subprocess.call(argv, env=stack_env())


if __name__ == "__main__":
    sys.exit(main())
