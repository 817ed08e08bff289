"""Drift at scale as map-reduce: one drift check over 100,000,000 current rows x 20 columns, as mapped tasks.

    python -m bench drift_scale                                  # 100M current rows, 10M reference rows
    python -m bench drift_scale --rows 2000000 --reference-rows 1000000 --partitions 4   # a quick run

Data: 20 numeric columns (float32 and small integers: normal, skewed, heavy-tailed, counts, 4 levels, binary, one
with nulls, NaN and infinities), drift injected into half of them (location shifts of 0.03 to 0.25 reference
standard deviations, two at 0.099/0.101 next to the Wasserstein threshold of 0.1, a scale change, a log-scale shift,
a changed binary share, shifted counts). Each side is written as ``--partitions`` Parquet files (row groups of
500,000 rows), generated chunk by chunk (memory: one chunk), 2 files at a time, each in its own process.

The check runs as the DAG would run it (``monitoring.drift_partitions``), every task in its own interpreter (imports,
reading and computing all count), ``--parallel`` at a time, documents passed as files:

    summarize (one task per partition and side) -> plan -> count (one per partition and side)
      -> refine -> [count -> refine ...] -> finish

Each task reports its peak RSS (``VmHWM`` of the child, read at its end) and its compute time; the parent times it
(wall). Then the agreement check: on the first ``--check-rows`` rows of each side (whole files), the same
map-reduce against the single pass ``drift_engine.detect_drift`` in one process: same method and drifted flag per
column, the single pass's score inside the partitioned interval. The data is deleted at the end
(``--keep-data`` keeps it). Prints a table and writes ``bench/results/drift_scale.json``.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "drift_scale.json"
CHUNK = 500_000
ROW_GROUP = 500_000
CHILD_TIMEOUT_S = 3600

# name -> (generator, drift of the current side, Arrow type); shifts in reference standard deviations.
COLUMNS: list[tuple[str, str, dict[str, float], str]] = [
    ("normal_same", "normal", {}, "float32"),
    ("lognormal_same", "lognormal", {}, "float32"),
    ("gamma_same", "gamma", {}, "float32"),
    ("uniform_same", "uniform", {}, "float32"),
    ("exponential_same", "exponential", {}, "float32"),
    ("student_t_same", "student", {}, "float32"),
    ("beta_same", "beta", {}, "float32"),
    ("nulls_same", "normal_nulls", {}, "float32"),
    ("poisson_counts_same", "poisson", {}, "int32"),
    ("levels_same", "levels", {}, "int8"),
    ("shift_0.030", "normal", {"shift": 0.03}, "float32"),
    ("shift_0.080", "normal", {"shift": 0.08}, "float32"),
    ("shift_0.099", "normal", {"shift": 0.099}, "float32"),
    ("shift_0.101", "normal", {"shift": 0.101}, "float32"),
    ("shift_0.120", "gamma", {"shift": 0.12}, "float32"),
    ("shift_0.250", "student", {"shift": 0.25}, "float32"),
    ("scale_x1.3", "normal", {"scale": 1.3}, "float32"),
    ("log_shift_0.15", "lognormal", {"log_shift": 0.15}, "float32"),
    ("binary_share", "binary", {"share": 0.06}, "int8"),
    ("counts_shift", "poisson", {"shift": 0.2}, "int32"),
]


def _specs(n_columns: int) -> list[tuple[str, str, dict[str, float], str]]:
    out = []
    for i in range(n_columns):
        name, kind, drift, dtype = COLUMNS[i % len(COLUMNS)]
        out.append((name if i < len(COLUMNS) else f"{name}_{i // len(COLUMNS)}", kind, drift, dtype))
    return out


def _draw(kind: str, drift: dict[str, float], n: int, rng: Any, dtype: str) -> Any:
    """One chunk of one column as a pyarrow array."""
    import numpy as np
    import pyarrow as pa

    mask = None
    if kind in ("normal", "normal_nulls"):
        x, std = rng.normal(50.0, 10.0, n), 10.0
    elif kind == "lognormal":
        x, std = rng.lognormal(1.0 + drift.get("log_shift", 0.0), 0.5, n), 0.0
    elif kind == "gamma":
        x, std = rng.gamma(2.0, 3.0, n), 3.0 * np.sqrt(2.0)
    elif kind == "uniform":
        x, std = rng.uniform(0, 1, n), 1 / np.sqrt(12)
    elif kind == "exponential":
        x, std = rng.exponential(2.0, n), 2.0
    elif kind == "student":
        x, std = rng.standard_t(5, n), np.sqrt(5 / 3)
    elif kind == "beta":
        x, std = rng.beta(2.0, 5.0, n), 0.16
    elif kind == "poisson":  # counts: many atoms; the shift moves the rate by shift * sd
        x, std = rng.poisson(20.0 + drift.get("shift", 0.0) * np.sqrt(20.0), n), 0.0
    elif kind == "binary":
        x, std = (rng.random(n) < 0.3 + drift.get("share", 0.0)), 0.0
    elif kind == "levels":
        x, std = rng.choice(np.array([1, 2, 3, 4]), n, p=[0.4, 0.3, 0.2, 0.1]), 0.0
    else:
        raise ValueError(kind)
    if kind != "poisson":
        if "scale" in drift:
            x = (x - 50.0) * drift["scale"] + 50.0
        if "shift" in drift:
            x = x + drift["shift"] * std
    if kind == "normal_nulls":
        x[rng.random(n) < 0.005] = np.nan
        x[rng.random(n) < 0.0001] = np.inf
        mask = rng.random(n) < 0.005
    return pa.array(np.asarray(x).astype(dtype), mask=mask)


def generate_file(path: Path, rows: int, n_columns: int, current: bool, seed: list[int]) -> dict[str, Any]:
    """Write one Parquet file of ``rows`` rows, chunk by chunk (memory: one chunk of every column)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    specs = _specs(n_columns)
    schema = pa.schema([(name, pa.from_numpy_dtype(np.dtype(dtype))) for name, _, _, dtype in specs])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for chunk, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            rng = np.random.default_rng([*seed, chunk])
            arrays = [_draw(kind, drift if current else {}, n, rng, dtype) for _, kind, drift, dtype in specs]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=ROW_GROUP)
            del arrays
    tmp.rename(path)
    return {"bytes": path.stat().st_size}


# -- children (each task in its own interpreter) -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): ``VmHWM`` on Linux (``ru_maxrss`` would start from the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT / "plugins"))
    op = spec["op"]
    out: dict[str, Any] = {}
    if op == "generate":
        out = generate_file(Path(spec["path"]), spec["rows"], spec["columns"], spec["current"], spec["seed"])
    elif op == "single":
        from mlops_airflow.monitoring.drift_engine import detect_drift

        result = detect_drift(spec["reference"], spec["current"], workers=spec.get("workers", 2))
        Path(spec["out"]).write_text(
            json.dumps(
                {c: {k: v for k, v in r.to_dict().items() if k != "histogram"} for c, r in result.columns.items()}
            )
        )
    else:
        from mlops_airflow.monitoring import drift_partitions as dp

        if op == "summarize":
            dp.save(dp.summarize(spec["partition"], None, spec["side"]), spec["out"])
        elif op == "plan":
            dp.save(dp.plan(spec["reference"], spec["current"]), spec["out"])
        elif op == "count":
            dp.save(dp.count(spec["partition"], spec["plan"], spec["side"]), spec["out"])
        elif op == "refine":
            nxt = dp.refine(spec["plan"], spec["reference"], spec["current"])
            dp.save(nxt, spec["out"])
            out["needs_count"] = nxt["needs_count"]
            out["pending"] = [c for c, e in nxt["columns"].items() if e["op"] is not None]
        elif op == "finish":
            result = dp.finish(spec["plan"], spec.get("reference", []), spec.get("current", []))
            Path(spec["out"]).write_text(
                json.dumps(
                    {c: {k: v for k, v in r.to_dict().items() if k != "histogram"} for c, r in result.columns.items()}
                )
            )
        else:
            raise SystemExit(f"unknown child op {op!r}")
    if spec.get("out") and Path(spec["out"]).exists():
        out["out_bytes"] = Path(spec["out"]).stat().st_size
    return {**out, "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": _peak_rss_mb()}


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One task in a fresh interpreter; its wall time (process start to exit) and what it reported."""
    cmd = [sys.executable, "-m", "bench.drift_scale", "--child", json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"task {spec['op']} failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    return {"op": spec["op"], "wall_s": round(wall, 3), **json.loads(lines[-1].removeprefix("BENCH-RESULT "))}


def _run_all(specs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    if parallel <= 1 or len(specs) <= 1:
        return [run_task(s) for s in specs]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(run_task, specs))


# -- the map-reduce ------------------------------------------------------------------------------------------------


def _step(name: str, runs: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    return {
        "step": name,
        "tasks": len(runs),
        "wall_s": round(wall, 2),
        "task_wall_max_s": max(r["wall_s"] for r in runs),
        "task_wall_sum_s": round(sum(r["wall_s"] for r in runs), 2),
        "peak_rss_max_mb": max(r["peak_rss_mb"] for r in runs),
        "out_mb_max": round(max(r.get("out_bytes", 0) for r in runs) / 2**20, 2),
    }


def mapreduce(
    ref_parts: list[str], cur_parts: list[str], docs: Path, parallel: int, max_rounds: int = 10
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every round of ``drift_partitions`` as separate tasks; the per-column result and the per-step figures."""
    docs.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []

    def timed(name: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t = time.perf_counter()
        runs = _run_all(specs, parallel)
        steps.append(_step(name, runs, time.perf_counter() - t))
        print(
            f"  {name:18} {len(runs):3} tasks {steps[-1]['wall_s']:8.1f} s  "
            f"max peak RSS {steps[-1]['peak_rss_max_mb']:7.0f} MB",
            flush=True,
        )
        return runs

    sides = (("reference", ref_parts), ("current", cur_parts))
    summaries: dict[str, list[str]] = {"reference": [], "current": []}
    specs = []
    for side, parts in sides:
        for i, part in enumerate(parts):
            out = str(docs / f"summary-{side}-{i:04d}.json")
            summaries[side].append(out)
            specs.append({"op": "summarize", "partition": part, "side": side, "out": out})
    timed("summarize (map)", specs)
    plan_uri = str(docs / "plan-0.json")
    timed("plan (reduce)", [{"op": "plan", **summaries, "out": plan_uri}])
    rounds = 0
    pending: list[str] = []
    while True:
        counts: dict[str, list[str]] = {"reference": [], "current": []}
        specs = []
        for side, parts in sides:
            for i, part in enumerate(parts):
                out = str(docs / f"count-{rounds}-{side}-{i:04d}.json")
                counts[side].append(out)
                specs.append({"op": "count", "partition": part, "plan": plan_uri, "side": side, "out": out})
        timed(f"count r{rounds} (map)", specs)
        next_uri = str(docs / f"plan-{rounds + 1}.json")
        runs = timed(f"refine r{rounds}", [{"op": "refine", "plan": plan_uri, **counts, "out": next_uri}])
        rounds += 1
        plan_uri = next_uri
        pending.append(",".join(runs[0]["pending"]))
        if not runs[0]["needs_count"] or rounds >= max_rounds:
            break
    out = str(docs / "result.json")
    timed("finish (reduce)", [{"op": "finish", "plan": plan_uri, "out": out}])
    result = json.loads(Path(out).read_text())
    return {"columns": result, "count_rounds": rounds, "refined_columns": pending[:-1]}, steps


def _verdicts(columns: dict[str, Any]) -> dict[str, Any]:
    return {
        c: {
            k: r[k]
            for k in ("method", "score", "score_low", "score_high", "drifted", "certain", "exact", "passes", "kind")
        }
        for c, r in columns.items()
    }


def agreement(part: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    cols = sorted(single)
    same = []
    for c in cols:
        p, s = part.get(c), single[c]
        if p is None or p["method"] != s["method"] or bool(p["drifted"]) != bool(s["drifted"]):
            continue
        if p["score_low"] is not None and s["score"] is not None:  # both intervals hold the exact score
            tol = 1e-9 * max(1.0, abs(s["score"]))
            s_low, s_high = (s["score"], s["score"]) if s["exact"] else (s["score_low"], s["score_high"])
            if s_high < p["score_low"] - tol or s_low > p["score_high"] + tol:
                continue
        same.append(c)
    return {
        "columns": len(cols),
        "same_verdict": len(same),
        "disagreeing": [c for c in cols if c not in same],
        "uncertain_partitioned": [c for c in cols if c in part and not part[c]["certain"]],
    }


def run_mapreduce(
    rows: int = 100_000_000,
    columns: int = 20,
    partitions: int = 20,
    workdir: str | Path | None = None,
    *,
    reference_rows: int = 10_000_000,
    check_rows: int | None = 10_000_000,
    parallel: int = 2,
    keep_data: bool = False,
    out: str | Path | None = RESULTS,
) -> dict[str, Any]:
    """Generate both sides, run the drift check as map-reduce tasks, check it against the single pass.

    :param rows: current rows (``partitions`` files).
    :param reference_rows: reference rows (files of the same size as the current side's).
    :param check_rows: rows per side (whole files) for the agreement check against ``detect_drift``; None/0 = none.
    :param parallel: tasks run at a time.
    """
    per_file = -(-rows // partitions)
    ref_files = max(1, -(-reference_rows // per_file))
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mlops-bench-drift-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    need = int((rows + reference_rows) * sum(1 if d == "int8" else 4 for *_, d in _specs(columns)) * 1.1)
    free = shutil.disk_usage(work).free
    if free < need + (2 << 30):
        raise SystemExit(f"{work}: {free / 2**30:.1f} GiB free, the data needs ~{need / 2**30:.1f} GiB (+2 GiB)")
    results: dict[str, Any] = {
        "rows": rows,
        "reference_rows": reference_rows,
        "columns": columns,
        "partitions": {"current": partitions, "reference": ref_files},
        "rows_per_partition": per_file,
        "parallel": parallel,
        "workdir": str(work),
        "drift_injected": {name: drift for name, _, drift, _ in _specs(columns) if drift},
    }
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        gen = []
        for side, n_rows, n_files, seed in (
            ("reference", reference_rows, ref_files, 1),
            ("current", rows, partitions, 2),
        ):
            for i in range(n_files):
                n = min(per_file, n_rows - i * per_file)
                if n > 0:
                    path = work / side / f"part-{i:04d}.parquet"
                    gen.append(
                        {
                            "op": "generate",
                            "path": str(path),
                            "rows": n,
                            "columns": columns,
                            "current": side == "current",
                            "seed": [seed, i],
                        }
                    )
        print(
            f"generating {rows:,} current + {reference_rows:,} reference rows x {columns} in {len(gen)} files ...",
            flush=True,
        )
        runs = _run_all(gen, parallel)
        results["generate"] = {
            **_step("generate", runs, time.perf_counter() - t),
            "gib_on_disk": round(sum(r["bytes"] for r in runs) / 2**30, 2),
        }
        print(
            f"  generated in {results['generate']['wall_s']:.1f} s, {results['generate']['gib_on_disk']} GiB",
            flush=True,
        )
        ref_parts = sorted(str(p) for p in (work / "reference").glob("part-*.parquet"))
        cur_parts = sorted(str(p) for p in (work / "current").glob("part-*.parquet"))

        print(
            f"map-reduce over {len(cur_parts)} current + {len(ref_parts)} reference partitions, {parallel} at a time:",
            flush=True,
        )
        t = time.perf_counter()
        full, steps = mapreduce(ref_parts, cur_parts, work / "docs", parallel)
        results["mapreduce"] = {
            "wall_s": round(time.perf_counter() - t, 2),
            "steps": steps,
            "count_rounds": full["count_rounds"],
            "refined_columns": full["refined_columns"],
            "per_column": _verdicts(full["columns"]),
            "peak_rss_max_mb": max(s["peak_rss_max_mb"] for s in steps),
            "map_peak_rss_max_mb": max(s["peak_rss_max_mb"] for s in steps if "(map)" in s["step"]),
            "reduce_peak_rss_max_mb": max(s["peak_rss_max_mb"] for s in steps if "(map)" not in s["step"]),
        }

        if check_rows:
            n_files = max(1, check_rows // per_file)
            check = {"rows_per_side": min(n_files * per_file, rows, reference_rows)}
            sub = {}
            for side, parts in (("reference", ref_parts), ("current", cur_parts)):
                sub[side] = parts[:n_files]
                folder = work / f"check_{side}"
                folder.mkdir(exist_ok=True)
                for p in sub[side]:
                    link = folder / Path(p).name
                    if not link.exists():
                        os.link(p, link)
            print(f"agreement check on {check['rows_per_side']:,} rows per side: map-reduce ...", flush=True)
            t = time.perf_counter()
            small, small_steps = mapreduce(sub["reference"], sub["current"], work / "docs_check", parallel)
            check["mapreduce_wall_s"] = round(time.perf_counter() - t, 2)
            check["mapreduce_peak_rss_max_mb"] = max(s["peak_rss_max_mb"] for s in small_steps)
            print("  single pass (drift_engine.detect_drift, streamed, 2 threads) ...", flush=True)
            single_out = work / "single.json"
            run = run_task(
                {
                    "op": "single",
                    "reference": str(work / "check_reference"),
                    "current": str(work / "check_current"),
                    "out": str(single_out),
                    "workers": 2,
                }
            )
            single = json.loads(single_out.read_text())
            check["single_pass"] = {"wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"]}
            check["per_column_single"] = _verdicts(single)
            check["per_column_mapreduce"] = _verdicts(small["columns"])
            check["agreement"] = agreement(small["columns"], single)
            results["check"] = check
    finally:
        if not keep_data:
            shutil.rmtree(work, ignore_errors=True)
    results["total_wall_s"] = round(time.perf_counter() - started, 2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
        results["results_file"] = str(out)
    return results


def _fmt_score(r: dict[str, Any]) -> str:
    if r["score"] is None:
        return "-"
    if r["score_low"] is None:
        return f"{r['score']:.6g}"
    return f"{r['score']:.6g} [{r['score_low']:.6g}, {r['score_high']:.6g}]"


def format_table(results: dict[str, Any]) -> str:
    """The benchmark's table (what ``main`` prints; ``bench drift`` prints it too)."""
    mr = results["mapreduce"]
    lines = [
        f"drift map-reduce: {results['rows']:,} current rows x {results['columns']} columns in "
        f"{results['partitions']['current']} partitions, {results['reference_rows']:,} reference rows in "
        f"{results['partitions']['reference']}; {results['rows_per_partition']:,} rows a partition, "
        f"{results['parallel']} tasks at a time",
        f"data: {results['generate']['gib_on_disk']} GiB of Parquet, generated in "
        f"{results['generate']['wall_s']:.1f} s "
        f"(max peak RSS of a generator {results['generate']['peak_rss_max_mb']:.0f} MB)",
        "",
        f"{'step':20} {'tasks':>5} {'wall s':>8} {'max task s':>10} {'sum task s':>10} {'max peak RSS MB':>15} "
        f"{'max doc MB':>10}",
    ]
    lines.append("-" * len(lines[-1]))
    for s in mr["steps"]:
        lines.append(
            f"{s['step']:20} {s['tasks']:5} {s['wall_s']:8.1f} {s['task_wall_max_s']:10.1f} "
            f"{s['task_wall_sum_s']:10.1f} "
            f"{s['peak_rss_max_mb']:15.0f} {s['out_mb_max']:10.2f}"
        )
    lines.append(
        f"{'map-reduce total':20} {sum(s['tasks'] for s in mr['steps']):5} {mr['wall_s']:8.1f}"
        f"{'':22} {mr['peak_rss_max_mb']:15.0f}   (map tasks {mr['map_peak_rss_max_mb']:.0f} MB, reduces "
        f"{mr['reduce_peak_rss_max_mb']:.0f} MB)"
    )
    lines.append(f"count rounds: {mr['count_rounds']} (refined: {'; '.join(mr['refined_columns']) or 'none'})")
    lines.append(f"total wall (generation, map-reduce, check): {results['total_wall_s']:.1f} s")
    lines.append("")
    check = results.get("check")
    header = (
        f"{'column':22} {'method':13} {'drifted':>7} {'certain':>7} {'passes':>6}  "
        f"score [low, high] ({results['rows']:,} rows)"
    )
    if check:
        header += f"  |  single pass at {check['rows_per_side']:,}/side: drifted, agrees"
    lines.append(header)
    lines.append("-" * len(header))
    for col, r in mr["per_column"].items():
        line = (
            f"{col:22} {r['method'] or '-':13} {str(r['drifted']):>7} {str(r['certain']):>7} {r['passes']:6}  "
            f"{_fmt_score(r)}"
        )
        if check:
            s = check["per_column_single"].get(col, {})
            agrees = col not in check["agreement"]["disagreeing"]
            line += f"  |  {s.get('drifted')!s:5} {'yes' if agrees else 'NO'}"
        lines.append(line)
    n_drift = sum(bool(r["drifted"]) for r in mr["per_column"].values())
    lines.append(f"drifted: {n_drift}/{len(mr['per_column'])} columns at {results['rows']:,} rows")
    if check:
        a = check["agreement"]
        lines.append(
            f"agreement at {check['rows_per_side']:,} rows/side: map-reduce vs single pass {a['same_verdict']}/"
            f"{a['columns']} columns (method, drifted, single-pass score inside the interval); disagreeing: "
            f"{a['disagreeing'] or 'none'}; uncertain: {a['uncertain_partitioned'] or 'none'}"
        )
        lines.append(
            f"  map-reduce {check['mapreduce_wall_s']:.1f} s "
            f"(max peak RSS {check['mapreduce_peak_rss_max_mb']:.0f} MB); "
            f"single pass {check['single_pass']['wall_s']:.1f} s, peak RSS {check['single_pass']['peak_rss_mb']:.0f} MB"
        )
    if results.get("results_file"):
        lines.append(f"results: {results['results_file']}")
    return "\n".join(lines)


#: run by `python -m bench drift` (after the task-level table), not again by `python -m bench` on its own.
PART_OF = "drift"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench drift_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000, help="current rows (100,000,000)")
    parser.add_argument("--reference-rows", type=int, default=10_000_000, help="reference rows (10,000,000)")
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=20, help="current partitions (files); 20")
    parser.add_argument("--check-rows", type=int, default=10_000_000, help="rows per side of the check; 0 = none")
    parser.add_argument("--parallel", type=int, default=2, help="tasks at a time (2)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("BENCH-RESULT " + json.dumps(_child(json.loads(args.child))), flush=True)
        return 0
    results = run_mapreduce(
        args.rows,
        args.columns,
        args.partitions,
        args.workdir,
        reference_rows=args.reference_rows,
        check_rows=args.check_rows,
        parallel=args.parallel,
        keep_data=args.keep_data,
        out=args.out,
    )
    print()
    print(format_table(results))
    disagreeing = results.get("check", {}).get("agreement", {}).get("disagreeing")
    return 1 if disagreeing else 0


if __name__ == "__main__":
    sys.exit(main())
