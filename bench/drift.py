"""Drift benchmark: the fast drift engine vs plain Evidently ``DataDriftPreset`` on the same Parquet data.

    python -m bench drift                       # 1,000,000 x 20 (Evidently takes ~2.5 min), then 10,000,000 rows
    python -m bench drift --rows 100000 --big-rows 0          # a quick run
    python -m bench drift --skip-evidently                     # ours only

Data: ``--columns`` numeric columns (normal, skewed, heavy-tailed, integer counts, low-cardinality, one with
nulls and infinities), reference and current drawn with different seeds; drift injected into about half of the
columns as location shifts of 0.03 to 0.25 reference standard deviations (0.099 and 0.101 sit right at
Evidently's Wasserstein threshold of 0.1), a scale change, a log-scale shift and a changed share of a binary
column. Written as Parquet (row groups of 250,000 rows) in a temporary folder.

Each measurement runs in its own subprocess (a fresh interpreter: imports, reading the Parquet files and the
computation all count); the child reports its compute time and its peak RSS (``VmHWM``), the
parent its wall time. Agreement = same drifted/not-drifted decision per column as plain Evidently (and, at
``--big-rows``, as our engine holding the whole column in memory, i.e. the exact statistic). Prints a table and
writes ``bench/results/drift.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "drift.json"
CHUNK = 500_000
ROW_GROUP = 250_000
REPORT_SAMPLE = 50_000

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


# -- children (each in its own interpreter) ------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): ``VmHWM`` on Linux. ``ru_maxrss`` is the fallback only: after
    fork/exec it starts from the parent's RSS, which would bill the data generator to the child."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_evidently(ref: str, cur: str, out: str) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    reference, current = pd.read_parquet(ref), pd.read_parquet(cur)
    definition = DataDefinition(numerical_columns=list(reference.columns))
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    snap = snapshot.dict()
    Path(out).write_text(json.dumps({"metrics": snap.get("metrics", []), "tests": snap.get("tests", [])}, default=str))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def child_fast(ref: str, cur: str, out: str, max_exact_rows: int, workers: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "plugins"))
    from mlops_airflow.monitoring.drift_engine import detect_drift

    started = time.perf_counter()
    result = detect_drift(ref, cur, max_exact_rows=max_exact_rows, workers=workers)
    seconds = time.perf_counter() - started
    Path(out).write_text(json.dumps({c: r.to_dict() for c, r in result.columns.items()}))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def child_report(ref: str, cur: str, out: str, rows: int) -> dict[str, Any]:
    """What the operator adds with engine='fast': Evidently's HTML report on a bounded random sample."""
    sys.path.insert(0, str(ROOT / "plugins"))
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    from mlops_airflow.monitoring.drift_engine import ParquetSource, sample_rows

    started = time.perf_counter()
    columns = ParquetSource(ref).schema.names
    reference = sample_rows(ref, columns, rows, seed=0).to_pandas()
    current = sample_rows(cur, columns, rows, seed=1).to_pandas()
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    snapshot.save_html(out)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def _child(argv: list[str]) -> int:
    kind, ref, cur, out, *rest = argv
    if kind == "evidently":
        stats = child_evidently(ref, cur, out)
    elif kind == "fast":
        stats = child_fast(ref, cur, out, int(rest[0]), int(rest[1]))
    elif kind == "report":
        stats = child_report(ref, cur, out, int(rest[0]))
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print("BENCH-RESULT " + json.dumps(stats), flush=True)
    return 0


def measure(kind: str, ref: Path, cur: Path, out: Path, *extra: object, timeout: float = 3600) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.drift", "--child", kind, str(ref), str(cur), str(out), *map(str, extra)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {kind} failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), **json.loads(lines[-1].removeprefix("BENCH-RESULT "))}


# -- comparison ----------------------------------------------------------------------------------------------------


def evidently_columns(path: Path) -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "plugins"))
    from mlops_airflow.operators.monitoring import drift_verdict_from_snapshot

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
        "share": round(len(same) / len(cols), 4) if cols else None,
        "max_abs_score_diff": max(diffs) if diffs else None,
        "disagreeing": [c for c in cols if c not in same],
    }


def _fmt_rows(n: int) -> str:
    return f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench drift", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side for the comparison (1,000,000)")
    parser.add_argument("--columns", type=int, default=20, help="numeric columns (20)")
    parser.add_argument(
        "--big-rows", type=int, default=10_000_000, help="rows per side for the memory run of our engine; 0 = skip"
    )
    parser.add_argument("--skip-evidently", action="store_true", help="do not run plain Evidently")
    parser.add_argument("--skip-report", action="store_true", help="do not time the sampled HTML report")
    parser.add_argument("--workers", type=int, default=2, help="threads of our engine (2)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the data (a temp folder)")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-bench-drift-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "rows": args.rows,
        "columns": args.columns,
        "big_rows": args.big_rows,
        "workers": args.workers,
        "drift_injected": {name: drift for name, _, drift in COLUMNS[: args.columns] if drift},
        "runs": {},
    }
    rows_table: list[tuple[str, int, dict[str, Any], str, str]] = []
    try:
        t = time.perf_counter()
        ref = generate(work / "reference.parquet", args.rows, args.columns, current=False, seed=1)
        cur = generate(work / "current.parquet", args.rows, args.columns, current=True, seed=2)
        print(f"generated {args.rows:,} x {args.columns} per side in {time.perf_counter() - t:.1f} s ({work})")

        evid = None
        if not args.skip_evidently:
            print("running plain Evidently DataDriftPreset (minutes at 1M rows) ...", flush=True)
            run = measure("evidently", ref, cur, work / "evidently.json")
            evid = evidently_columns(work / "evidently.json")
            n_drift = sum(bool(c["drifted"]) for c in evid.values())
            results["runs"]["evidently"] = {**run, "per_column": evid}
            rows_table.append(("plain Evidently DataDriftPreset", args.rows, run, f"{n_drift}/{len(evid)}", "-"))

        for label, key, max_exact in (
            ("fast engine (exact, in memory)", "fast_exact", max(args.rows, 2_000_000)),
            ("fast engine (streamed, bounded)", "fast_streamed", 0),
        ):
            print(f"running {label} ...", flush=True)
            run = measure("fast", ref, cur, work / f"{key}.json", max_exact, args.workers)
            per_col = json.loads((work / f"{key}.json").read_text())
            n_drift = sum(bool(c["drifted"]) for c in per_col.values())
            entry: dict[str, Any] = {**run, "per_column": per_col}
            agree = "-"
            if evid is not None:
                entry["agreement_vs_evidently"] = agreement(per_col, evid)
                a = entry["agreement_vs_evidently"]
                agree = f"{a['same_verdict']}/{a['columns']} ({100 * a['share']:.0f}%)"
            results["runs"][key] = entry
            rows_table.append((label, args.rows, run, f"{n_drift}/{len(per_col)}", agree))

        if not args.skip_report:
            print("running the sampled Evidently HTML report ...", flush=True)
            run = measure("report", ref, cur, work / "report.html", REPORT_SAMPLE)
            results["runs"]["report_sample"] = {**run, "sample_rows_per_side": REPORT_SAMPLE}
            rows_table.append((f"HTML report, Evidently on {REPORT_SAMPLE:,}/side", args.rows, run, "-", "-"))

        if args.big_rows:
            for path in (ref, cur):
                path.unlink()
            t = time.perf_counter()
            big_ref = generate(work / "big_reference.parquet", args.big_rows, args.columns, current=False, seed=1)
            big_cur = generate(work / "big_current.parquet", args.big_rows, args.columns, current=True, seed=2)
            print(f"generated {args.big_rows:,} x {args.columns} per side in {time.perf_counter() - t:.1f} s")
            print("running the fast engine (streamed) at big rows ...", flush=True)
            run = measure("fast", big_ref, big_cur, work / "big_streamed.json", 0, args.workers)
            streamed = json.loads((work / "big_streamed.json").read_text())
            print("running the fast engine with whole columns in memory (the exact statistic) ...", flush=True)
            exact_run = measure("fast", big_ref, big_cur, work / "big_exact.json", args.big_rows, args.workers)
            exact = json.loads((work / "big_exact.json").read_text())
            a = agreement(streamed, exact)
            results["runs"]["big_streamed"] = {**run, "per_column": streamed, "agreement_vs_exact": a}
            results["runs"]["big_exact_in_memory"] = {**exact_run, "per_column": exact}
            n_drift = sum(bool(c["drifted"]) for c in streamed.values())
            agree = f"{a['same_verdict']}/{a['columns']} ({100 * a['share']:.0f}%) vs exact"
            rows_table.append(
                ("fast engine (streamed, bounded)", args.big_rows, run, f"{n_drift}/{len(streamed)}", agree)
            )
            n_exact = sum(bool(c["drifted"]) for c in exact.values())
            rows_table.append(
                ("fast engine (exact, in memory)", args.big_rows, exact_run, f"{n_exact}/{len(exact)}", "-")
            )
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)

    if "evidently" in results["runs"] and "fast_exact" in results["runs"]:
        ev, fa = results["runs"]["evidently"], results["runs"]["fast_exact"]
        results["speedup_wall"] = round(ev["wall_s"] / fa["wall_s"], 1)
        results["memory_ratio"] = round(fa["peak_rss_mb"] / ev["peak_rss_mb"], 3)

    header = (
        f"{'engine':44} {'rows/side':>12} {'wall s':>8} {'compute s':>10} {'peak RSS MB':>12} {'drifted':>8}  agreement"
    )
    print()
    print(
        f"drift benchmark: {args.columns} numeric columns, drift injected into "
        f"{len(results['drift_injected'])} (shifts 0.03-0.25 sd, two at 0.099/0.101 next to the 0.1 threshold)"
    )
    print(header)
    print("-" * len(header))
    for label, rows, run, drifted, agree in rows_table:
        print(
            f"{label:44} {_fmt_rows(rows):>12} {run['wall_s']:8.1f} {run['seconds']:10.1f} "
            f"{run['peak_rss_mb']:12.0f} {drifted:>8}  {agree}"
        )
    if "speedup_wall" in results:
        print(
            f"fast (exact) vs plain Evidently: {results['speedup_wall']}x faster (wall), "
            f"{results['memory_ratio']}x the peak memory"
        )
    for key in ("fast_exact", "fast_streamed", "big_streamed"):
        run = results["runs"].get(key, {})
        for what in ("agreement_vs_evidently", "agreement_vs_exact"):
            if run.get(what, {}).get("disagreeing"):
                print(f"DISAGREEMENT {key} {what}: {run[what]['disagreeing']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
