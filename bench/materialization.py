"""Materialisation benchmark: our bounded, windowed materialisation vs Feast's own ``materialize``, same data.

    python -m bench.materialization                    # 1,000,000 rows over 8 days (1x), then 4,000,000 over 32 (4x)
    python -m bench materialization --rows 200000      # a quick run
    python -m bench --only materialization

Data: the bundled churn feature view (``customer_activity``: 5 features, entity ``customer_id``) over ``--entities``
customers; ``--rows`` rows spread over ``--days`` daily Parquet files (1x); the 4x run has four times the days at the
same density (4x the rows). Timestamps are unique, so "the newest row per entity" is well defined.

Each measurement runs in its own subprocess on its own copy of the feature repository (same Parquet files, own
registry and SQLite online store, ``feast apply`` done beforehand):

- ``feast``: ``FeatureStore.materialize(start, end)`` over the whole interval, as Feast users run it (e.g. from a
  ``PythonOperator``);
- ``ours``: ``FeastMaterializationWindowsOperator`` plans 1-day windows, then ``FeastMaterializeOperator`` runs each
  window in turn (in production each is a mapped task in its own process; here they share one, so the peak is the
  largest window's).

The child reports the time of the materialisation alone (imports and opening the store excluded), wall and CPU
(user + system), its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) before and after it, and a sha256 of the online
store's contents; the two paths must produce identical online stores. With ``--repeat N`` the runs alternate and
the fastest wall and the lowest CPU time of each path count (on a shared machine the wall clock mostly measures the
neighbours; CPU time is the steadier figure), the highest peak RSS. Prints a table and writes
``bench/results/materialization.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "materialization.json"
START = datetime(2026, 1, 5, tzinfo=UTC)
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- data and repositories --------------------------------------------------------------------------------------
def generate(folder: Path, rows: int, days: int, entities: int, seed: int) -> int:
    """``rows`` rows over ``days`` daily Parquet files; unique millisecond timestamps; returns rows written."""
    import numpy as np
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_day = rows // days
    total = 0
    for d in range(days):
        day = START + timedelta(days=d)
        ms = np.sort(rng.choice(86_400_000, per_day, replace=False))
        ts = pd.to_datetime(int(day.timestamp() * 1000) + ms, unit="ms", utc=True).as_unit("us")
        frame = pd.DataFrame({
            "customer_id": rng.integers(1, entities + 1, per_day, dtype="int64"),
            "event_timestamp": ts,
            "tenure_months": rng.gamma(2.0, 14.0, per_day).round(2),
            "monthly_charges": rng.normal(70, 25, per_day).round(2),
            "support_calls": rng.poisson(1.5, per_day).astype("int64"),
            "usage_hours": rng.gamma(3.0, 40.0, per_day).round(2),
            "payment_delay_days": rng.exponential(4.0, per_day).round(2),
            "churned": rng.integers(0, 2, per_day, dtype="int64"),
        })
        frame.to_parquet(folder / f"{day.date().isoformat()}.parquet", index=False, compression="snappy")
        total += per_day
    return total


def make_repo(base: Path, data: Path) -> Path:
    """A copy of the bundled feature repository reading ``data`` (symlinked), applied (registry + tables)."""
    repo = base
    repo.mkdir(parents=True)
    for name in ("features.py", ".feastignore", "feature_store.yaml"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    (repo / "data").mkdir()
    (repo / "data" / "customer_events").symlink_to(data, target_is_directory=True)
    proc = subprocess.run([sys.executable, "-m", "feast.cli.cli", "--chdir", str(repo), "apply"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"feast apply failed in {repo}: {proc.stderr[-2000:]}")
    return repo


# -- the measured child --------------------------------------------------------------------------------------------
def online_digest(repo: Path) -> dict[str, Any]:
    import hashlib
    import sqlite3

    conn = sqlite3.connect(repo / ".feast" / "online_store.db")
    try:
        table = next(n for (n,) in conn.execute("select name from sqlite_master where type='table'")
                     if n.endswith("customer_activity"))
        digest = hashlib.sha256()
        count = 0
        for row in conn.execute(f'select entity_key, feature_name, value, event_ts from "{table}" '  # noqa: S608
                                "order by entity_key, feature_name"):
            digest.update(repr(row).encode())
            count += 1
    finally:
        conn.close()
    return {"rows": count, "sha256": digest.hexdigest()}


def child(kind: str, repo: Path, start: str, end: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from feast import FeatureStore  # noqa: F401 - import time is not measured below

    # Both paths run as an Airflow task would: with Airflow and the operators imported (the heap a task process
    # has; Python's garbage collector walks it, so it changes the CPU time of anything that allocates a lot).
    from mlops_airflow.operators.feast_features import (
        FeastMaterializationWindowsOperator,
        FeastMaterializeOperator,
    )
    store = FeatureStore(repo_path=str(repo))
    store.list_feature_views()
    ready = time.perf_counter()
    cpu_ready = _cpu_seconds()
    rss_ready = _peak_rss_mb()
    windows: list[dict[str, Any]] = []
    if kind == "feast":
        store.materialize(start_date=datetime.fromisoformat(start), end_date=datetime.fromisoformat(end),
                          feature_views=["customer_activity"])
    else:
        plan = FeastMaterializationWindowsOperator(
            task_id="plan", start=start, end=end, max_window=timedelta(days=1)).execute({})
        for window in plan:
            w0 = time.perf_counter()
            result = FeastMaterializeOperator(task_id="materialize", window=window, feast_conn_id="feast_bench",
                                              ).execute({})
            windows.append({"index": window["index"], "seconds": round(time.perf_counter() - w0, 3),
                            "rows_read": result["rows_read"], "entities_written": result["entities_written"],
                            "peak_rss_mb_so_far": round(_peak_rss_mb(), 1)})
    done = time.perf_counter()
    return {
        "kind": kind,
        "materialize_seconds": round(done - ready, 3),
        "materialize_cpu_seconds": round(_cpu_seconds() - cpu_ready, 3),
        "setup_seconds": round(ready - t0, 3),
        "rss_before_mb": round(rss_ready, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "online": online_digest(repo),
        "windows": windows,
    }


def measure(kind: str, repo: Path, start: datetime, end: datetime, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_FEAST_BENCH": json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}}),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    wall = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.materialization", "--child", kind, "--repo", str(repo),
         "--start", start.isoformat(), "--end", end.isoformat()],
        capture_output=True, text=True, env=env, cwd=str(ROOT), check=False, timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = round(time.perf_counter() - wall, 3)
    return result


# -- the parent ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.materialization", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the 1x interval")
    parser.add_argument("--days", type=int, default=8, help="days in the 1x interval (one window per day)")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--scales", default="1,4", help="interval lengths to run, in multiples of --days")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="runs per path (interleaved); the fastest counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=["feast", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repo, args.start, args.end)))
        return 0

    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    results: dict[str, Any] = {
        "benchmark": "materialization",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {"rows_1x": args.rows, "days_1x": args.days, "entities": args.entities, "window": "1 day",
                   "online_store": "sqlite", "offline_store": "file (Parquet)"},
        "runs": {},
    }
    status = 0
    with tempfile.TemporaryDirectory(prefix="mlops-bench-mat-") as tmp:
        base = Path(tmp)
        for scale in scales:
            days = args.days * scale
            data = base / f"data_{scale}x"
            rows = generate(data, args.rows * scale, days, args.entities, args.seed + scale)
            start, end = START, START + timedelta(days=days)
            entry: dict[str, Any] = {"rows": rows, "days": days, "interval": [start.isoformat(), end.isoformat()]}
            applied = make_repo(base / f"repo_{scale}x_applied", data)
            tries: dict[str, list[dict[str, Any]]] = {"feast": [], "ours": []}
            for attempt in range(args.repeat):
                for kind in ("feast", "ours"):
                    repo = base / f"repo_{scale}x_{kind}_{attempt}"
                    shutil.copytree(applied, repo, symlinks=True)  # same registry and empty online tables
                    print(f"-- {scale}x ({rows:,} rows, {days} days): {kind} run {attempt + 1}/{args.repeat}",
                          flush=True)
                    tries[kind].append(measure(kind, repo, start, end, base / "airflow_home"))
                    shutil.rmtree(repo)
            for kind, runs in tries.items():  # the least disturbed run of each path counts (shared machine)
                entry[kind] = min(runs, key=lambda r: r["materialize_seconds"])
                entry[kind]["all_materialize_seconds"] = [r["materialize_seconds"] for r in runs]
                entry[kind]["all_materialize_cpu_seconds"] = [r["materialize_cpu_seconds"] for r in runs]
                entry[kind]["materialize_cpu_seconds"] = min(r["materialize_cpu_seconds"] for r in runs)
                entry[kind]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            same = all(r["online"] == tries["feast"][0]["online"] for r in tries["feast"] + tries["ours"])
            entry["identical_online_store"] = same
            entry["time_ratio_ours_vs_feast"] = round(
                entry["ours"]["materialize_seconds"] / entry["feast"]["materialize_seconds"], 3)
            entry["cpu_ratio_ours_vs_feast"] = round(
                entry["ours"]["materialize_cpu_seconds"] / entry["feast"]["materialize_cpu_seconds"], 3)
            status |= 0 if same else 1
            results["runs"][f"{scale}x"] = entry
    summarize(results)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return status


def summarize(results: dict[str, Any]) -> None:
    """Ratios from the recorded runs: best run of each path, and the median of all runs (steadier when shared)."""
    from statistics import median

    if not ("1x" in results["runs"] and "4x" in results["runs"]):
        return
    one, four = results["runs"]["1x"], results["runs"]["4x"]

    def med_ratio(run: dict[str, Any], key: str) -> float:
        return round(median(run["ours"][key]) / median(run["feast"][key]), 3)

    results["summary"] = {
        "time_ratio_1x": one["time_ratio_ours_vs_feast"],
        "time_ratio_4x": four["time_ratio_ours_vs_feast"],
        "cpu_ratio_1x": one["cpu_ratio_ours_vs_feast"],
        "cpu_ratio_4x": four["cpu_ratio_ours_vs_feast"],
        "median_time_ratio_1x": med_ratio(one, "all_materialize_seconds"),
        "median_time_ratio_4x": med_ratio(four, "all_materialize_seconds"),
        "median_cpu_ratio_1x": med_ratio(one, "all_materialize_cpu_seconds"),
        "median_cpu_ratio_4x": med_ratio(four, "all_materialize_cpu_seconds"),
        "overhead_1x_percent": round((one["time_ratio_ours_vs_feast"] - 1) * 100, 1),
        "peak_rss_mb": {
            "feast_1x": one["feast"]["peak_rss_mb"], "feast_4x": four["feast"]["peak_rss_mb"],
            "ours_1x": one["ours"]["peak_rss_mb"], "ours_4x": four["ours"]["peak_rss_mb"],
        },
        "peak_growth_4x_vs_1x": {
            "feast": round(four["feast"]["peak_rss_mb"] / one["feast"]["peak_rss_mb"], 2),
            "ours": round(four["ours"]["peak_rss_mb"] / one["ours"]["peak_rss_mb"], 2),
        },
    }


def print_table(results: dict[str, Any]) -> None:
    head = (f"{'interval':>9} {'rows':>10} {'path':>6} {'materialise s':>14} {'ratio':>6} {'CPU s':>7} "
            f"{'RSS before MB':>14} "
            f"{'peak RSS MB':>12} {'online rows':>12} {'same':>5}")
    print(head)
    print("-" * len(head))
    for name, run in results["runs"].items():
        for kind in ("feast", "ours"):
            r = run[kind]
            ratio = f"{run['time_ratio_ours_vs_feast']:.2f}" if kind == "ours" else "1.00"
            print(f"{name:>9} {run['rows']:>10,} {kind:>6} {r['materialize_seconds']:>14.2f} {ratio:>6} "
                  f"{r['materialize_cpu_seconds']:>7.2f} "
                  f"{r['rss_before_mb']:>14.0f} {r['peak_rss_mb']:>12.0f} {r['online']['rows']:>12,} "
                  f"{str(run['identical_online_store']):>5}")
    if "summary" in results:
        s = results["summary"]
        print(f"time ratio ours/feast: 1x {s['time_ratio_1x']:.2f} ({s['overhead_1x_percent']:+.1f}%), "
              f"4x {s['time_ratio_4x']:.2f}; CPU ratio 1x {s['cpu_ratio_1x']:.2f}, 4x {s['cpu_ratio_4x']:.2f}; "
              f"medians: time 1x {s['median_time_ratio_1x']:.2f}, 4x {s['median_time_ratio_4x']:.2f}, "
              f"CPU 1x {s['median_cpu_ratio_1x']:.2f}, 4x {s['median_cpu_ratio_4x']:.2f}; "
              f"peak RSS growth 4x/1x: feast {s['peak_growth_4x_vs_1x']['feast']:.2f}x, "
              f"ours {s['peak_growth_4x_vs_1x']['ours']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
