"""The models page's data, read from a real MLflow registry and tracking store (SQLite, MLflow's own store code):
aliases with their data version, the last drift/quality verdicts, the promotion history and the links."""

from __future__ import annotations

import json
import uuid

import pytest
from mlops_airflow.registry.ledger import append_entry
from mlops_airflow.ui.models_data import (
    DEFAULT_MONITORING_EXPERIMENT,
    _public_url,
    collect,
    mlflow_conn_id,
    monitoring_experiment,
    read_promotion_ledger,
    snapshot,
)

pytestmark = pytest.mark.unit

UI = "http://mlflow.example:5000"
MODEL = "churn_classifier"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A registry with one promoted model, a lock in progress, a monitoring experiment with two verdicts."""
    from mlflow import MlflowClient

    base = tmp_path_factory.mktemp("models_data")
    uri = f"sqlite:///{base}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    training = client.create_experiment("training", artifact_location=(base / "artifacts").as_uri())
    monitoring = client.create_experiment("mlops-monitoring-test", artifact_location=(base / "mon").as_uri())

    runs = []
    for auc in (0.71, 0.83):
        run = client.create_run(training)
        client.log_metric(run.info.run_id, "val_auc", auc)
        client.log_metric(run.info.run_id, "system/cpu_utilization_percentage", 50.0)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
    client.create_registered_model(MODEL, description="Churn <model>")
    for i, run_id in enumerate(runs, start=1):
        client.create_model_version(
            MODEL,
            str(base / f"model{i}"),
            run_id,
            tags={
                "mlops.dataset_rev": f"{i}" * 40,
                "mlops.dataset_md5": f"md5-{i}",
                "mlops.dataset_path": "data/events",
                "mlops.training_set_hash": f"hash-{i}",
                "mlops.feature_service": "churn_model_v1",
                "mlops.dag_id": "ct",
                "mlops.run_id": f"run{i}",
            },
        )
    client.set_registered_model_alias(MODEL, "challenger", "2")
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "zz_custom", "2")
    # v1 became champion by RegisterModelOperator (flat version tags only), then a ledger entry for v2.
    for key, value in {
        "mlops.promotion.alias": "champion",
        "mlops.promotion.at": "2026-11-01T00:00:00+00:00",
        "mlops.promotion.approved_by": "policy:first-champion",
        "mlops.promotion.dag_run": "ct/run1",
    }.items():
        client.set_model_version_tag(MODEL, "1", key, value)
    append_entry(
        client,
        MODEL,
        0,
        {
            "alias": "challenger",
            "version": "2",
            "action": "candidate",
            "at": "2026-11-02T00:00:00+00:00",
            "approved_by": "policy",
            "evidence_uri": f"runs:/{runs[1]}/evaluation/vs-v1.json",
            "airflow": {"dag_id": "ct", "run_id": "run2"},
        },
    )
    append_entry(
        client,
        MODEL,
        1,
        {
            "alias": "canary",
            "version": "2",
            "action": "canary",
            "at": "2026-11-03T00:00:00+00:00",
            "evidence_uri": "https://ci.example/r/1",
        },
    )
    append_entry(
        client,
        MODEL,
        2,
        {
            "alias": "shadow",
            "version": "2",
            "action": "shadow",
            "at": "2026-11-04T00:00:00+00:00",
            "evidence_uri": "file:///tmp/local.html",
        },
    )
    client.create_registered_model(f"{MODEL}.promotion-lock", tags={"mlops.lock.owner": "x"})
    client.create_registered_model("another_model")

    def monitoring_run(kind: str, passed: str, start: int, **metrics) -> str:
        run = client.create_run(
            monitoring,
            start_time=start,
            tags={
                "mlops.kind": kind,
                "mlops.model_name": MODEL,
                "mlops.passed": passed,
                "mlops.dag_id": "monitoring",
                "mlops.run_id": f"m{start}",
                "mlops.drift_share_threshold": "0.5",
            },
        )
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key.replace("__", "."), value)
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    old_drift = monitoring_run("data_drift", "true", 1_700_000_000_000, drift_share=0.1)
    new_drift = monitoring_run("data_drift", "false", 1_800_000_000_000, drift_share=0.6, drift_score__x=0.3)
    quality = monitoring_run("quality_check", "true", 1_750_000_000_000, roc_auc=0.8)
    return {
        "uri": uri,
        "client": client,
        "runs": runs,
        "training": training,
        "monitoring": monitoring,
        "drift": new_drift,
        "old_drift": old_drift,
        "quality": quality,
    }


def test_configuration_read_at_call_time(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__UI_MLFLOW_CONN_ID", raising=False)
    monkeypatch.delenv("AIRFLOW__MLOPS__MONITORING_EXPERIMENT", raising=False)
    assert mlflow_conn_id() == "mlflow_default"
    assert monitoring_experiment() == DEFAULT_MONITORING_EXPERIMENT == "mlops-monitoring"
    monkeypatch.setenv("AIRFLOW__MLOPS__UI_MLFLOW_CONN_ID", "mlflow_ui")
    monkeypatch.setenv("AIRFLOW__MLOPS__MONITORING_EXPERIMENT", "mon")
    assert (mlflow_conn_id(), monitoring_experiment()) == ("mlflow_ui", "mon")


def test_public_url_drops_credentials():
    assert (
        _public_url("https://bot:s3cret@mlflow.example.com:8443/path?q=1#f")
        == "https://mlflow.example.com:8443/path?q=1#f"
    )
    assert _public_url("http://user@host/") == "http://host/"
    assert _public_url(UI) == UI


def test_collect_reads_aliases_verdicts_history_and_links(store):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    hook = MlflowHook(tracking_uri=store["uri"])  # what the page passes (snapshot); a raw client still works
    models = {m["name"]: m for m in collect(hook, UI + "/", "mlops-monitoring-test")}
    assert list(models) == ["another_model", MODEL]  # sorted, the promotion lock left out
    model = models[MODEL]
    assert model["description"] == "Churn <model>" and model["url"] == f"{UI}/#/models/{MODEL}"
    assert (model["versions"], model["latest_version"]) == (2, "2")
    assert list(model["aliases"]) == ["champion", "challenger", "zz_custom"]  # the pack's order, then the rest
    champion = model["aliases"]["champion"]
    run1 = store["runs"][0]
    assert champion["version"] == "1" and champion["status"] == "READY" and champion["run_id"] == run1
    assert champion["run_url"] == f"{UI}/#/experiments/{store['training']}/runs/{run1}"
    assert champion["version_url"] == f"{UI}/#/models/{MODEL}/versions/1"
    assert champion["dataset"] == {"rev": "1" * 40, "md5": "md5-1", "path": "data/events"}
    assert (champion["training_set_hash"], champion["feature_service"]) == ("hash-1", "churn_model_v1")
    assert champion["metrics"] == {"val_auc": 0.71}  # system/ metrics left out
    assert champion["dag_run"] == "ct/run1" and champion["created_at"].endswith("+00:00")
    assert model["aliases"]["challenger"]["metrics"] == {"val_auc": 0.83}

    drift, quality = model["monitoring"]["drift"], model["monitoring"]["quality"]
    assert drift["run_id"] == store["drift"]  # the newest drift run, not the older one
    assert drift["kind"] == "data_drift" and drift["passed"] is False and drift["status"] == "FINISHED"
    assert drift["metrics"] == {"drift_share": 0.6} and drift["threshold"] == "0.5"
    assert drift["report_url"] == f"reports/{store['drift']}" and drift["dag_run"] == "monitoring/m1800000000000"
    assert drift["at"] == "2027-01-15T08:00:00+00:00"
    assert quality["run_id"] == store["quality"] and quality["passed"] is True and quality["report_url"] is None

    ledger = model["ledger"]
    assert [(r["alias"], r["version"], r["source"]) for r in ledger] == [
        ("shadow", "2", "ledger"),
        ("canary", "2", "ledger"),
        ("challenger", "2", "ledger"),
        ("champion", "1", "version tags"),
    ]
    run2 = store["runs"][1]
    assert ledger[2]["evidence_url"] == (
        f"{UI}/#/experiments/{store['training']}/runs/{run2}/artifacts/evaluation/vs-v1.json"
    )
    assert ledger[1]["evidence_url"] == "https://ci.example/r/1"
    assert ledger[0]["evidence_url"] is None and ledger[3]["evidence_url"] is None
    assert models["another_model"]["aliases"] == {} and models["another_model"]["latest_version"] is None
    assert models["another_model"]["monitoring"] == {"drift": None, "quality": None}
    assert models["another_model"]["version_history"] == []
    assert [(v["version"], v["states"]) for v in model["version_history"]] == [
        ("2", ["challenger", "zz_custom"]), ("1", ["champion"])]
    assert model["version_history"][1] is champion and champion["validation_metrics"] == {"val_auc": 0.71}
    assert champion["holdout_metrics"] == {} and champion["evaluation"] is None
    json.dumps(models)
    assert read_promotion_ledger is __import__("mlops_airflow.registry.ledger", fromlist=["x"]).promotion_history


def test_without_the_monitoring_experiment_there_are_no_verdicts(store):
    (model,) = [m for m in collect(store["client"], UI, "no-such-experiment") if m["name"] == MODEL]
    assert model["monitoring"] == {"drift": None, "quality": None}
    assert model["aliases"]["champion"]["version"] == "1"


def test_a_version_whose_run_is_gone_has_no_run_link(store):
    client = store["client"]
    name = f"gone_run_{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    client.create_model_version(name, "/tmp/m", "0" * 32)  # its run was purged (or lives in another store)
    client.set_registered_model_alias(name, "champion", "1")
    (model,) = [m for m in collect(client, UI, "mlops-monitoring-test") if m["name"] == name]
    champion = model["aliases"]["champion"]
    assert champion["run_id"] == "0" * 32 and champion["run_url"] is None
    assert champion["version_url"] == f"{UI}/#/models/{name}/versions/1"
    assert champion["metrics"] == {} and champion["dataset"] == {"rev": None, "md5": None, "path": None}
    assert champion["dag_run"] is None


def test_snapshot_through_the_connection(store, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_MODELS_PAGE",
        json.dumps(
            {"conn_type": "mlflow", "extra": {"tracking_uri": store["uri"], "ui_url": "https://bot:pw@mlflow.example/"}}
        ),
    )
    monkeypatch.setenv("AIRFLOW__MLOPS__UI_MLFLOW_CONN_ID", "mlflow_models_page")
    monkeypatch.setenv("AIRFLOW__MLOPS__MONITORING_EXPERIMENT", "mlops-monitoring-test")
    data = snapshot()
    assert data["error"] is None and data["mlflow_conn_id"] == "mlflow_models_page"
    assert data["mlflow_url"] == "https://mlflow.example"  # no credentials on the page
    assert MODEL in [m["name"] for m in data["models"]] and data["elapsed_s"] >= 0
    model = next(m for m in data["models"] if m["name"] == MODEL)
    assert model["url"] == f"https://mlflow.example/#/models/{MODEL}" and "pw" not in json.dumps(data)
    assert model["monitoring"]["drift"]["run_id"] == store["drift"]


def test_snapshot_says_what_to_fix_when_the_connection_is_unusable(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__UI_MLFLOW_CONN_ID", "mlflow_conn_that_does_not_exist")
    data = snapshot()
    assert data["models"] == [] and data["mlflow_url"] is None
    assert data["error"].startswith("connection 'mlflow_conn_that_does_not_exist' is not usable (")
    assert "set [mlops] ui_mlflow_conn_id" in data["error"]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_NO_SERVER", json.dumps({"conn_type": "mlflow"}))
    monkeypatch.setenv("AIRFLOW__MLOPS__UI_MLFLOW_CONN_ID", "mlflow_no_server")
    assert "names no MLflow server" in snapshot()["error"]


def test_every_version_with_its_status_rejections_and_metric_sources(store):
    """champion / challenger (also rejected) / rolled back (champion and canary) / refused / registered."""
    client = store["client"]
    name = f"history_{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    runs = []
    for i in range(1, 7):
        run = client.create_run(store["training"])
        client.log_metric(run.info.run_id, "val_auc", 0.7 + i / 100)
        client.log_metric(run.info.run_id, "train_loss", 0.5)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
        client.create_model_version(name, f"/tmp/m{i}", run.info.run_id)

    def entry(head: int, **values) -> None:
        append_entry(client, name, head, {"at": f"2026-11-0{head + 1}T00:00:00+00:00", **values})

    entry(0, alias="champion", version="1", previous_version=None, action="promote", approved_by="alice")
    entry(1, alias="champion", version="2", previous_version="1", action="promote", approved_by="alice")
    entry(2, alias="champion", version="1", previous_version="2", action="rollback", approved_by="carol")
    entry(3, alias="canary", version="3", previous_version=None, action="canary", approved_by="policy")
    entry(4, alias="canary", version=None, previous_version="3", action="rollback",
          approved_by="policy: automatic rollback", airflow={"dag_id": "mon", "run_id": "r9"})
    entry(5, alias="champion", version="5", previous_version=None, action="rejected", approved_by=None,
          rejected_by="bob", note="holdout too small", evidence_uri=f"runs:/{runs[4]}/evaluation/vs-v1.json",
          airflow={"dag_id": "ct", "run_id": "run5", "task_id": "approve_promotion"})
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "5")
    evaluation = {"mlops.evaluation.primary_metric": "auc", "mlops.evaluation.champion_version": "1",
                  "mlops.evaluation.accuracy": "0.7", "mlops.evaluation.logloss": "nan"}
    for version, passed, auc in (("4", "false", "0.61"), ("5", "true", "0.83")):
        for key, value in {**evaluation, "mlops.evaluation.passed": passed, "mlops.evaluation.auc": auc,
                           "mlops.evaluation.evidence_uri": f"runs:/{runs[int(version) - 1]}/evaluation/vs-v1.json",
                           }.items():
            client.set_model_version_tag(name, version, key, value)

    (model,) = [m for m in collect(client, UI, "mlops-monitoring-test") if m["name"] == name]
    history = {v["version"]: v for v in model["version_history"]}
    assert [v["version"] for v in model["version_history"]] == ["6", "5", "4", "3", "2", "1"]  # newest first
    assert {v: history[v]["states"] for v in history} == {
        "6": ["registered"], "5": ["challenger", "rejected"], "4": ["refused"], "3": ["rolled back"],
        "2": ["rolled back"], "1": ["champion"]}
    assert {v: history[v]["state"] for v in history}["5"] == "challenger"
    assert history["5"]["rejections"] == [{"by": "bob", "reason": "holdout too small",
                                           "at": "2026-11-06T00:00:00+00:00", "alias": "champion",
                                           "dag_run": "ct/run5"}]
    assert history["3"]["rollbacks"] == [{"alias": "canary", "at": "2026-11-05T00:00:00+00:00",
                                          "by": "policy: automatic rollback", "replaced_by": None,
                                          "dag_run": "mon/r9"}]
    assert history["2"]["rollbacks"][0]["replaced_by"] == "1" and history["2"]["rollbacks"][0]["by"] == "carol"
    assert model["aliases"]["challenger"] is history["5"] and history["5"]["aliases"] == ["challenger"]
    # Two metric sources, never mixed: the training run's validation split, the holdout evaluation (tags).
    assert history["4"]["validation_metrics"] == {"val_auc": 0.74}
    assert history["4"]["metrics"] == {"train_loss": 0.5, "val_auc": 0.74}
    assert history["4"]["holdout_metrics"] == {"accuracy": 0.7, "auc": 0.61}  # the NaN left out
    ev = history["5"]["evaluation"]
    assert (ev["passed"], ev["primary_metric"], ev["champion_version"]) == (True, "auc", "1")
    assert ev["evidence_url"] == (
        f"{UI}/#/experiments/{store['training']}/runs/{runs[4]}/artifacts/evaluation/vs-v1.json")
    assert history["6"]["evaluation"] is None and history["6"]["holdout_metrics"] == {}
    # The ledger row of the rejection says who and why.
    (rejected,) = [r for r in model["ledger"] if r["action"] == "rejected"]
    assert (rejected["version"], rejected["rejected_by"], rejected["note"]) == ("5", "bob", "holdout too small")
    assert rejected["evidence_url"].endswith("/artifacts/evaluation/vs-v1.json")
    assert all(r["rejected_by"] is None for r in model["ledger"] if r["action"] != "rejected")
    json.dumps(model, allow_nan=False)
