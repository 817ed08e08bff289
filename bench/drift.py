"""Drift benchmark: the whole Airflow drift task vs plain Evidently ``Report([DataDriftPreset()])``, same Parquet data.

    python -m bench drift                                   # 800, 200,000 and 1,000,000 rows x 20, then the 100M run
    python -m bench drift --sizes 800,20000 --skip-scale    # a quick run
    python -m bench drift --skip-evidently                  # ours only

Data: ``--columns`` numeric columns (normal, skewed, heavy-tailed, integer counts, low-cardinality, one with
nulls and infinities), reference and current drawn with different seeds and both ``rows`` long; drift injected into
about half of the columns as location shifts of 0.03 to 0.25 reference standard deviations (0.099 and 0.101 sit
right at Evidently's Wasserstein threshold of 0.1), a scale change, a log-scale shift and a changed share of a
binary column. Written as Parquet (row groups of 250,000 rows) in a temporary folder.

Each measurement is a fresh interpreter (``bench/_drift_child.py``); the parent times it from process start to exit
(interpreter start, every import, reading, computing, writing) and the child reports its own split and its peak
RSS (``VmHWM``):

- ``evidently``: plain Evidently as a user calls it: ``import evidently``, both files read with pyarrow to pandas,
  ``Report([DataDriftPreset()], include_tests=True).run(...)`` on ``Dataset.from_pandas(df)`` (auto-inferred data
  definition), and ``snapshot.dict()`` for the verdict. Its HTML is *not* saved, which only makes Evidently's
  figure smaller (the comparison is conservative).
- ``task``: the whole drift task in a plain process configured for Airflow as the tests do (own ``AIRFLOW_HOME``,
  unit-test mode): import ``mlops_airflow.operators.drift``, construct ``DataDriftOperator`` (``report=`` passed
  only where the constructor has it), ``execute`` with the verdict, the HTML report, the retraining event and MLflow
  logging ON against a real MLflow server that this benchmark starts (SQLite backend, proxied artifacts) and stops.
- ``engine`` (``--skip-engine`` to leave out): ``drift_engine.detect_drift`` alone, the floor under the task.

Ratio = Evidently's wall / the task's wall per size; item 1 asks >= 20 at 1,000,000 rows, >= 5 at 200,000 and >= 1
everywhere. Agreement = same drifted flag per column in Evidently's snapshot and in the task's verdict. With
``--repeat N`` the runs alternate and the fastest wall of each counts (the highest peak RSS). Then, when
``bench/drift_scale.py`` is there, its 100M-row map-reduce run (``run_mapreduce``; ``--scale-rows`` passed through,
``--skip-scale`` to leave out). Prints the tables and writes ``bench/results/drift.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "drift.json"
CHUNK = 500_000
ROW_GROUP = 250_000
DEFAULT_SIZES = (800, 200_000, 1_000_000)
CHILD_TIMEOUT_S = 3600



def _local(uri: str) -> Path:
    """A verdict's ``file://`` report URI (or plain path) as a local path."""
    from urllib.parse import unquote, urlsplit

    return Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri)

def required_ratio(rows: int) -> float:
    """Item 1 of the issue: >= 20x at 1,000,000 rows, >= 5x at 200,000, never slower at any size."""
    if rows >= 1_000_000:
        return 20.0
    if rows >= 200_000:
        return 5.0
    return 1.0


# name -> (reference generator, drift applied to the current window); shifts in reference standard deviations.
#   kind: normal | lognormal | gamma | uniform | exponential | student | poisson | beta | binary | levels
COLUMNS: list[tuple[str, str, dict[str, float]]] = [
    ("normal_same", "normal", {}),
    ("lognormal_same", "lognormal", {}),
    ("gamma_same", "gamma", {}),
    ("uniform_same", "uniform", {}),
    ("exponential_same", "exponential", {}),
    ("student_t_same", "student", {}),
    ("poisson_counts_same", "poisson", {}),
    ("beta_same", "beta", {}),
    ("levels_same", "levels", {}),
    ("nulls_same", "normal_nulls", {}),
    ("shift_0.030", "normal", {"shift": 0.03}),
    ("shift_0.080", "normal", {"shift": 0.08}),
    ("shift_0.099", "normal", {"shift": 0.099}),
    ("shift_0.101", "normal", {"shift": 0.101}),
    ("shift_0.120", "gamma", {"shift": 0.12}),
    ("shift_0.250", "student", {"shift": 0.25}),
    ("scale_x1.3", "normal", {"scale": 1.3}),
    ("log_shift_0.15", "lognormal", {"log_shift": 0.15}),
    ("binary_share", "binary", {"share": 0.06}),
    ("counts_shift", "poisson", {"shift": 0.2}),
]


def _draw(kind: str, drift: dict[str, float], n: int, rng: Any) -> Any:
    import numpy as np

    log_shift = drift.get("log_shift", 0.0)
    if kind in ("normal", "normal_nulls"):
        x = rng.normal(50.0, 10.0, n)
        std = 10.0
    elif kind == "lognormal":
        x = rng.lognormal(1.0 + log_shift, 0.5, n)
        std = 0.0
    elif kind == "gamma":
        x = rng.gamma(2.0, 3.0, n)
        std = 3.0 * np.sqrt(2.0)
    elif kind == "uniform":
        x = rng.uniform(0, 1, n)
        std = 1 / np.sqrt(12)
    elif kind == "exponential":
        x = rng.exponential(2.0, n)
        std = 2.0
    elif kind == "student":
        x = rng.standard_t(5, n)
        std = np.sqrt(5 / 3)
    elif kind == "poisson":
        x = rng.poisson(20.0, n).astype("float64")
        std = np.sqrt(20.0)
    elif kind == "beta":
        x = rng.beta(2.0, 5.0, n)
        std = 0.16
    elif kind == "binary":
        x = (rng.random(n) < 0.3 + drift.get("share", 0.0)).astype("float64")
        std = 0.0
    elif kind == "levels":
        x = rng.choice([1.0, 2.0, 3.0, 4.0], n, p=[0.4, 0.3, 0.2, 0.1])
        std = 0.0
    else:
        raise ValueError(kind)
    if "scale" in drift:
        x = (x - x.mean()) * drift["scale"] + x.mean()
    if "shift" in drift:
        x = x + drift["shift"] * std
    if kind == "poisson":
        x = np.round(x)  # counts stay integers (many atoms)
    if kind == "normal_nulls":
        x[rng.random(n) < 0.01] = np.nan
        x[rng.random(n) < 0.0001] = np.inf
    return x


def generate(path: Path, rows: int, n_columns: int, current: bool, seed: int) -> Path:
    """Write ``rows`` x ``n_columns`` in chunks (bounded memory); the current side gets the drift."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    specs = [COLUMNS[i % len(COLUMNS)] for i in range(n_columns)]
    names = [name if i < len(COLUMNS) else f"{name}_{i // len(COLUMNS)}" for i, (name, _, _) in enumerate(specs)]
    schema = pa.schema([(name, pa.float64()) for name in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for chunk, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            rng = np.random.default_rng([seed, chunk])
            arrays = [pa.array(_draw(kind, drift if current else {}, n, rng)) for _, kind, drift in specs]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=ROW_GROUP)
    return path


# -- environment: Airflow for a plain process, a real MLflow server ------------------------------------------------


def child_env(work: Path) -> dict[str, str]:
    """What tests/conftest.py sets before Airflow is imported, with this run's own ``AIRFLOW_HOME``; the same for
    every child (Evidently's too), so neither side runs in a different environment."""
    home = work / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__MLOPS__DATA_ROOT": str(home / "data"),
        "AIRFLOW__MLOPS__INCLUDE_DIR": str(ROOT / "include"),
        "AIRFLOW__MLOPS__PROJECT_ROOT": str(ROOT),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(base: Path, timeout: float = 240) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, proxied file artifacts) on a free loopback port, as
    tests/conftest.py's ``mlflow_server`` fixture; its process group is killed on exit."""
    base.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(base / "server.log", "wb")  # noqa: SIM115 - owned by the server process
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{base}/mlflow.db",
            "--artifacts-destination",
            str(base / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"MLflow server exited: {(base / 'server.log').read_text(errors='replace')[-2000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MLflow server did not answer /health in {timeout:.0f} s") from None
                time.sleep(0.5)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server's workers are in its process group
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()


# -- one measurement -----------------------------------------------------------------------------------------------


def measure(kind: str, env: dict[str, str], python_flags: tuple[str, ...] = (), **args: Any) -> dict[str, Any]:
    """Run ``bench._drift_child`` ``kind`` in a fresh interpreter; wall from process start to exit (parent side)."""
    cmd = [sys.executable, *python_flags, "-m", "bench._drift_child", kind, json.dumps(args)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {kind} failed (exit {proc.returncode}): {proc.stderr[-3000:] or proc.stdout[-3000:]}"
        )
    result = {"wall_s": round(wall, 3), **json.loads(lines[-1].removeprefix("BENCH-RESULT "))}
    if python_flags:
        result["stderr"] = proc.stderr
    return result


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run's figures, the highest peak RSS of all, and every wall."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    best["walls_s"] = [r["wall_s"] for r in runs]
    return best


def import_profile(env: dict[str, str], top: int = 15, **args: Any) -> list[dict[str, Any]]:
    """``-X importtime`` of one task child: the top-level imports with the largest cumulative cost."""
    run = measure("task", env, ("-X", "importtime"), **args)
    rows = []
    for line in run["stderr"].splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        if depth <= 1:
            rows.append({"module": name.strip(), "depth": depth, "cumulative_s": int(parts[1]) / 1e6})
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:top]


# -- comparison ----------------------------------------------------------------------------------------------------


def evidently_columns(path: Path) -> dict[str, dict[str, Any]]:
    """Per-column ``{score, threshold, method, drifted}`` from the Evidently child's snapshot (no Airflow import)."""
    from mlops_airflow.monitoring.verdict import drift_verdict_from_snapshot

    return drift_verdict_from_snapshot(json.loads(path.read_text()), 0.5)["metrics"]["per_column"]


def agreement(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cols = sorted(theirs)
    same = [c for c in cols if c in ours and bool(ours[c]["drifted"]) == bool(theirs[c]["drifted"])]
    methods = [c for c in cols if c in ours and ours[c]["method"] == theirs[c]["method"]]
    diffs = [
        abs(float(ours[c]["score"]) - float(theirs[c]["score"]))
        for c in cols
        if c in ours and ours[c]["score"] is not None and theirs[c]["score"] is not None
    ]
    return {
        "columns": len(cols),
        "same_verdict": len(same),
        "same_method": len(methods),
        "max_abs_score_diff": max(diffs) if diffs else None,
        "disagreeing": [c for c in cols if c not in same],
        "missing": sorted(set(cols) - set(ours)),
    }


def run_size(
    rows: int, args: argparse.Namespace, work: Path, env: dict[str, str], tracking_uri: str | None
) -> dict[str, Any]:
    """Generate ``rows`` x ``columns`` per side, measure each kind (``--repeat`` times, interleaved), compare."""
    folder = work / f"rows_{rows}"
    t = time.perf_counter()
    ref = generate(folder / "reference.parquet", rows, args.columns, current=False, seed=1)
    cur = generate(folder / "current.parquet", rows, args.columns, current=True, seed=2)
    print(f"generated {rows:,} x {args.columns} per side in {time.perf_counter() - t:.1f} s", flush=True)
    files = {"reference": str(ref), "current": str(cur)}
    skip = {"evidently": args.skip_evidently, "task": False, "engine": args.skip_engine}
    kinds = [kind for kind, skipped in skip.items() if not skipped]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for attempt in range(args.repeat):
        for kind in kinds:
            out = folder / f"{kind}_{attempt}.json"
            extra: dict[str, Any] = {}
            if kind == "task":
                extra = {
                    "report_dir": str(folder / f"reports_{attempt}"),
                    "tracking_uri": tracking_uri,
                    "run_id": f"bench_{rows}_{attempt}",
                    "report": args.report,
                }
            print(f"  {rows:>11,} rows: {kind} (try {attempt + 1}/{args.repeat}) ...", end=" ", flush=True)
            run = measure(kind, env, **files, out=str(out), **extra)
            run["out"] = out
            runs[kind].append(run)
            print(f"{run['wall_s']:.2f} s, peak {run['peak_rss_mb']:.0f} MiB", flush=True)

    entry: dict[str, Any] = {"rows": rows, "columns": args.columns, "repeat": args.repeat}
    for kind, kind_runs in runs.items():
        best = best_of(kind_runs)
        out = Path(best.pop("out"))
        entry[kind] = best
        if kind == "evidently":
            best["per_column"] = evidently_columns(out)
        elif kind == "task":
            verdict = json.loads(out.read_text())
            best["per_column"] = verdict["metrics"]["per_column"]
            best["verdict"] = {k: verdict.get(k) for k in ("passed", "drift_share", "drifted_columns", "engine")}
            best["report_bytes"] = _local(verdict["report_path"]).stat().st_size
            best["other_s"] = round(best["wall_s"] - best["import_s"] - best["construct_s"] - best["execute_s"], 3)
        else:
            best["per_column"] = json.loads(out.read_text())
        best["n_drifted"] = sum(bool(c["drifted"]) for c in best["per_column"].values())
        for run in kind_runs:
            run.pop("out", None)
    if "evidently" in entry:
        entry["ratio_wall"] = round(entry["evidently"]["wall_s"] / entry["task"]["wall_s"], 2)
        entry["ratio_worker"] = round(entry["evidently"]["worker_s"] / entry["task"]["worker_s"], 2)
        entry["memory_ratio"] = round(entry["task"]["peak_rss_mb"] / entry["evidently"]["peak_rss_mb"], 3)
        entry["required_ratio"] = required_ratio(rows)
        entry["meets_target"] = entry["ratio_worker"] >= entry["required_ratio"]
        entry["meets_target_fresh_process"] = entry["ratio_wall"] >= entry["required_ratio"]
        entry["agreement_task_vs_evidently"] = agreement(entry["task"]["per_column"], entry["evidently"]["per_column"])
        if "engine" in entry:
            entry["agreement_engine_vs_evidently"] = agreement(
                entry["engine"]["per_column"], entry["evidently"]["per_column"]
            )
    if not args.keep_data:
        shutil.rmtree(folder, ignore_errors=True)
    return entry


# -- the 100M map-reduce run (bench/drift_scale.py, someone else's module) ----------------------------------------


def run_scale(scale_rows: int | None) -> dict[str, Any]:
    """``bench.drift_scale.run_mapreduce`` with its defaults (``--scale-rows`` passed to its rows parameter)."""
    try:
        module = importlib.import_module("bench.drift_scale")
    except ModuleNotFoundError as err:
        if err.name != "bench.drift_scale":
            raise
        return {"status": "absent", "note": "bench/drift_scale.py does not exist yet: no 100M map-reduce run"}
    run_mapreduce = getattr(module, "run_mapreduce", None)
    if not callable(run_mapreduce):
        return {"status": "absent", "note": "bench/drift_scale.py has no run_mapreduce(): no 100M map-reduce run"}
    kwargs: dict[str, Any] = {}
    if scale_rows is not None:
        params = inspect.signature(run_mapreduce).parameters
        name = next((n for n in ("rows", "n_rows", "total_rows", "scale_rows") if n in params), None)
        if name is None:
            raise SystemExit(
                f"--scale-rows: bench.drift_scale.run_mapreduce{inspect.signature(run_mapreduce)} "
                "takes no rows parameter"
            )
        kwargs[name] = scale_rows
    print(
        f"running bench.drift_scale.run_mapreduce({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) ...", flush=True
    )
    started = time.perf_counter()
    result = run_mapreduce(**kwargs)
    seconds = time.perf_counter() - started
    table = None
    for name in ("format_table", "table"):
        fmt = getattr(module, name, None)
        if callable(fmt):
            table = fmt(result)
            break
    return {"status": "ran", "kwargs": kwargs, "seconds": round(seconds, 2), "result": result, "table": table}


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(item, f"{prefix}{key}.")
    elif not isinstance(value, list | tuple):
        yield prefix.rstrip("."), value


def print_scale(scale: dict[str, Any]) -> None:
    print()
    if scale["status"] != "ran":
        print(scale["note"])
        return
    print(f"100M map-reduce run (bench.drift_scale.run_mapreduce, {scale['seconds']:.1f} s in all):")
    if isinstance(scale.get("table"), str):
        print(scale["table"])
    elif isinstance(scale["result"], dict):
        for key, value in _flat(scale["result"]):
            print(f"  {key:48} {value}")
    else:
        print(f"  {scale['result']!r}")


# -- output --------------------------------------------------------------------------------------------------------

TITLES = (
    "rows/side",
    "evidently s",
    "ours s",
    "ratio",
    "target",
    "fresh: evid s",
    "ours s",
    "ratio",
    "evid RSS MiB",
    "ours RSS MiB",
    "agree",
    "execute s",
    "engine s",
)
WIDTHS = (11, 11, 8, 7, 8, 13, 8, 7, 12, 12, 6, 9, 8)


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None or value is False else f"{value:{spec}}{suffix}"


def print_table(results: dict[str, Any]) -> None:
    sizes = results["sizes"]
    print()
    print(
        f"drift benchmark: the whole drift task vs plain Evidently Report([DataDriftPreset()]), {results['columns']} "
        f"numeric columns, both sides the same size, drift injected into {len(results['drift_injected'])}"
    )
    header = " ".join(title.rjust(width) for title, width in zip(TITLES, WIDTHS, strict=True))
    print(header)
    print("-" * len(header))
    for entry in sizes:
        ev, task, eng = entry.get("evidently"), entry["task"], entry.get("engine")
        agree = entry.get("agreement_task_vs_evidently")
        target = ""
        if ev is not None:
            target = f">={entry['required_ratio']:g} " + ("ok" if entry["meets_target"] else "NO")
        cells = [
            f"{entry['rows']:,}",
            _num(ev and ev.get("worker_s"), ".2f"),
            _num(task.get("worker_s"), ".2f"),
            _num(ev and entry.get("ratio_worker"), ".1f", "x"),
            target,
            _num(ev and ev["wall_s"], ".2f"),
            _num(task["wall_s"], ".2f"),
            _num(ev and entry["ratio_wall"], ".1f", "x"),
            _num(ev and ev["peak_rss_mb"], ".0f"),
            _num(task["peak_rss_mb"], ".0f"),
            f"{agree['same_verdict']}/{agree['columns']}" if agree else "-",
            _num(task["execute_s"], ".2f"),
            _num(eng and eng["wall_s"], ".2f"),
        ]
        print(" ".join(cell.rjust(width) for cell, width in zip(cells, WIDTHS, strict=True)))
    notes = [
        "evidently s / ours s / ratio (the item-1 target): the cost in an Airflow worker, measured inside the process "
        "from the first import the work needs to its end; Airflow's Task SDK is already loaded there (the "
        "supervisor forks the task process), so our task's clock starts after it; Evidently needs no Airflow.",
        "fresh: parent-side wall of a fresh interpreter, start to exit (interpreter, all imports, Airflow's Task SDK "
        "included for ours, read, compute, write).",
        "evidently = import evidently, pyarrow -> pandas, Report([DataDriftPreset()], include_tests=True).run on "
        "auto-inferred Dataset.from_pandas, snapshot.dict(); its HTML is NOT saved (conservative: favours Evidently).",
        "ours = import mlops_airflow.operators.drift + DataDriftOperator(...).execute: verdict, HTML report, "
        "retraining event, MLflow logging "
        + (f"ON (real server {results['tracking_uri']})" if results["tracking_uri"] else "OFF")
        + f"; report={results['report_param']!r}"
        + ("" if results["report_param"] else " (the operator has no report= parameter: its own default)")
        + ". The MLflow server's own memory is not in 'ours RSS'.",
        "agree = columns with the same drifted flag in Evidently's snapshot and in our verdict; "
        "engine s = drift_engine.detect_drift alone, fresh interpreter.",
    ]
    if results["repeat"] > 1:
        notes.append(f"best wall of {results['repeat']} interleaved runs each; peak RSS = highest of them.")
    for note in notes:
        print("  note: " + note)
    for entry in sizes:
        for key in ("agreement_task_vs_evidently", "agreement_engine_vs_evidently"):
            a = entry.get(key) or {}
            if a.get("disagreeing") or a.get("missing"):
                print(f"DISAGREEMENT at {entry['rows']:,} rows, {key}: {a['disagreeing']} missing {a['missing']}")
        mods = entry["task"].get("modules_loaded") or []
        if "evidently" in mods:
            print(f"  note: at {entry['rows']:,} rows our task imported evidently (modules loaded: {', '.join(mods)})")
    if results.get("meets_targets") is not None:
        print(f"item 1 ratios: {'MET' if results['meets_targets'] else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench drift", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="rows per side (800,200000,1000000)")
    parser.add_argument("--rows", type=int, default=None, help="one size only (same as --sizes ROWS)")
    parser.add_argument("--columns", type=int, default=20, help="numeric columns (20)")
    parser.add_argument("--skip-evidently", action="store_true", help="do not run plain Evidently")
    parser.add_argument("--skip-engine", action="store_true", help="do not time the drift engine alone")
    parser.add_argument("--skip-scale", action="store_true", help="do not run bench/drift_scale.py's 100M run")
    parser.add_argument("--scale-rows", type=int, default=None, help="rows for the map-reduce run (its default)")
    parser.add_argument("--report", default="engine", help="the operator's report= where it has one (engine)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per kind and size, interleaved; fastest counts")
    parser.add_argument("--tracking-uri", default=None, help="an MLflow server to log to (default: start one)")
    parser.add_argument("--no-mlflow", action="store_true", help="task with log_to_mlflow=False (no server)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed import run of each side")
    parser.add_argument("--import-profile", action="store_true", help="-X importtime of the task at the first size")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write data and servers (a temp folder)")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [args.rows] if args.rows else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        parser.error("--sizes needs positive row counts and --repeat >= 1")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-bench-drift-"))
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(work)
    results: dict[str, Any] = {
        "benchmark": "drift",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "columns": args.columns,
        "repeat": args.repeat,
        "drift_injected": {
            name: drift for name, _, drift in (COLUMNS[i % len(COLUMNS)] for i in range(args.columns)) if drift
        },
        "baseline": "Report([DataDriftPreset()], include_tests=True).run + snapshot.dict(), HTML not saved",
        "sizes": [],
    }
    try:
        with contextlib.ExitStack() as stack:
            tracking_uri = None
            if not args.no_mlflow:
                tracking_uri = args.tracking_uri
                if tracking_uri is None:
                    t = time.perf_counter()
                    tracking_uri = stack.enter_context(mlflow_server(work / "mlflow"))
                    print(f"MLflow server {tracking_uri} up in {time.perf_counter() - t:.1f} s", flush=True)
            results["tracking_uri"] = tracking_uri
            if not args.no_warmup:
                for kind in ("warm-task", *(() if args.skip_evidently else ("warm-evidently",))):
                    run = measure(kind, env)
                    print(f"warm-up {kind.removeprefix('warm-')}: imports {run['import_s']:.1f} s (untimed)")
            for rows in sizes:
                entry = run_size(rows, args, work, env, tracking_uri)
                results["sizes"].append(entry)
                # Saved after every size: a later failure does not lose the measured ones.
                _write(args.out, results)
            results["report_param"] = results["sizes"][0]["task"].get("report_param")
            if args.import_profile:
                rows = sizes[0]
                folder = work / "profile"
                ref = generate(folder / "reference.parquet", rows, args.columns, current=False, seed=1)
                cur = generate(folder / "current.parquet", rows, args.columns, current=True, seed=2)
                results["import_profile"] = import_profile(
                    env,
                    reference=str(ref),
                    current=str(cur),
                    out=str(folder / "task.json"),
                    report_dir=str(folder / "reports"),
                    tracking_uri=tracking_uri,
                    run_id="bench_profile",
                    report=args.report,
                )
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)

    checked = [e for e in results["sizes"] if "meets_target" in e]
    results["meets_targets"] = all(e["meets_target"] for e in checked) if checked else None
    print_table(results)
    if results.get("import_profile"):
        print(f"\ntop imports of the task child at {sizes[0]:,} rows (-X importtime, cumulative):")
        for row in results["import_profile"]:
            print(f"  {row['cumulative_s']:7.2f} s  {'  ' * row['depth']}{row['module']}")

    if args.skip_scale:
        results["scale"] = {"status": "skipped", "note": "--skip-scale: no 100M map-reduce run"}
    else:
        results["scale"] = run_scale(args.scale_rows)
    print_scale(results["scale"])
    _write(args.out, results)
    print(f"results: {args.out}")
    return 0


def _write(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
