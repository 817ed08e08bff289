"""DataDriftOperator against real Evidently 0.7 and, for MLflow logging, a real local MLflow server.

The server is the session-scoped ``mlflow_server`` fixture of ``tests/conftest.py`` (SQLite backend, proxied
file artifacts, free loopback port); the generator is ``include/data/generator.py``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.retrain import EXTRA_KEYS, retrain_alias_name
from mlops_airflow.operators.monitoring import DataDriftOperator, drift_verdict_from_snapshot
from mlops_airflow.storage import local_path

pytestmark = pytest.mark.unit

RUN_ID = "scheduled__2026-11-03T00:00:00+00:00"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]


def _context(dag_id: str = "drift_dag", run_id: str = RUN_ID) -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": run_id}


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory, generator: Any) -> dict[str, Path]:
    """Reference = a directory of two days (the training set); batches of later days, with and without drift."""
    gen = generator
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
    kwargs.setdefault("exclude_columns", ("customer_id", "event_timestamp"))
    kwargs.setdefault("label_column", "churned")
    return DataDriftOperator(
        task_id=kwargs.pop("task_id", "data_drift"),
        reference_path=str(reference),
        current_path=str(current),
        report_dir=str(tmp_path / "reports"),
        **kwargs,
    )


# -- drift verdicts ------------------------------------------------------------------------------------------------


def _quiet(verdict: dict[str, Any], context: dict[str, Any]) -> bool:
    """No retraining trigger: neither in the verdict nor among the task's outlet events."""
    alias = AssetAlias(retrain_alias_name("mlops://monitoring/churn"))
    return verdict["retrain_event"] is None and context["outlet_events"][alias].asset_alias_events == []


def test_no_drift_between_days_with_the_same_knobs(tmp_path: Path, data: dict[str, Path]) -> None:
    context = {**_context(), "outlet_events": OutletEventAccessors()}
    verdict = _operator(tmp_path, data["reference"], data["same"], model_name="churn").execute(context)
    assert _quiet(verdict, context)

    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["reasons"] == []
    assert verdict["drift_share"] < 0.5
    metrics = verdict["metrics"]
    # Automatic selection: every column on both sides minus ids, timestamp and label; typed as Evidently types
    # them (support_calls: an integer with 10 values, so categorical).
    assert sorted(metrics["per_column"]) == sorted(FEATURES)
    assert metrics["n_columns"] == 5
    assert metrics["reference_rows"] == 8000 and metrics["current_rows"] == 4000
    methods = {col: info["method"] for col, info in metrics["per_column"].items()}
    assert methods == {**dict.fromkeys(FEATURES, "wasserstein"), "support_calls": "jensenshannon"}
    assert verdict["unchecked_columns"] == {}
    report = local_path(verdict["report_path"])
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
    assert (
        f"SUMMARY data-drift passed=False drift_share={verdict['drift_share']:.2f} drifted=[" in capsys.readouterr().out
    )


def test_fail_on_drift_raises_with_next_step(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(tmp_path, data["reference"], data["shifted"], fail_on_drift=True, stattest="ks")
    match = r"passed=False .*inspect the report; the retraining trigger fires"
    with pytest.raises(MonitoringError, match=match) as err:
        op.execute(_context())
    # The parts of the message as fields, for callbacks and alerts (as the GX provider's exception has them).
    assert err.value.cause == "dataset drift" and err.value.counts["n_drifted"] >= 3
    assert err.value.evidence_uri.endswith("data_drift.html") and "inspect the report" in err.value.next_step
    assert err.value.as_dict()["details"]["drifted_columns"]


def test_explicit_stattest_and_threshold_reach_evidently(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(
        tmp_path,
        data["reference"],
        data["same"],
        columns=["monthly_charges", "usage_hours"],
        stattest="psi",
        stattest_threshold=0.2,
    )
    per_column = op.execute(_context())["metrics"]["per_column"]
    assert list(per_column) == ["monthly_charges", "usage_hours"]
    assert {(c["method"], c["threshold"]) for c in per_column.values()} == {("psi", 0.2)}


# -- engines -------------------------------------------------------------------------------------------------------


def test_fast_engine_reaches_evidently_s_verdict(tmp_path: Path, data: dict[str, Path]) -> None:
    """Same per-column method, score and decision as Evidently's DataDriftPreset on the same rows."""
    fast = _operator(
        tmp_path, data["reference"], data["shifted"], report="evidently", report_sample_rows=1000
    ).execute(_context())
    plain = _operator(tmp_path, data["reference"], data["shifted"], engine="evidently", task_id="plain").execute(
        _context()
    )
    assert (fast["engine"], plain["engine"]) == ("fast", "evidently")
    assert fast["passed"] == plain["passed"] and fast["drifted_columns"] == plain["drifted_columns"]
    assert fast["drift_share"] == plain["drift_share"] and fast["reasons"] == plain["reasons"]
    for col, theirs in plain["metrics"]["per_column"].items():
        ours = fast["metrics"]["per_column"][col]
        assert (ours["method"], ours["threshold"], ours["drifted"]) == (
            theirs["method"], theirs["threshold"], theirs["drifted"]), col
        assert ours["score"] == pytest.approx(theirs["score"], rel=1e-9), col
    m = fast["metrics"]
    assert m["approximate_columns"] == {} and m["uncertain_columns"] == []
    # The HTML report is Evidently's, on a bounded random sample, and says so at the top.
    assert m["report_sample_rows"] == {"reference": 1000, "current": 1000}
    page = local_path(fast["report_path"]).read_text()
    assert "Verdict (fast drift engine, all rows: reference 8,000, current 4,000)" in page
    assert "uniform random sample of 1,000 reference and 1,000 current rows" in page


def test_fast_engine_rejects_a_stattest_it_lacks() -> None:
    with pytest.raises(ValueError, match=r"stattest 'anderson' is not implemented by the fast drift engine"):
        DataDriftOperator(task_id="d", reference_path="r", current_path="c", report_dir="x", stattest="anderson")
    DataDriftOperator(task_id="d", reference_path="r", current_path="c", report_dir="x", stattest="anderson",
                      engine="evidently")


# -- retraining trigger --------------------------------------------------------------------------------------------


def test_dataset_drift_emits_the_retraining_asset_event(tmp_path: Path, data: dict[str, Path]) -> None:
    alias = AssetAlias(retrain_alias_name("mlops://monitoring/churn"))
    op = _operator(tmp_path, data["reference"], data["shifted"], model_name="churn")
    assert op.outlets == [alias]  # an alias: only a failing verdict becomes an event on mlops://monitoring/churn
    context = {**_context(), "outlet_events": OutletEventAccessors()}
    verdict = op.execute(context)

    (event,) = context["outlet_events"][alias].asset_alias_events
    assert event.dest_asset_key.uri == "mlops://monitoring/churn"
    assert event.extra == verdict["retrain_event"]
    assert set(EXTRA_KEYS) <= set(event.extra)
    assert event.extra["kind"] == "data_drift" and event.extra["quality_drop"] is None
    assert event.extra["drifted_columns"] == verdict["drifted_columns"]
    assert event.extra["drift_share"] == verdict["drift_share"]
    assert event.extra["reason"] == verdict["reasons"][0] and event.extra["reason"].startswith("dataset drift:")
    assert event.extra["verdict_uri"] == verdict["verdict_uri"] and verdict["verdict_uri"].endswith(".json")

    off = _operator(tmp_path, data["reference"], data["shifted"], model_name="churn", emit_retrain_event=False)
    assert off.outlets == []


# -- the pure parser -----------------------------------------------------------------------------------------------


def _value_drift(metric_id: str, column: str, method: str, threshold: float, score: float) -> dict[str, Any]:
    return {
        "id": metric_id,
        "config": {
            "type": "evidently:metric_v2:ValueDrift",
            "column": column,
            "method": method,
            "threshold": threshold,
        },
        "value": score,
    }


def test_verdict_from_snapshot_uses_test_status() -> None:
    snapshot = {
        "metrics": [
            {
                "id": "c",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1, "share": 0.5},
            },
            _value_drift("a", "x", "Wasserstein distance (normed)", 0.1, 0.41),
            _value_drift("b", "y", "K-S p_value", 0.05, 0.30),
        ],
        "tests": [
            {
                "metric_config": {"metric_id": "a"},
                "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest"},
                "status": "FAIL",
            },
            {
                "metric_config": {"metric_id": "b"},
                "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest"},
                "status": "SUCCESS",
            },
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
    with pytest.raises(MonitoringError, match=r"current window .*current_empty.parquet.* has no rows") as err:
        _operator(tmp_path, data["reference"], data["empty"]).execute(_context())
    assert (err.value.cause, err.value.counts["current_rows"]) == ("empty current window", 0)


def test_column_missing_on_one_side(tmp_path: Path, data: dict[str, Path]) -> None:
    op = _operator(tmp_path, data["reference"], data["no_calls"], columns=["monthly_charges", "support_calls"])
    with pytest.raises(MonitoringError, match=r"missing from the current window .*\['support_calls'\]") as err:
        op.execute(_context())
    assert "missing from the reference" not in str(err.value)


def test_all_null_feature_is_a_failure_reason_not_a_crash(tmp_path: Path, data: dict[str, Path]) -> None:
    context = {**_context(), "outlet_events": OutletEventAccessors()}
    verdict = _operator(tmp_path, data["reference"], data["all_null"], model_name="churn").execute(context)
    assert _quiet(verdict, context), "a broken feature is a data problem: no retraining on it"

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
            tmp_path,
            data["reference"],
            data["shifted"],
            log_to_mlflow=True,
            tracking_uri=mlflow_server,
            experiment_name="drift-tests",
            model_name="churn",
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
        "mlops.kind": "data_drift",
        "mlops.model_name": "churn",
        "mlops.dag_id": "drift_dag",
        "mlops.run_id": RUN_ID,
    }
    assert logged.data.metrics["drift_share"] == pytest.approx(retry["drift_share"])
    assert logged.data.metrics["drifted_columns"] == len(retry["drifted_columns"])
    assert logged.data.metrics["drift_score.monthly_charges"] > 0.1
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "drift")}
    assert artifacts == {"drift/data_drift.html", "drift/drift_verdict.json"}
    assert retry["evidence_uri"] == f"{logged.info.artifact_uri}/drift/data_drift.html"
    assert local_path(retry["report_path"]).exists()

    other = run(run_id="manual__2026-11-04")
    assert other["mlflow_run_id"] != first["mlflow_run_id"]

    # The task's extra links open the report and the run in the MLflow UI (not a raw mlflow-artifacts: URI).
    run_url = f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/{logged.info.run_id}"
    assert retry["run_url"] == run_url
    from conftest import FakeTI

    ctx = {**_context(), "ti": FakeTI("check_drift")}
    linked = _operator(tmp_path, data["reference"], data["shifted"], log_to_mlflow=True, tracking_uri=mlflow_server,
                       experiment_name="drift-tests", model_name="churn").execute(ctx)
    assert linked["run_url"] == (f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/"
                                 f"{linked['mlflow_run_id']}")
    assert ctx["ti"].xcom["_link_MlflowRunLink"] == linked["run_url"]
    assert ctx["ti"].xcom["_link_EvidenceLink"] == f"{linked['run_url']}/artifacts/drift/data_drift.html"


@pytest.mark.parametrize("engine", ["fast", "evidently"])
def test_inputs_and_report_on_the_object_store(tmp_path: Path, data: dict[str, Path], s3_store, engine: str) -> None:
    """Reference (a folder), current window and report_dir on S3: the same verdict as on local files, the report
    and the verdict JSON written to the bucket, URIs in the result (the fast engine stages each input once into
    the task's temporary folder; the Evidently engine reads through the store's filesystem)."""
    from mlops_airflow import storage

    for day in data["reference"].iterdir():
        storage.put_file(day, f"{s3_store.root}/sets/reference/{day.name}")
    storage.put_file(data["shifted"], f"{s3_store.root}/batches/current.parquet")
    kwargs = {"engine": engine, "report": "none" if engine == "fast" else "engine"}
    remote = DataDriftOperator(
        task_id="data_drift", reference_path=f"{s3_store.root}/sets/reference",
        current_path=f"{s3_store.root}/batches/current.parquet", report_dir=f"{s3_store.root}/reports",
        log_to_mlflow=False, exclude_columns=("customer_id", "event_timestamp"), label_column="churned", **kwargs,
    ).execute(_context())
    local = _operator(tmp_path, data["reference"], data["shifted"], **kwargs).execute(_context())
    for key in ("passed", "drifted_columns", "drift_share", "unchecked_columns"):
        assert remote[key] == local[key], key
    base = f"{s3_store.root}/reports/drift_dag/scheduled__2026-11-03T00_00_00_00_00/data_drift"
    assert remote["report_path"] == remote["evidence_uri"] == f"{base}/data_drift.html"
    assert remote["verdict_uri"] == f"{base}/drift_verdict.json"
    prefix = "reports/drift_dag/scheduled__2026-11-03T00_00_00_00_00/data_drift/"
    assert s3_store.keys("reports/") == [prefix + "data_drift.html", prefix + "drift_verdict.json"]
    assert storage.read_json(remote["verdict_uri"])["drifted_columns"] == remote["drifted_columns"]
    with pytest.raises(MonitoringError, match="no longer exists"):
        DataDriftOperator(task_id="gone", reference_path=f"{s3_store.root}/sets/nothing",
                          current_path=f"{s3_store.root}/batches/current.parquet",
                          report_dir=f"{s3_store.root}/reports", log_to_mlflow=False, **kwargs).execute(_context())


# -- the task's own weight: no Evidently, no mlflow, every column named -----------------------------------------


def test_the_drift_task_imports_neither_evidently_nor_mlflow(tmp_path: Path, data: dict[str, Path],
                                                            mlflow_server: str) -> None:
    """A fresh process runs the whole task (engine, HTML report, MLflow logging over REST) without importing
    Evidently, mlflow or pandas: the imports that made the task as slow as plain Evidently at small sizes."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from types import SimpleNamespace\n"
        "from mlops_airflow.operators.drift import DataDriftOperator\n"
        f"op = DataDriftOperator(task_id='light', reference_path={str(data['reference'])!r}, "
        f"current_path={str(data['shifted'])!r}, report_dir={str(tmp_path / 'r')!r}, tracking_uri={mlflow_server!r}, "
        "experiment_name='light-drift', exclude_columns=['customer_id', 'event_timestamp'], label_column='churned')\n"
        "v = op.execute({'dag': SimpleNamespace(dag_id='light'), 'run_id': 'r1'})\n"
        "print(json.dumps({m: m in sys.modules for m in ('evidently', 'mlflow', 'pandas')} | "
        "{'run': v['mlflow_run_id'], 'evidence': v['evidence_uri'], 'passed': v['passed']}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "plugins")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["evidently"] is False and out["mlflow"] is False and out["pandas"] is False, out
    assert out["run"] and out["evidence"].startswith("mlflow-artifacts:/") and out["passed"] is False

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(out["run"])
    assert run.info.status == "FINISHED" and run.data.tags["mlops.kind"] == "data_drift"
    assert run.data.metrics["drift_share"] >= 0.5
    assert {a.path for a in client.list_artifacts(out["run"], "drift")} == {
        "drift/data_drift.html", "drift/drift_verdict.json"
    }
    page = Path(client.download_artifacts(out["run"], "drift/data_drift.html", str(tmp_path / "dl"))).read_text()
    assert "<svg" in page and "monthly_charges" in page and "Verdict failed" in page


def test_every_column_is_checked_or_named(tmp_path: Path, generator: Any) -> None:
    """Default selection: categorical columns are checked; free text, datetimes and one-sided columns are named
    in the verdict with the reason, and the verdict is not failed for them."""
    gen = generator
    ref = gen.generate_batch(date(2026, 11, 1))
    cur = gen.generate_batch(date(2026, 11, 2))
    for frame, seed in ((ref, 0), (cur, 1)):
        frame["plan"] = ["basic", "plus", "pro", "team"] * (len(frame) // 4)
        frame["comment"] = [f"note {seed}-{i}" for i in range(len(frame))]
    ref["legacy_score"] = 0.5
    cur["flag"] = cur["support_calls"] > 3
    ref["flag"] = ref["support_calls"] > 3
    ref_path, cur_path = gen.write_batch(ref, tmp_path / "ref.parquet"), gen.write_batch(cur, tmp_path / "cur.parquet")
    verdict = _operator(tmp_path, ref_path, cur_path).execute(_context())

    per_column = verdict["metrics"]["per_column"]
    assert {"plan", "flag"} <= set(per_column) and set(FEATURES) <= set(per_column)
    assert per_column["plan"]["method"] == "jensenshannon" and per_column["flag"]["method"] == "jensenshannon"
    unchecked = verdict["unchecked_columns"]
    assert set(unchecked) == {"comment", "legacy_score"}, unchecked
    assert "free text" in unchecked["comment"] and "only in the reference" in unchecked["legacy_score"]
    assert verdict["metrics"]["column_types"]["plan"] == "categorical"
    assert verdict["passed"] is True, verdict["reasons"]
    page = local_path(verdict["report_path"]).read_text()
    assert "Not checked" in page and "comment" in page
