"""QualityCheckOperator on generator data (include/data/generator.py) and real Evidently/scikit-learn, no mocks.

The "deployed model" scores with the generator's pre-drift feature-label relation, so quality is known: ROC AUC
~0.83 on a normal day, ~0.67 on a day with ``concept_drift=1.0`` (same features, changed relation). The
retraining trigger is checked through Airflow 3's real ``OutletEventAccessors``.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.drift_engine import detect_drift
from mlops_airflow.monitoring.retrain import retrain_alias_name
from mlops_airflow.operators.monitoring import QualityCheckOperator, classification_quality
from mlops_airflow.storage import local_path

pytestmark = pytest.mark.unit

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
KEYS = ["customer_id", "event_timestamp"]
MODEL = "churn_classifier"
RUN_ID = "scheduled__2026-11-10T00:00:00+00:00"


def _score(df: pd.DataFrame) -> pd.DataFrame:
    """The champion: the generator's relation before concept drift, as batch scoring writes it."""
    z = (
        -1.0 * (df.tenure_months - 28) / 20
        + 0.8 * (df.monthly_charges - 70) / 25
        + 0.9 * (df.support_calls - 1.5) / 1.2
        - 0.6 * (df.usage_hours - 120) / 70
        + 0.7 * (df.payment_delay_days - 4) / 4
        - 0.4
    )
    proba = 1 / (1 + np.exp(-z))
    log = df[[*KEYS, *FEATURES]].copy()
    log["prediction"] = (proba >= 0.5).astype("int64")
    log["proba"] = proba
    log["confidence"] = np.maximum(proba, 1 - proba)
    log["served_by"] = "champion"
    log["model_version"] = "3"
    log["challenger_prediction"] = 1 - log["prediction"]  # a shadow model's output columns are not "unknown"
    log["challenger_proba"] = 1 - proba
    return log


def _labels(df: pd.DataFrame) -> pd.DataFrame:
    labels = df[[*KEYS, "churned"]].copy()
    labels["revenue_lost"] = df["churned"] * df["monthly_charges"] * 12  # a year's charges of a churned customer
    return labels


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, generator: Any) -> dict[str, Path]:
    gen = generator
    root = tmp_path_factory.mktemp("quality-data")
    out: dict[str, Path] = {}

    def put(name: str, frame: pd.DataFrame) -> None:
        out[name] = root / f"{name}.parquet"
        frame.to_parquet(out[name], index=False)

    reference = gen.generate_batch(date(2026, 11, 1))
    put("reference", _score(reference).merge(_labels(reference), on=KEYS))
    normal = gen.generate_batch(date(2026, 11, 10))
    drifted = gen.generate_batch(date(2026, 11, 10), concept_drift=1.0)  # same features, new relation
    put("log", _score(normal))
    put("labels", _labels(normal))
    put("labels_concept_drift", _labels(drifted))
    put("log_empty", _score(normal).iloc[0:0])
    extra = _score(normal)
    extra["discount_pct"] = 5.0
    put("log_extra_column", extra)
    null_feature = _score(normal)
    null_feature["usage_hours"] = np.nan
    put("log_null_feature", null_feature)
    late = _labels(normal)
    late["event_timestamp"] = late["event_timestamp"] + timedelta(days=1)
    put("labels_wrong_day", late)
    clash = _labels(normal)
    put("labels_conflicting", pd.concat([clash, clash.head(3).assign(churned=1 - clash.head(3)["churned"])]))
    # Day 7 of the demo: v1 was champion and v2 canary on 10% of the traffic; v2 is champion when labels arrive.
    canary = _score(normal)
    on_canary = (np.arange(len(canary)) % 10) == 0
    canary["served_by"] = np.where(on_canary, "canary", "champion")
    canary["model_version"] = np.where(on_canary, "2", "1")
    put("log_canary", canary)
    # The same traffic logged with model URIs only and no variant column: the majority version served it.
    uri_only = canary.drop(columns=["model_version", "served_by"])
    uri_only["model_uri"] = np.where(on_canary, f"models:/{MODEL}/2", f"models:/{MODEL}/1")
    put("log_uri_only", uri_only)
    return out


def _context() -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id="monitor_dag"), "run_id": RUN_ID, "outlet_events": OutletEventAccessors()}


def _operator(tmp_path: Path, data: dict[str, Path], **kwargs: Any) -> QualityCheckOperator:
    kwargs.setdefault("log_to_mlflow", False)
    kwargs.setdefault("reference_path", str(data["reference"]))
    kwargs.setdefault("features", FEATURES)
    kwargs.setdefault("join_keys", KEYS)  # no default keys/label any more: the model's metadata, or given here
    kwargs.setdefault("label_column", "churned")
    return QualityCheckOperator(
        task_id=kwargs.pop("task_id", "quality"),
        inference_log_path=str(kwargs.pop("log", data["log"])),
        labels_path=str(kwargs.pop("labels", data["labels"])),
        report_dir=str(tmp_path / "reports"),
        model_name=MODEL,
        outcome_column="revenue_lost",
        **kwargs,
    )


def _events(context: dict[str, Any]) -> list[Any]:
    return context["outlet_events"][AssetAlias(retrain_alias_name(f"mlops://monitoring/{MODEL}"))].asset_alias_events


# -- verdicts -----------------------------------------------------------------------------------------------------


def test_normal_day_passes_with_quality_confidence_and_outcome(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    context = _context()
    verdict = _operator(tmp_path, data).execute(context)

    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["concept_drift"] is False and verdict["retrain_event"] is None
    m = verdict["metrics"]
    assert m["quality"]["roc_auc"] == pytest.approx(0.83, abs=0.03)
    assert m["reference_quality"]["roc_auc"] == pytest.approx(0.83, abs=0.03)
    assert abs(verdict["quality_drop"]) < 0.05
    assert m["rows"] == {"predictions": 4000, "labels": 4000, "joined": 4000, "join_rate": 1.0,
                         "label_coverage": 1.0, "positives": m["rows"]["positives"]}
    conf = m["confidence"]
    assert 0.5 < conf["mean_confidence"] < 1 and 0 < conf["mean_entropy_bits"] < 1
    assert conf["low_confidence_share"] == pytest.approx(0.18, abs=0.05)
    assert m["outcome"]["outcome_correlation"] > 0.4  # churn risk tracks lost revenue
    assert m["outcome"]["outcome_mean_predicted_positive"] > m["outcome"]["outcome_mean_predicted_negative"]
    assert m["model_versions"] == ["3"]
    report = local_path(verdict["report_path"])
    assert report.name == "quality.html" and report.stat().st_size > 10_000
    assert "concept drift=False" in report.read_text()
    assert (report.parent / "quality_verdict.json").exists()
    assert _events(context) == []
    assert "SUMMARY quality passed=True roc_auc=" in capsys.readouterr().out


def test_concept_drift_lowers_quality_while_features_barely_drift(tmp_path: Path, data: dict[str, Path]) -> None:
    context = _context()
    verdict = _operator(tmp_path, data, labels=data["labels_concept_drift"]).execute(context)

    assert verdict["passed"] is False and verdict["concept_drift"] is True
    assert verdict["quality_drop"] > 0.1
    (reason,) = verdict["reasons"]
    assert reason.startswith("concept drift: roc_auc dropped ") and "> allowed 0.050 on 4000 labelled" in reason
    assert verdict["metrics"]["outcome"]["outcome_correlation"] < 0.45
    # The features did not move: a data-drift check on them would pass.
    drift = detect_drift(str(data["reference"]), str(data["log"]), FEATURES)
    assert sum(r.drifted for r in drift.columns.values()) <= 1

    (event,) = _events(context)
    assert event.dest_asset_key.uri == f"mlops://monitoring/{MODEL}"
    assert event.extra == verdict["retrain_event"]
    assert {k: event.extra[k] for k in ("kind", "drifted_columns", "drift_share")} == {
        "kind": "quality", "drifted_columns": [], "drift_share": None}
    assert event.extra["quality_drop"] == pytest.approx(verdict["quality_drop"])
    assert event.extra["reason"] == reason and event.extra["verdict_uri"].endswith("quality_verdict.json")
    # No current champion known (none given, no MLflow): judged as before, without the retired-version check.
    m = verdict["metrics"]
    assert m["served_versions"] == {"3": 4000} and m["served_version"] == "3"
    assert m["serving_version"] is None and m["retired"] is False


def test_inputs_and_report_on_the_object_store(tmp_path: Path, data: dict[str, Path], s3_store) -> None:
    """Inference log, labels, reference window and report_dir on S3 (read through the store's filesystem): the
    verdict of the local files, the report and the verdict JSON in the bucket, URIs in the result and the event."""
    from mlops_airflow import storage

    for name in ("log", "labels_concept_drift", "reference"):
        storage.put_file(data[name], f"{s3_store.root}/windows/{name}.parquet")
    context = _context()
    op = _operator(tmp_path, data, log=f"{s3_store.root}/windows/log.parquet",
                   labels=f"{s3_store.root}/windows/labels_concept_drift.parquet",
                   reference_path=f"{s3_store.root}/windows/reference.parquet")
    op.report_dir = f"{s3_store.root}/reports"
    remote = op.execute(context)
    local = _operator(tmp_path, data, labels=data["labels_concept_drift"]).execute(_context())
    assert remote["passed"] is local["passed"] is False and remote["concept_drift"] is True
    assert remote["quality_drop"] == pytest.approx(local["quality_drop"])
    assert remote["metrics"]["quality"] == local["metrics"]["quality"]
    base = f"{s3_store.root}/reports/monitor_dag/scheduled__2026-11-10T00_00_00_00_00/quality"
    assert remote["report_path"] == remote["evidence_uri"] == f"{base}/quality.html"
    assert storage.read_json(f"{base}/quality_verdict.json")["quality_drop"] == remote["quality_drop"]
    (event,) = _events(context)
    assert event.extra["verdict_uri"] == f"{base}/quality_verdict.json"
    with pytest.raises(MonitoringError, match="does not exist"):
        _operator(tmp_path, data, labels=f"{s3_store.root}/windows/none.parquet").execute(_context())


# -- verdicts about the model that serves -------------------------------------------------------------------------


def test_a_retired_version_s_labels_report_concept_drift_but_raise_no_retrain_event(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """Labels of day 7 (served by v1, v2 as canary) arrive on day 8, when v2 is champion: no retraining of v2."""
    context = _context()
    # serving_version as the DAG's template renders it natively (an int).
    op = _operator(tmp_path, data, log=data["log_canary"], labels=data["labels_concept_drift"], serving_version=2)
    verdict = op.execute(context)

    assert verdict["passed"] is False and verdict["concept_drift"] is True and verdict["quality_drop"] > 0.1
    drift_reason, retired_reason = verdict["reasons"]
    assert drift_reason.startswith("concept drift: roc_auc dropped ") and "on 4000 labelled" in drift_reason
    assert retired_reason == (
        "labels of traffic served by v1, which is no longer champion (champion is v2 now): concept drift "
        "reported for v1, no retraining event for v2"
    )
    assert verdict["retrain_event"] is None and _events(context) == []
    m = verdict["metrics"]
    assert m["served_versions"] == {"1": 3600, "2": 400}
    assert (m["served_version"], m["serving_version"], m["retired"]) == ("1", "2", True)
    # The current champion's own (canary) rows, judged alone: informative.
    rows = m["champion_rows"]
    assert (rows["version"], rows["rows"], rows["concept_drift"]) == ("2", 400, True)
    assert rows["quality"]["roc_auc"] < m["reference_quality"]["roc_auc"] - 0.05
    out = capsys.readouterr().out
    assert 'served_versions={"1": 3600, "2": 400} served_version=1 serving_version=2 retired=True' in out
    assert "retrain_event=no" in out and "no retraining event for v2" in out
    assert "informative: the 400 joined rows served by the current champion v2" in out


def test_the_serving_version_s_labels_still_raise_the_retrain_event(tmp_path: Path, data: dict[str, Path]) -> None:
    context = _context()
    verdict = _operator(
        tmp_path, data, log=data["log_canary"], labels=data["labels_concept_drift"], serving_version="v1"
    ).execute(context)

    assert verdict["passed"] is False and verdict["concept_drift"] is True
    (reason,) = verdict["reasons"]
    assert reason.startswith("concept drift: roc_auc dropped ")
    m = verdict["metrics"]
    assert (m["served_version"], m["serving_version"], m["retired"], m["champion_rows"]) == ("1", "1", False, None)
    (event,) = _events(context)
    assert event.extra == verdict["retrain_event"] and event.extra["reason"] == reason
    assert event.extra["kind"] == "quality"


def test_without_a_variant_column_the_majority_version_served_and_a_passing_retired_verdict_stays_passed(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    context = _context()
    op = _operator(tmp_path, data, log=data["log_uri_only"], serving_version=f"models:/{MODEL}/2")
    verdict = op.execute(context)

    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["concept_drift"] is False and verdict["reasons"] == []
    m = verdict["metrics"]
    assert m["served_versions"] == {"1": 3600, "2": 400}
    assert (m["served_version"], m["serving_version"], m["retired"]) == ("1", "2", True)
    assert m["champion_rows"]["rows"] == 400 and m["champion_rows"]["concept_drift"] is False
    assert verdict["retrain_event"] is None and _events(context) == []


def test_reference_quality_number_and_floors(tmp_path: Path, data: dict[str, Path]) -> None:
    verdict = _operator(
        tmp_path,
        data,
        reference_path=None,
        reference_quality="0.95",  # as a template renders it
        min_quality={"accuracy": 0.9, "log_loss": 0.3},
        max_low_confidence_share=0.1,
        min_outcome_correlation=0.9,
    ).execute(_context())
    reasons = "\n".join(verdict["reasons"])
    assert verdict["passed"] is False and verdict["concept_drift"] is True
    assert "roc_auc dropped" in reasons and "(reference: reference_quality)" in reasons
    assert "quality below the floor: accuracy 0.7" in reasons and "required >= 0.900" in reasons
    assert "quality below the floor: log_loss" in reasons and "required <= 0.300" in reasons
    assert "low confidence: " in reasons and "(allowed 10.0%)" in reasons
    assert "business outcome: corr(proba, revenue_lost)" in reasons
    assert verdict["metrics"]["confidence"].get("reference_mean_confidence") is None


def test_quality_numbers_are_evidently_s(data: dict[str, Path]) -> None:
    """Our metrics are the ones Evidently's ClassificationPreset reports on the same rows."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    frame = pd.read_parquet(data["reference"])
    definition = DataDefinition(
        classification=[BinaryClassification(target="churned", prediction_labels="prediction",
                                             prediction_probas="proba", pos_label=1)]
    )
    snapshot = Report([ClassificationPreset()]).run(
        Dataset.from_pandas(frame[["churned", "prediction", "proba"]], data_definition=definition), None
    )
    theirs = {m["config"]["type"].rsplit(":", 1)[-1]: m["value"] for m in snapshot.dict()["metrics"]}
    ours = classification_quality(frame["churned"], frame["prediction"], frame["proba"])
    for mine, name in (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"), ("f1", "F1Score"),
                       ("roc_auc", "RocAuc"), ("log_loss", "LogLoss")):
        assert ours[mine] == pytest.approx(theirs[name], rel=1e-6), mine


# -- bad input ----------------------------------------------------------------------------------------------------


def test_unknown_column_and_null_feature_fail_without_a_retraining_trigger(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    context = _context()
    verdict = _operator(tmp_path, data, log=data["log_extra_column"]).execute(context)
    assert verdict["passed"] is False
    (reason,) = verdict["reasons"]
    assert "columns the model does not know: ['discount_pct']" in reason
    assert verdict["retrain_event"] is None and _events(context) == []

    verdict = _operator(tmp_path, data, log=data["log_null_feature"], task_id="q2").execute(_context())
    assert verdict["passed"] is False
    assert any("'usage_hours' is entirely null in the inference log (4000 rows)" in r for r in verdict["reasons"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log": "log_empty"}, r"inference log .*log_empty.parquet.* has no rows: .*never a pass"),
        (
            {"labels": "labels_wrong_day"},
            r"0 of 4000 labels joined to the 4000 predictions on \['customer_id', 'event_timestamp'\]: "
            r"check keys/timestamps \(label event_timestamp 2026-11-11",
        ),
        ({"labels": "labels_conflicting"}, r"give different labels to 3 keys"),
        ({"labels": "missing"}, r"labels .*missing.parquet.* does not exist; the delayed labels may not have landed"),
        ({"reference_path": "gone"}, r"reference dataset .*gone/window.* no longer exists; re-create the scored"),
    ],
)
def test_bad_input_is_an_error_never_a_pass(
    tmp_path: Path, data: dict[str, Path], kwargs: dict[str, str], match: str
) -> None:
    resolved: dict[str, Any] = {}
    for key, name in kwargs.items():
        if name == "missing":
            resolved[key] = tmp_path / "missing.parquet"
        elif name == "gone":
            resolved[key] = str(tmp_path / "gone" / "window")
        else:
            resolved[key] = data[name]
    with pytest.raises(MonitoringError, match=match):
        _operator(tmp_path, data, **resolved).execute(_context())


def test_configuration_errors_at_parse_time(tmp_path: Path, data: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="nothing to judge quality against"):
        _operator(tmp_path, data, reference_path=None)
    with pytest.raises(ValueError, match="quality_metric must be one of"):
        _operator(tmp_path, data, quality_metric="auc")
    with pytest.raises(ValueError, match="model_name '{{ params.model }}' is templated"):
        QualityCheckOperator(task_id="q", inference_log_path="a", labels_path="b", report_dir="c",
                             model_name="{{ params.model }}", reference_quality=0.8)
    op = QualityCheckOperator(task_id="q", inference_log_path="a", labels_path="b", report_dir="c",
                              model_name="{{ params.model }}", reference_quality=0.8,
                              retrain_asset="mlops://monitoring/churn")
    assert [o.name for o in op.outlets] == [retrain_alias_name("mlops://monitoring/churn")]


@pytest.mark.integration
def test_logged_to_mlflow_with_quality_tags(tmp_path: Path, data: dict[str, Path], mlflow_server: str) -> None:
    from mlflow import MlflowClient

    def run() -> dict[str, Any]:
        op = _operator(tmp_path, data, labels=data["labels_concept_drift"], log_to_mlflow=True,
                       tracking_uri=mlflow_server, experiment_name="quality-tests")
        return op.execute(_context())

    first, retry = run(), run()
    client = MlflowClient(tracking_uri=mlflow_server)
    (logged,) = client.search_runs([client.get_experiment_by_name("quality-tests").experiment_id])
    assert first["mlflow_run_id"] == retry["mlflow_run_id"] == logged.info.run_id
    tags = logged.data.tags
    assert (tags["mlops.kind"], tags["mlops.model_name"], tags["mlops.passed"]) == ("quality", MODEL, "false")
    assert tags["mlops.report_artifact"] == "quality/quality.html" and tags["mlops.concept_drift"] == "true"
    assert logged.data.metrics["quality_drop"] == pytest.approx(retry["quality_drop"], abs=1e-6)
    assert logged.data.metrics["reference_roc_auc"] > logged.data.metrics["roc_auc"]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "quality")}
    assert artifacts == {"quality/quality.html", "quality/quality_verdict.json"}
    assert retry["retrain_event"]["verdict_uri"] == f"{logged.info.artifact_uri}/quality/quality_verdict.json"
    # The registry has no champion of MODEL: the current champion is unknown, judged as before (event emitted).
    assert retry["metrics"]["serving_version"] is None and retry["metrics"]["retired"] is False
