"""`python -m bench materialization` at a tiny size: both paths run in their own child and agree byte for byte.

The real figures come from `make bench` (1,000,000 rows, 1x and 4x the interval); this keeps the benchmark from
rotting. Runtime: ~30 s on an idle 2-core machine (two child processes import Airflow and Feast, one `feast apply`).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.unit


def test_materialization_bench_small_run(tmp_path):
    from bench.__main__ import discover
    from bench.materialization import main

    assert "materialization" in discover()
    out = tmp_path / "materialization.json"
    status = main(["--rows", "6000", "--days", "3", "--entities", "800", "--scales", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    run = result["runs"]["1x"]
    assert status == 0 and run["identical_online_store"] is True
    assert run["ours"]["online"]["rows"] == run["feast"]["online"]["rows"] > 0
    assert [w["index"] for w in run["ours"]["windows"]] == [0, 1, 2]
    assert sum(w["rows_read"] for w in run["ours"]["windows"]) == run["rows"] == 6000
    for kind in ("feast", "ours"):
        assert run[kind]["peak_rss_mb"] >= run[kind]["rss_before_mb"] > 0
    assert run["time_ratio_ours_vs_feast"] > 0
