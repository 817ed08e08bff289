"""`python -m bench drift` at a tiny size: the harness runs the whole drift task in a fresh child and writes its
table and JSON.

The real figures come from `make bench` (800, 200,000 and 1,000,000 rows x 20, plain Evidently alongside, MLflow
logging on, then the 100M map-reduce run); this keeps the harness from rotting. Evidently, MLflow and the scale run
are left out here (MLflow logging off), so it takes ~25 s on an idle 2-core machine: two child interpreters (the
task imports Airflow's Task SDK) and the data generator.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.unit


def test_drift_bench_small_run(tmp_path, capsys):
    from bench.__main__ import discover
    from bench.drift import main

    assert "drift" in discover()
    out = tmp_path / "drift.json"
    argv = ["--sizes", "300", "--columns", "4", "--skip-evidently", "--skip-scale", "--no-mlflow", "--no-warmup"]
    status = main([*argv, "--workdir", str(tmp_path / "work"), "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())

    assert status == 0
    assert result["columns"] == 4 and result["tracking_uri"] is None
    assert result["scale"]["status"] == "skipped"
    (entry,) = result["sizes"]
    assert entry["rows"] == 300 and "evidently" not in entry and "ratio_wall" not in entry
    task, engine = entry["task"], entry["engine"]
    for run in (task, engine):
        assert run["wall_s"] > run["seconds"] > 0 and run["peak_rss_mb"] > 0
        assert len(run["per_column"]) == 4
        assert all(isinstance(c["drifted"], bool) for c in run["per_column"].values())
    assert task["wall_s"] >= task["import_s"] + task["execute_s"] > 0
    assert task["verdict"]["passed"] in (True, False) and task["report_bytes"] > 0
    assert task["mlflow_run_id"] is None
    assert {c: v["drifted"] for c, v in task["per_column"].items()} == {
        c: v["drifted"] for c, v in engine["per_column"].items()
    }
    assert "rows/side" in printed and "evidently s" in printed and "ratio" in printed
    assert "--skip-scale: no 100M map-reduce run" in printed


def test_ratio_table_and_scale_pass_through(monkeypatch, capsys):
    """The parts the tiny run skips: ratio, target and agreement columns, and the call into bench.drift_scale."""
    from bench import drift

    col = {"score": 0.2, "threshold": 0.1, "method": "wasserstein", "drifted": True}
    theirs = {"a": col, "b": {**col, "drifted": False}}
    entry = {
        "rows": 1_000_000,
        "evidently": {"wall_s": 150.0, "worker_s": 149.0, "peak_rss_mb": 5000.0},
        "task": {"wall_s": 5.0, "worker_s": 4.0, "peak_rss_mb": 400.0, "import_s": 3.0, "execute_s": 1.5},
        "engine": {"wall_s": 2.0},
        "ratio_wall": 30.0,
        "ratio_worker": 37.25,
        "required_ratio": drift.required_ratio(1_000_000),
        "meets_target": True,
        "agreement_task_vs_evidently": drift.agreement({"a": col, "b": col}, theirs),
    }
    assert entry["agreement_task_vs_evidently"]["disagreeing"] == ["b"]
    assert (drift.required_ratio(800), drift.required_ratio(200_000), entry["required_ratio"]) == (1.0, 5.0, 20.0)
    results = {
        "columns": 20,
        "drift_injected": {"x": {}},
        "sizes": [entry],
        "tracking_uri": "http://h",
        "repeat": 1,
        "report_param": "engine",
        "meets_targets": True,
    }
    drift.print_table(results)
    printed = capsys.readouterr().out
    assert "37.2x" in printed and "30.0x" in printed and ">=20 ok" in printed
    assert "1/2" in printed and "item 1 ratios: MET" in printed

    calls = []
    fake = SimpleNamespace(run_mapreduce=lambda rows=100_000_000: calls.append(rows) or {"rows": rows, "wall_s": 1.0})
    monkeypatch.setitem(sys.modules, "bench.drift_scale", fake)
    scale = drift.run_scale(12_345)
    assert calls == [12_345] and scale["status"] == "ran" and scale["result"]["rows"] == 12_345
    drift.print_scale(scale)
    assert "100M map-reduce run" in capsys.readouterr().out
