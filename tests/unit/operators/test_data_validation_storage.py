"""DataValidationGateOperator with the batch, the results and the quarantine on an object store (real S3 API).

The gate stages the batch in a temporary folder of its own, writes the result JSON and the HTML summary under
``results_dir`` and keeps a failed batch, byte for byte, under ``quarantine_dir`` before it removes the original
and fails: every location is an ``s3://`` URI here (moto's server on loopback, the ``s3_store`` fixture).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
from conftest import ROOT
from mlops_airflow import storage
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.operators.data_validation import DataValidationGateOperator

pytestmark = pytest.mark.unit
SUITE = ROOT / "include/gx/customer_events.json"
RUN = "test_dag/test_run/validate"


def _op(store, data_uri: str, **kw) -> DataValidationGateOperator:
    return DataValidationGateOperator(
        task_id="validate", data_path=data_uri, suite_path=str(SUITE), quarantine_dir=f"{store.root}/quarantine",
        results_dir=f"{store.root}/validation", key_columns=["customer_id"], **kw,
    )


def _land(tmp_path, generator, store, name: str, *, bad: bool = False, day: str = "2026-11-01") -> tuple[str, str]:
    df = generator.generate_batch(date.fromisoformat(day), n_customers=80)
    if bad:
        df.loc[3, "tenure_months"] = -7.0
    local = generator.write_batch(df, tmp_path / name)
    uri = f"{store.root}/landing/{name}"
    return uri, storage.put_file(local, uri)["md5"]


def test_good_s3_batch_passes_with_results_on_s3(tmp_path, generator, s3_store, context):
    uri, md5 = _land(tmp_path, generator, s3_store, "ok.parquet")
    ctx = context(task_id="validate")
    verdict = _op(s3_store, uri).execute(ctx)
    assert verdict["passed"] and verdict["data_md5"] == md5
    assert verdict["evidence_uri"] == f"{s3_store.root}/validation/{RUN}/validation_result.json"
    assert verdict["summary_uri"] == f"{s3_store.root}/validation/{RUN}/validation_summary.html"
    result = storage.read_json(verdict["evidence_uri"])
    assert result["batch"] == {"path": uri, "md5": md5, "rows": 80}
    assert "PASSED" in storage.read_text(verdict["summary_uri"])
    assert storage.exists(uri) and not s3_store.keys("quarantine/")
    assert ctx["ti"].xcom["_link_EvidenceLink"] == verdict["summary_uri"]
    json.dumps(verdict)


def test_bad_s3_batch_is_quarantined_on_s3_before_the_gate_fails(tmp_path, generator, s3_store, context):
    uri, md5 = _land(tmp_path, generator, s3_store, "bad.parquet", bad=True)
    with pytest.raises(DataValidationError) as err:
        _op(s3_store, uri).execute(context(task_id="validate"))
    message = str(err.value)
    assert "expect_column_values_to_be_between(tenure_months): 1 unexpected" in message
    kept = [k for k in s3_store.keys("quarantine/") if k.endswith("/bad.parquet")]
    assert len(kept) == 1 and kept[0].split("/")[1].endswith("_" + md5[:12]), kept
    kept_uri = f"{s3_store.root}/{kept[0]}"
    assert storage.md5(kept_uri) == md5, "the quarantined copy differs from the landed batch"
    assert f"Batch quarantined to {kept_uri}." in message
    assert f"Full result: {s3_store.root}/validation/{RUN}/validation_result.json" in message
    manifest = storage.read_json(storage.join(storage.parent(kept_uri), "quarantine.json"))
    assert manifest["source"] == uri and manifest["quarantined_to"] == kept_uri
    assert manifest["files"] == [{"path": "bad.parquet", "md5": md5, "bytes": manifest["files"][0]["bytes"]}]
    assert not storage.exists(uri), "the original should have been moved"
    assert err.value.evidence_uri.startswith(f"{s3_store.root}/validation/")

    # A retry finds nothing at the landing URI and points to the quarantine folder.
    with pytest.raises(DataValidationError) as again:
        _op(s3_store, uri).execute(context(task_id="validate", try_number=2))
    assert f"file missing: {uri} (an earlier try quarantined it to {storage.parent(kept_uri)})" in str(again.value)
    assert "Nothing to quarantine." in str(again.value)


def test_s3_directory_batch_is_quarantined_whole(tmp_path, generator, s3_store, context):
    df = generator.generate_batch(date(2026, 11, 2), n_customers=80)
    bad = df.iloc[40:].copy()
    bad.loc[bad.index[0], "usage_hours"] = 1000.0
    folder = f"{s3_store.root}/landing/day=2026-11-02"
    md5s = {}
    for name, part in (("part-0.parquet", df.iloc[:40]), ("part-1.parquet", bad)):
        local = generator.write_batch(part, tmp_path / name)
        md5s[name] = storage.put_file(local, f"{folder}/{name}")["md5"]
    with pytest.raises(DataValidationError, match="usage_hours"):
        _op(s3_store, folder).execute(context(task_id="validate"))
    kept = {k.rsplit("/", 1)[-1]: k for k in s3_store.keys("quarantine/") if "/day=2026-11-02/" in k}
    assert {n: storage.md5(f"{s3_store.root}/{k}") for n, k in kept.items()} == md5s
    assert not s3_store.keys("landing/day=2026-11-02/")
    joined = "\n".join(sorted(md5s.values())).encode()
    assert hashlib.md5(joined, usedforsecurity=False).hexdigest()[:12] in next(iter(kept.values()))
