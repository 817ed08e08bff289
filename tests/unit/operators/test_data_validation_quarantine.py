"""Versioned quarantine and the evidence link of DataValidationGateOperator (real GX, real git + DVC).

A failed batch is kept three ways: moved to the local quarantine folder, copied into the data repository under
``quarantine/<ts>_<md5>/`` and versioned there (dvc add + git commit + dvc push). Nothing is ever deleted: a
second failure adds a folder, and the first stays reachable at its revision. Runtime: ~40 s on an idle 2-core
machine (GX import once, three DVC versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.hooks.dvc_repo import DvcHook
from mlops_airflow.links.mlflow import EvidenceLink
from mlops_airflow.operators.data_validation import DataValidationGateOperator

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "include/gx/customer_events.json"
LINK_KEY = EvidenceLink().xcom_key


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _op(tmp_path: Path, data: Path, **kw) -> DataValidationGateOperator:
    return DataValidationGateOperator(
        task_id="validate", data_path=str(data), suite_path=str(SUITE), quarantine_dir=str(tmp_path / "quarantine"),
        results_dir=str(tmp_path / "results"), key_columns=["customer_id"], **kw,
    )


def _bad_batch(generator, path: Path, day: str) -> Path:
    df = generator.generate_batch(date.fromisoformat(day), n_customers=120)
    df.loc[3, "tenure_months"] = -7.0  # out of range
    return generator.write_batch(df, path)


def _git_files(repo: Path, rev: str, prefix: str) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, prefix], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def test_failed_batches_are_versioned_in_dvc_and_never_deleted(tmp_path, generator, dvc_repo, context):
    repo = dvc_repo["repo"]
    first = _bad_batch(generator, tmp_path / "landing" / "2026-11-01.parquet", "2026-11-01")
    first_md5 = _md5(first)
    ctx = context(task_id="validate")
    with pytest.raises(DataValidationError) as err:
        _op(tmp_path, first, quarantine_dvc_conn_id="dvc_default").execute(ctx)
    message = str(err.value)
    assert "expect_column_values_to_be_between(tenure_months): 1 unexpected" in message
    assert "Versioned in DVC as quarantine/" in message and f"_{first_md5[:12]}" in message
    local = next((tmp_path / "quarantine").iterdir())
    version = json.loads((local / "quarantine_version.json").read_text())
    entry = repo / version["entry"]
    assert _md5(entry / first.name) == first_md5 and (entry / "quarantine.json").is_file()
    assert version["path"] == "quarantine" and version["md5"].endswith(".dir") and version["new_commit"]
    assert any(p.is_file() for p in dvc_repo["remote"].rglob("*")), "dvc push left the remote empty"
    assert ctx["ti"].xcom[LINK_KEY] == (tmp_path / "results" / "test_dag" / "test_run" / "validate" /
                                        "validation_summary.html").as_uri()

    second = _bad_batch(generator, tmp_path / "landing" / "2026-11-02.parquet", "2026-11-02")
    with pytest.raises(DataValidationError):
        _op(tmp_path, second, quarantine_dvc_conn_id="dvc_default").execute(context())
    heads = sorted(p.name for p in (repo / "quarantine").iterdir())
    assert len(heads) == 2 and version["entry"].split("/")[1] in heads
    # The first quarantined batch is reachable at its own revision, byte for byte, from the DVC remote.
    restored = DvcHook().materialize_version("quarantine", version["rev"], tmp_path / "restore" / "quarantine")
    assert _md5(restored / local.name / first.name) == first_md5
    assert _git_files(repo, "HEAD", "quarantine.dvc") == ["quarantine.dvc"]


def test_dvc_failure_keeps_the_local_quarantine_and_says_so(tmp_path, generator, dvc_repo):
    conn = json.loads(os.environ["AIRFLOW_CONN_DVC_DEFAULT"])
    conn["extra"]["remote_url"] = "/proc/no-such-remote"
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = json.dumps(conn)
    batch = _bad_batch(generator, tmp_path / "landing" / "b.parquet", "2026-11-03")
    md5 = _md5(batch)
    with pytest.raises(DataValidationError) as err:
        _op(tmp_path, batch, quarantine_dvc_conn_id="dvc_default").execute(
            {"dag": SimpleNamespace(dag_id="d"), "run_id": "r", "ti": SimpleNamespace(task_id="validate")})
    message = str(err.value)
    assert "Versioning it in DVC (dvc_default) FAILED" in message and "the local copy is intact" in message
    kept = next((tmp_path / "quarantine").iterdir()) / "b.parquet"
    assert _md5(kept) == md5 and f"Batch quarantined to {kept}." in message


def test_evidence_link_uses_the_served_url_when_given(tmp_path, generator, context):
    df = generator.generate_batch(date(2026, 11, 1), n_customers=60)
    batch = generator.write_batch(df, tmp_path / "landing" / "ok.parquet")
    ctx = context(task_id="validate")
    verdict = _op(tmp_path, batch, evidence_url_prefix="https://evidence.example/validation/").execute(ctx)
    assert verdict["passed"] and verdict["quarantine_version"] is None
    assert ctx["ti"].xcom[LINK_KEY] == "https://evidence.example/validation/test_dag/test_run/validate/" \
        "validation_summary.html"
    assert DataValidationGateOperator.operator_extra_links[0].name == "Evidence report"
