"""RetrainGuardOperator reads a data-gate verdict named by a URI through storage (``s3://`` here, a real S3 API).

The gate writes its verdict and evidence to the object store; a guard on another worker gets its URI. The MLflow
registry is a SQLite file (no server); ``brand_new`` has never been registered, so only the gate decides.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from mlops_airflow import storage
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators.retrain_guard import RetrainGuardOperator

pytestmark = pytest.mark.unit


def _context() -> dict:
    ti = SimpleNamespace(xcom={}, task_id="retrain_guard")
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    return {"dag": SimpleNamespace(dag_id="retrain"), "run_id": "manual__1", "ti": ti}


def _guard(tmp_path, gate) -> RetrainGuardOperator:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return RetrainGuardOperator(task_id="retrain_guard", model_name="brand_new", tracking_uri=uri, data_gate=gate,
                                require_data_gate=True)


def test_guard_reads_the_gate_verdict_from_s3(tmp_path, s3_store):
    passed = storage.write_json(f"{s3_store.root}/validation/ok/verdict.json", {"passed": True, "reasons": []})
    assert _guard(tmp_path, passed).execute(_context())["proceed"] is True

    failed = storage.write_json(f"{s3_store.root}/validation/bad/verdict.json",
                                {"passed": False, "reasons": ["2 expectations failed"], "evidence_uri": passed})
    with pytest.raises(AirflowSkipException, match=r"the latest data gate failed \(2 expectations failed"):
        _guard(tmp_path, failed).execute(_context())

    with pytest.raises(MonitoringError, match="cannot read the data-gate verdict"):
        _guard(tmp_path, f"{s3_store.root}/validation/missing.json").execute(_context())
