"""A partitioned drift check as mapped Airflow tasks reaches the single pass's verdict.

``dag.test()`` runs in its own interpreter (fresh metadata database, as tests/integration/test_gpu_training_kpo.py
does): summarize[] per side -> plan -> count[] per side -> verdict, with the documents under a work folder and
XCom carrying their URIs; a downstream task writes the verdict it got to a file. The single pass is
``DataDriftOperator`` on the same rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlops_airflow.operators.drift import DataDriftOperator
from mlops_airflow.operators.drift_partitioned import (
    DriftPlanOperator,
    DriftVerdictOperator,
    partitioned_drift_check,
)
from mlops_airflow.storage import local_path

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def _write(folder: Path, sizes: list[int], shifted: bool, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i, n in enumerate(sizes):
        s = 1.0 if shifted else 0.0
        table = pa.table({
            "amount": rng.gamma(2.0, 10.0 + 2.0 * s, n),
            "steady": rng.normal(0.0, 1.0, n),
            "calls": rng.poisson(2.0 + 0.5 * s, n).clip(0, 8).astype("int64"),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2] if not shifted else [0.4, 0.3, 0.3]),
        })
        path = folder / f"part-{i}.parquet"
        pq.write_table(table, path, row_group_size=max(1, n // 2))
        paths.append(str(path))
    return paths


DAG_FILE = '''
from datetime import datetime
import json

from airflow.sdk import DAG, task

from mlops_airflow.operators.drift_partitioned import DriftPartitionsOperator, partitioned_drift_check

with DAG("partitioned_drift_test", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"],
         default_args={"retries": 0}):
    current = DriftPartitionsOperator(task_id="list_current", path=CURRENT_DIR, rows_per_partition=1500)
    group = partitioned_drift_check(
        group_id="feature_drift", reference_partitions=REFERENCE, current_partitions=current.output,
        work_dir=WORK_DIR, report_dir=REPORT_DIR, model_name="bench_model", log_to_mlflow=False,
        plan_options={"bins": 256},
    )

    @task
    def keep(verdict: dict) -> None:
        with open(OUT, "w") as fh:
            json.dump(verdict, fh)

    keep(group.children["feature_drift.verdict"].output)
'''
RUNNER = '''
import sys
from airflow.utils import db
db.initdb()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dr = bag.get_dag("partitioned_drift_test").test()
print("DAGRUN_STATE", dr.state)
'''


def test_mapped_tasks_reach_the_single_pass_verdict(tmp_path: Path) -> None:
    reference = _write(tmp_path / "reference", [1200, 800, 1000], shifted=False, seed=1)
    current_dir = tmp_path / "current"
    _write(current_dir, [900, 1100, 700, 1300], shifted=True, seed=2)
    single = DataDriftOperator(
        task_id="single", reference_path=str(tmp_path / "reference"), current_path=str(current_dir),
        report_dir=str(tmp_path / "single"), log_to_mlflow=False,
    ).execute({"dag": SimpleNamespace(dag_id="single"), "run_id": "r"})

    dags = tmp_path / "dags"
    dags.mkdir()
    out = tmp_path / "verdict.json"
    source = textwrap.dedent(DAG_FILE)
    values = {"CURRENT_DIR": str(current_dir), "REFERENCE": reference, "WORK_DIR": str(tmp_path / "docs"),
              "REPORT_DIR": str(tmp_path / "reports"), "OUT": str(out)}
    for name, value in values.items():
        source = source.replace(name, repr(value))
    (dags / "partitioned_drift_test.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "PYTHONPATH": str(ROOT / "plugins"),
    })
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(dags)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert "DAGRUN_STATE success" in proc.stdout, (proc.stdout[-4000:], proc.stderr[-4000:])
    verdict = json.loads(out.read_text())

    assert verdict["passed"] == single["passed"] and verdict["drifted_columns"] == single["drifted_columns"]
    assert verdict["drift_share"] == single["drift_share"] and verdict["drift_share"] > 0
    for col, want in single["metrics"]["per_column"].items():
        got = verdict["metrics"]["per_column"][col]
        assert (got["method"], got["threshold"], got["drifted"]) == (want["method"], want["threshold"],
                                                                     want["drifted"]), col
        if want["method"] not in ("wasserstein", "ks"):  # counts-based: the same score; streamed: bracketed
            assert got["score"] == pytest.approx(want["score"], rel=1e-9), col
    assert verdict["metrics"]["reference_rows"] == 3000 and verdict["metrics"]["current_rows"] == 4000
    assert verdict["metrics"]["column_types"]["calls"] == "categorical"
    assert len(list((tmp_path / "docs").rglob("*.reference.summary.json"))) == 3  # one per reference file
    assert len(list((tmp_path / "docs").rglob("*.current.summary.json"))) >= 2  # row-group ranges of ~1500 rows
    assert local_path(verdict["report_path"]).read_text().count("<svg") == 4


def test_the_task_group_and_bad_options(tmp_path: Path) -> None:
    from airflow.sdk import DAG

    with DAG("shape", schedule=None) as dag:
        partitioned_drift_check(group_id="g", reference_partitions=["r0", "r1"], current_partitions=["c0"],
                                work_dir=str(tmp_path), report_dir=str(tmp_path), log_to_mlflow=False)
    ids = set(dag.task_dict)
    assert ids == {"g.summarize_reference", "g.summarize_current", "g.plan", "g.count_reference",
                   "g.count_current", "g.verdict"}
    assert dag.task_dict["g.verdict"].upstream_task_ids == {"g.plan", "g.count_reference", "g.count_current"}
    with pytest.raises(ValueError, match=r"unknown plan options \['nope'\]"):
        DriftPlanOperator(task_id="p", reference_summaries=[], current_summaries=[], work_dir="w",
                          plan_options={"nope": 1})
    with pytest.raises(ValueError, match="no Evidently report"):
        DriftVerdictOperator(task_id="v", plan="p", reference_counts=[], current_counts=[], report_dir="x",
                             report="evidently")


def test_partition_tasks_read_and_write_through_the_object_store(tmp_path: Path, s3_store) -> None:
    """No shared disk: the partitions, the documents and the report live on S3; XCom (the return values) carries
    s3:// URIs only, and the verdict equals the single pass on local copies of the same files."""
    from mlops_airflow import storage
    from mlops_airflow.operators.drift_partitioned import (
        DriftCountOperator,
        DriftPartitionsOperator,
        DriftSummarizeOperator,
    )

    local_ref = _write(tmp_path / "reference", [900, 700], shifted=False, seed=3)
    local_cur = _write(tmp_path / "current", [800, 600], shifted=True, seed=4)
    for path in [*local_ref, *local_cur]:
        storage.put_file(path, f"{s3_store.root}/lake/{Path(path).parent.name}/{Path(path).name}")
    work, reports = f"{s3_store.root}/drift-docs", f"{s3_store.root}/reports"
    ctx = {"dag": SimpleNamespace(dag_id="s3_drift"), "run_id": "r1"}

    parts = {side: DriftPartitionsOperator(task_id=f"list_{side}", path=f"{s3_store.root}/lake/{side}",
                                           rows_per_partition=10_000).execute(ctx)
             for side in ("reference", "current")}
    assert all(p["path"].startswith(f"{s3_store.root}/lake/") for ps in parts.values() for p in ps)

    def mapped(task_id: str, index: int) -> dict:  # the context of one mapped task instance
        return {**ctx, "ti": SimpleNamespace(task_id=task_id, map_index=index, try_number=1)}

    summaries = {side: [DriftSummarizeOperator(task_id=f"summarize_{side}", partition=p, side=side,
                                               work_dir=work).execute(mapped(f"summarize_{side}", i))
                        for i, p in enumerate(ps)]
                 for side, ps in parts.items()}
    plan = DriftPlanOperator(task_id="plan", reference_summaries=summaries["reference"],
                             current_summaries=summaries["current"], work_dir=work,
                             plan_options={"bins": 256}).execute(ctx)
    counts = {side: [DriftCountOperator(task_id=f"count_{side}", partition=p, side=side, plan=plan,
                                        work_dir=work).execute(mapped(f"count_{side}", i)) for i, p in enumerate(ps)]
              for side, ps in parts.items()}
    verdict = DriftVerdictOperator(
        task_id="verdict", plan=plan, reference_counts=counts["reference"], current_counts=counts["current"],
        reference_partitions=parts["reference"], current_partitions=parts["current"], report_dir=reports,
        log_to_mlflow=False,
    ).execute(ctx)
    uris = [plan, *summaries["reference"], *summaries["current"], *counts["reference"], *counts["current"]]
    assert all(u.startswith(f"{work}/s3_drift/r1/") for u in uris) and len(set(uris)) == len(uris)
    assert f"{work}/s3_drift/r1/summarize_reference__1.reference.summary.json" in uris
    assert verdict["report_path"] == f"{reports}/s3_drift/r1/verdict/data_drift.html"
    assert verdict["verdict_uri"] == f"{reports}/s3_drift/r1/verdict/drift_verdict.json"
    assert storage.read_json(verdict["verdict_uri"])["drift_share"] == verdict["drift_share"]
    assert "<svg" in storage.read_text(verdict["report_path"])

    single = DataDriftOperator(task_id="single", reference_path=str(tmp_path / "reference"),
                               current_path=str(tmp_path / "current"), report_dir=str(tmp_path / "single"),
                               log_to_mlflow=False).execute(ctx)
    assert verdict["drifted_columns"] == single["drifted_columns"] and verdict["passed"] == single["passed"]
    for col, want in single["metrics"]["per_column"].items():
        got = verdict["metrics"]["per_column"][col]
        assert (got["method"], got["drifted"]) == (want["method"], want["drifted"]), col
