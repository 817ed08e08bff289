"""DataDriftOperator against real Evidently 0.7 and, for MLflow logging, a real local MLflow server.

The MLflow server (SQLite backend, local artifacts, loopback port) is spawned at session start when an
integration test was collected, so its slow start overlaps the unit tests; the integration test waits for
``/health``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators.monitoring import DataDriftOperator, drift_verdict_from_snapshot

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
RUN_ID = "scheduled__2026-11-03T00:00:00+00:00"
SERVER_START_TIMEOUT_S = 180


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("mlops_data_generator", ROOT / "include/data/generator.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _context(dag_id: str = "drift_dag", run_id: str = RUN_ID) -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": run_id}


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reference = a directory of two days (the training set); batches of later days, with and without drift."""
    root = tmp_path_factory.mktemp("drift-data")
    for day in (1, 2):
        gen.write_batch(gen.generate_batch(date(2026, 11, day)), root / "reference" / f"day={day:02d}.parquet")
    same = gen.generate_batch(date(2026, 11, 3))
    shifted = gen.generate_batch(date(2026, 11, 3), covariate_shift=1.0)
    all_null = same.copy()
    all_null["usage_hours"] = float("nan")
    return {
        "reference": root / "reference",
        "same": gen.write_batch(same, root / "current_same.parquet"),
        "shifted": gen.write_batch(shifted, root / "current_shifted.parquet"),
        "empty": gen.write_batch(same.iloc[0:0], root / "current_empty.parquet"),
        "no_calls": gen.write_batch(same.drop(columns=["support_calls"]), root / "current_no_calls.parquet"),
        "all_null": gen.write_batch(all_null, root / "current_all_null.parquet"),
    }


def _operator(tmp_path: Path, reference: Path, current: Path, **kwargs: Any) -> DataDriftOperator:
    kwargs.setdefault("log_to_mlflow", False)
    return DataDriftOperator(
        task_id=kwargs.pop("task_id", "data_drift"),
        reference_path=str(reference),
        current_path=str(current),
        report_dir=str(tmp_path / "reports"),
        **kwargs,
    )


# -- a real MLflow server ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _mlflow_process(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow_bin), "server",
            "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the teardown stops the server and its workers
        # No huey job consumers (MLflow 3.x starts several by default): the server starts in seconds, not a minute.
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    yield SimpleNamespace(proc=proc, uri=f"http://127.0.0.1:{port}", log=root / "server.log")
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="session", autouse=True)
def _start_mlflow_early(request: pytest.FixtureRequest) -> None:
    """Spawn the server at session start when an integration test will run (its start takes tens of seconds)."""
    if any(item.get_closest_marker("integration") for item in request.session.items):
        request.getfixturevalue("_mlflow_process")


@pytest.fixture(scope="session")
def mlflow_server(_mlflow_process: Any) -> str:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _mlflow_process.proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({_mlflow_process.proc.returncode}):\n{_mlflow_process.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{_mlflow_process.uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return _mlflow_process.uri
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {SERVER_START_TIMEOUT_S}s:\n{_mlflow_process.log.read_text()[-3000:]}")


# -- drift verdicts ------------------------------------------------------------------------------------------------


def test_no_drift_between_days_with_the_same_knobs(tmp_path: Path, data: dict[str, Path]) -> None:
    verdict = _operator(tmp_path, data["reference"], data["same"]).execute(_context())

    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["reasons"] == []
    assert verdict["drift_share"] < 0.5
    metrics = verdict["metrics"]
    # Automatic selection: numeric columns on both sides minus ids, timestamp and label.
    assert sorted(metrics["per_column"]) == sorted(gen.FEATURES)
    assert metrics["n_columns"] == 5
    assert metrics["reference_rows"] == 8000 and metrics["current_rows"] == 4000
    assert {info["method"] for info in metrics["per_column"].values()} == {"wasserstein"}
    report = Path(verdict["report_path"])
    assert report == tmp_path / "reports/drift_dag/scheduled__2026-11-03T00_00_00_00_00/data_drift/data_drift.html"
    assert report.stat().st_size > 10_000
    assert verdict["evidence_uri"] == report.as_uri()
    assert verdict["mlflow_run_id"] is None
    assert (report.parent / "drift_verdict.json").exists()


def test_covariate_shift_is_dataset_drift(tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    verdict = _operator(tmp_path, data["reference"], data["shifted"]).execute(_context())

    assert verdict["passed"] is False
    assert {"monthly_charges", "support_calls"} <= set(verdict["drifted_columns"])
    assert verdict["drift_share"] >= 0.5
    assert verdict["metrics"]["n_drifted"] == len(verdict["drifted_columns"])
    charges = verdict["metrics"]["per_column"]["monthly_charges"]
    assert charges["drifted"] is True and charges["method"] == "wasserstein" and charges["threshold"] == 0.1
    assert charges["score"] > charges["threshold"]
    (reason,) = verdict["reasons"]
    assert reason.startswith(f"dataset drift: {verdict['metrics']['n_drifted']} of 5 columns drifted (share ")
    assert "monthly_charges (wasserstein " in reason
    # Airflow 3's task logger is structlog: the summary line reaches stdout, not the logging module.
    assert "SUMMARY data-drift passed=False drift_share=0.80 drifted=[" in capsys.readouterr().out


def test_fail_on_drift_raises_with_next_step(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(tmp_path, data["reference"], data["shifted"], fail_on_drift=True, stattest="ks")
    with pytest.raises(MonitoringError, match=r"passed=False .*inspect the report; the retraining trigger fires"):
        op.execute(_context())


def test_explicit_stattest_and_threshold_reach_evidently(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(
        tmp_path, data["reference"], data["same"], columns=["monthly_charges", "usage_hours"],
        stattest="psi", stattest_threshold=0.2,
    )
    per_column = op.execute(_context())["metrics"]["per_column"]
    assert list(per_column) == ["monthly_charges", "usage_hours"]
    assert {(c["method"], c["threshold"]) for c in per_column.values()} == {("psi", 0.2)}


# -- the pure parser -----------------------------------------------------------------------------------------------


def _value_drift(metric_id: str, column: str, method: str, threshold: float, score: float) -> dict[str, Any]:
    return {
        "id": metric_id,
        "config": {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method, "threshold": threshold},
        "value": score,
    }


def test_verdict_from_snapshot_uses_test_status() -> None:
    snapshot = {
        "metrics": [
            {"id": "c", "config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 1, "share": 0.5}},
            _value_drift("a", "x", "Wasserstein distance (normed)", 0.1, 0.41),
            _value_drift("b", "y", "K-S p_value", 0.05, 0.30),
        ],
        "tests": [
            {"metric_config": {"metric_id": "a"}, "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest"},
             "status": "FAIL"},
            {"metric_config": {"metric_id": "b"}, "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest"},
             "status": "SUCCESS"},
        ],
    }
    verdict = drift_verdict_from_snapshot(snapshot, 0.5)
    assert verdict["passed"] is False
    assert verdict["drifted_columns"] == ["x"]
    assert verdict["drift_share"] == 0.5
    assert verdict["metrics"]["per_column"]["y"] == {"score": 0.30, "threshold": 0.05, "method": "ks", "drifted": False}
    assert verdict["reasons"] == [
        "dataset drift: 1 of 2 columns drifted (share 0.50 >= 0.50): x (wasserstein 0.41 >= 0.10)"
    ]
    assert drift_verdict_from_snapshot(snapshot, 0.6)["passed"] is True


def test_verdict_from_snapshot_without_tests_infers_direction() -> None:
    snapshot = {
        "metrics": [
            _value_drift("a", "dist", "psi", 0.1, 0.25),  # distance above threshold: drift
            _value_drift("b", "pval", "ks", 0.05, 0.01),  # p-value below threshold: drift
            _value_drift("c", "calm", "ks", 0.05, 0.80),
        ]
    }
    verdict = drift_verdict_from_snapshot(snapshot, 0.5)
    assert verdict["drifted_columns"] == ["dist", "pval"]
    assert verdict["passed"] is False
    assert "pval (ks p=0.01 < 0.05)" in verdict["reasons"][0]


def test_verdict_from_snapshot_rejects_an_unrelated_snapshot() -> None:
    with pytest.raises(MonitoringError, match="no ValueDrift or DriftedColumnsCount"):
        drift_verdict_from_snapshot({"metrics": [], "tests": []}, 0.5)


# -- bad input -----------------------------------------------------------------------------------------------------


def test_missing_reference_path(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(tmp_path, tmp_path / "gone/training_set", data["same"])
    with pytest.raises(MonitoringError, match=r"reference dataset .*gone/training_set.* no longer exists; re-run"):
        op.execute(_context())


def test_empty_current_window(tmp_path: Path, data: dict[str, Path]) -> None:
    with pytest.raises(MonitoringError, match=r"current window .*current_empty.parquet.* has no rows"):
        _operator(tmp_path, data["reference"], data["empty"]).execute(_context())


def test_column_missing_on_one_side(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(tmp_path, data["reference"], data["no_calls"], columns=["monthly_charges", "support_calls"])
    with pytest.raises(MonitoringError, match=r"missing from the current window .*\['support_calls'\]") as err:
        op.execute(_context())
    assert "missing from the reference" not in str(err.value)


def test_all_null_feature_is_a_failure_reason_not_a_crash(tmp_path: Path, data: dict[str, Path]) -> None:
    verdict = _operator(tmp_path, data["reference"], data["all_null"]).execute(_context())

    assert verdict["passed"] is False
    assert verdict["metrics"]["excluded_columns"] == ["usage_hours"]
    assert "usage_hours" not in verdict["metrics"]["per_column"]
    assert verdict["metrics"]["n_columns"] == 4
    assert verdict["drifted_columns"] == []
    (reason,) = verdict["reasons"]
    assert "'usage_hours' is entirely null in the current window (4000 rows)" in reason


# -- MLflow logging ------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_mlflow_logging_and_retry_reuses_the_run(tmp_path: Path, data: dict[str, Path], mlflow_server: str) -> None:
    from mlflow import MlflowClient

    def run(run_id: str = RUN_ID) -> dict[str, Any]:
        op = _operator(
            tmp_path, data["reference"], data["shifted"], log_to_mlflow=True, tracking_uri=mlflow_server,
            experiment_name="drift-tests", model_name="churn",
        )
        return op.execute(_context(run_id=run_id))

    first = run()
    retry = run()

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("drift-tests")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "a retry of the same task must not create a second MLflow run"
    assert first["mlflow_run_id"] == retry["mlflow_run_id"] == runs[0].info.run_id

    logged = runs[0]
    assert logged.info.status == "FINISHED"
    assert {k: logged.data.tags[k] for k in ("mlops.kind", "mlops.model_name", "mlops.dag_id", "mlops.run_id")} == {
        "mlops.kind": "data_drift", "mlops.model_name": "churn", "mlops.dag_id": "drift_dag", "mlops.run_id": RUN_ID,
    }
    assert logged.data.metrics["drift_share"] == pytest.approx(retry["drift_share"])
    assert logged.data.metrics["drifted_columns"] == len(retry["drifted_columns"])
    assert logged.data.metrics["drift_score.monthly_charges"] > 0.1
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "drift")}
    assert artifacts == {"drift/data_drift.html", "drift/drift_verdict.json"}
    assert retry["evidence_uri"] == f"{logged.info.artifact_uri}/drift/data_drift.html"
    assert Path(retry["report_path"]).exists()

    other = run(run_id="manual__2026-11-04")
    assert other["mlflow_run_id"] != first["mlflow_run_id"]
