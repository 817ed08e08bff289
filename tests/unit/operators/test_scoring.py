"""Batch scoring with champion / canary / shadow, and the shadow-canary analysis, on real models."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from conftest import TRAIN_PYTHON, make_context
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators.promotion import RollbackCanaryOperator, read_ledger
from mlops_airflow.operators.scoring import (
    BatchScoringOperator,
    ShadowCanaryAnalysisOperator,
    canary_mask,
    canary_test,
    mcnemar,
)
from mlops_airflow.operators.training import LocalTrainingOperator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo"),
]
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
MODEL = "scoring_test_model"
# The operators have no example defaults any more (the versions here are registered without mlops.* tags).
NAMES = {"entity_column": "customer_id", "label_columns": ["churned"]}
KEYS_LABEL = {"keys": ["customer_id", "event_timestamp"], "label_column": "churned"}


@pytest.fixture(scope="module")
def registry(mlflow_server, generator, tmp_path_factory):
    """Two trained versions: v1 champion, v2 challenger (trained on concept-drifted data)."""
    import os

    from mlflow import MlflowClient

    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
        {"conn_type": "mlflow", "extra": {"tracking_uri": mlflow_server}})
    os.environ["AIRFLOW__MLOPS__TRAINING_PYTHON"] = str(TRAIN_PYTHON)
    tmp = tmp_path_factory.mktemp("scoring")
    client = MlflowClient(mlflow_server)
    client.create_registered_model(MODEL)
    for i, drift in enumerate((0.0, 1.0), start=1):
        df = generator.generate_batch(date(2026, 11, i), n_customers=1500, concept_drift=drift)
        path = generator.write_batch(df, tmp / f"train{i}.parquet")
        trained = LocalTrainingOperator(
            task_id="train", experiment_name="scoring-test", python=str(TRAIN_PYTHON),
            training_set={"uri": str(path), "hash": f"h{i}", "features": FEATURES, "label": "churned"},
            dataset_version={"rev": f"r{i}", "md5": f"m{i}", "path": "p", "repo": "r"}, training_config={"epochs": 3},
        ).execute(make_context(task_id="train", run_id=f"scoring-{i}"))
        mv = client.create_model_version(MODEL, trained["model_uri"], trained["run_id"],
                                         model_id=trained["model_uri"].removeprefix("models:/"))
        client.set_registered_model_alias(MODEL, "champion" if i == 1 else "challenger", mv.version)
    window = generator.generate_batch(date(2026, 11, 5), n_customers=800, concept_drift=1.0)
    yield {"client": client, "tmp": tmp, "window": generator.write_batch(window, tmp / "window.parquet"),
           "labels": window}
    os.environ.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)


def test_champion_serves_challenger_shadows_and_analysis_recommends(registry, context):
    tmp = registry["tmp"]
    op = BatchScoringOperator(**NAMES, task_id="score", model_name=MODEL, input_path=str(registry["window"]),
                              output_dir=str(tmp / "logs"), canary_share=0.0)
    result = op.execute(context(task_id="score"))
    assert result["rows"] == 800 and result["versions"] == {"champion": "1", "challenger": "2"}
    assert result["shadow_aliases"] == ["challenger"] and result["served_by"] == {"champion": 800, "canary": 0}
    log = pd.read_parquet(result["uri"])
    assert "churned" not in log.columns  # labels never enter the inference log
    assert {"prediction", "proba", "confidence", "model_version", "challenger_prediction"} <= set(log.columns)
    assert (log["model_version"] == "1").all() and log["confidence"].between(0.5, 1).all()
    again = op.execute(context(task_id="score", try_number=2))
    assert again["uri"] == result["uri"]  # retry: same content-addressed log

    labels_path = tmp / "labels.parquet"
    registry["labels"][["customer_id", "event_timestamp", "churned"]].to_parquet(labels_path)
    verdict = ShadowCanaryAnalysisOperator(
        **KEYS_LABEL,
        task_id="analyse", inference_log=result["uri"], labels_path=str(labels_path), evidence_dir=str(tmp / "ev"),
    ).execute(context(task_id="analyse"))
    cmp = verdict["metrics"]["comparisons"]["challenger"]
    assert 0 < cmp["disagreement"] < 1 and cmp["mcnemar"]["p_value"] < 0.05
    # The challenger learned the drifted concept, the champion did not.
    assert cmp["shadow_accuracy"] > cmp["served_accuracy"] and verdict["recommendation"] == "promote"


def test_canary_share_routes_entities_deterministically(registry, context):
    client, tmp = registry["client"], registry["tmp"]
    client.set_registered_model_alias(MODEL, "canary", "2")
    try:
        result = BatchScoringOperator(**NAMES, task_id="score", model_name=MODEL, input_path=str(registry["window"]),
                                      output_dir=str(tmp / "logs2"), canary_share=0.25).execute(context())
    finally:
        client.delete_registered_model_alias(MODEL, "canary")
    assert 120 < result["served_by"]["canary"] < 280
    log = pd.read_parquet(result["uri"])
    assert set(log.loc[log["served_by"] == "canary", "model_version"]) == {"2"}
    # On the drifted concept the canary (v2 learned it) beats the champion on its own rows: promote the canary
    # (the challenger shadow is v2 too, so the better-shadow rule could also pick it; with the challenger
    # removed, the canary alone must carry the promotion).
    client.delete_registered_model_alias(MODEL, "challenger")
    client.set_registered_model_alias(MODEL, "canary", "2")
    try:
        only_canary = BatchScoringOperator(
            **NAMES, task_id="score", model_name=MODEL, input_path=str(registry["window"]),
            output_dir=str(tmp / "logs4"), canary_share=0.5).execute(context())
        labels = tmp / "labels4.parquet"
        registry["labels"][["customer_id", "event_timestamp", "churned"]].to_parquet(labels)
        verdict = ShadowCanaryAnalysisOperator(
            **KEYS_LABEL,
            task_id="analyse", inference_log=only_canary["uri"], labels_path=str(labels),
            evidence_dir=str(tmp / "ev4")).execute(context(task_id="analyse"))
    finally:
        client.delete_registered_model_alias(MODEL, "canary")
        client.set_registered_model_alias(MODEL, "challenger", "2")
    cmp = verdict["metrics"]["comparisons"]["canary"]
    assert cmp["canary_accuracy"] > cmp["champion_accuracy"] and cmp["fisher"]["p_value"] < 0.05, cmp
    assert verdict["recommendation"] == "promote" and verdict["promote_alias"] == "canary", verdict


def test_a_significantly_worse_canary_is_rolled_back_once_with_a_ledger_entry(registry, generator, context):
    """v2 learned the drifted concept: on clean data, as a canary, it is worse than the champion (Fisher test)."""
    client, tmp = registry["client"], registry["tmp"]
    clean = generator.generate_batch(date(2026, 11, 6), n_customers=2000, concept_drift=0.0)
    window = generator.write_batch(clean.drop(columns=["churned"]), tmp / "clean.parquet")
    labels = tmp / "clean_labels.parquet"
    clean[["customer_id", "event_timestamp", "churned"]].to_parquet(labels)
    client.set_registered_model_alias(MODEL, "canary", "2")
    try:
        scored = BatchScoringOperator(**NAMES, task_id="score", model_name=MODEL, input_path=str(window),
                                      output_dir=str(tmp / "logs3"), canary_share=0.5).execute(context())
        verdict = ShadowCanaryAnalysisOperator(
            **KEYS_LABEL,
            task_id="analyse", inference_log=scored["uri"], labels_path=str(labels), evidence_dir=str(tmp / "ev3"),
        ).execute(context(task_id="analyse"))
        cmp = verdict["metrics"]["comparisons"]["canary"]
        assert cmp["canary_accuracy"] < cmp["champion_accuracy"] and cmp["fisher"]["p_value"] < 0.05, cmp
        assert verdict["recommendation"] == "rollback" and verdict["rollback_alias"] == "canary"
        assert verdict["promote_alias"] is None and not verdict["passed"]
        assert "significantly below the champion" in verdict["reasons"][-1]

        ctx = context(task_id="rollback_canary")
        done = RollbackCanaryOperator(task_id="rollback_canary", model_name=MODEL, verdict=verdict).execute(ctx)
        assert done["changed"] is True and done["rolled_back_version"] == "2"
        assert "canary" not in client.get_registered_model(MODEL).aliases
        assert client.get_registered_model(MODEL).aliases["champion"] == "1"  # the champion is untouched
        entry = read_ledger(client, MODEL)[-1]
        assert (entry["alias"], entry["action"], entry["previous_version"]) == ("canary", "rollback", "2")
        assert entry["evidence_uri"] == verdict["evidence_uri"] and entry["seq"] == done["ledger_seq"]
        # A retry changes nothing and writes no second entry.
        again = RollbackCanaryOperator(task_id="rollback_canary", model_name=MODEL, verdict=verdict).execute(
            context(task_id="rollback_canary", try_number=2))
        assert again["changed"] is False and read_ledger(client, MODEL)[-1]["seq"] == entry["seq"]
        # A verdict that does not recommend a rollback never removes a canary.
        with pytest.raises(Exception, match="not 'rollback'"):
            RollbackCanaryOperator(task_id="r", model_name=MODEL, verdict={**verdict, "recommendation": "hold"}
                                   ).execute(context(task_id="r"))
    finally:
        if "canary" in client.get_registered_model(MODEL).aliases:
            client.delete_registered_model_alias(MODEL, "canary")


def test_no_champion_and_empty_window_are_clear_errors(registry, generator, context):
    tmp = registry["tmp"]
    with pytest.raises(MonitoringError, match="has no champion alias"):
        BatchScoringOperator(**NAMES, task_id="s", model_name="no_such_model_xyz", input_path=str(registry["window"]),
                             output_dir=str(tmp)).execute(context())
    empty = tmp / "empty.parquet"
    pd.read_parquet(registry["window"]).head(0).to_parquet(empty)
    with pytest.raises(MonitoringError, match="has no rows"):
        BatchScoringOperator(**NAMES, task_id="s", model_name=MODEL, input_path=str(empty),
                             output_dir=str(tmp)).execute(context())


@pytest.mark.unit
def test_canary_mask_and_mcnemar():
    keys = list(range(10_000))
    mask = canary_mask(keys, 0.1, "m")
    assert 900 < mask.sum() < 1100 and (canary_mask(keys, 0.1, "m") == mask).all()
    assert mcnemar([1, 1, 1, 0], [0, 0, 0, 0])["only_a_wrong"] == 3
    assert mcnemar([0, 0], [0, 0])["p_value"] == 1.0
    # Fisher's exact test for the canary (disjoint rows): 60% vs 75% on 400 rows each is significant, 74 vs 75 not.
    assert canary_test(240, 400, 300, 400)["p_value"] < 0.001
    assert canary_test(296, 400, 300, 400)["p_value"] > 0.5


def test_window_log_scores_and_evidence_on_object_storage(registry, context, s3_store):
    """Issue #11: the window, the inference log, the scores cache and the shadow evidence all live at s3:// URIs;
    a retry on another worker finds the same content-addressed log and reuses the cached scores."""
    from mlops_airflow import storage

    window = storage.put_file(registry["window"], f"{s3_store.root}/landing/window.parquet")["uri"]
    op = BatchScoringOperator(**NAMES, task_id="score", model_name=MODEL, input_path=window,
                              output_dir=f"{s3_store.root}/inference", canary_share=0.0)
    result = op.execute(context(task_id="score"))
    assert result["uri"].startswith(f"{s3_store.root}/inference/{MODEL}/") and result["rows"] == 800
    keys = s3_store.keys("inference/")
    assert sum(k.startswith(f"inference/{MODEL}/scores/") and k.endswith(".parquet") for k in keys) == 2
    assert storage.read_table(result["uri"])["model_version"].eq("1").all()
    again = op.execute(context(task_id="score", try_number=2))
    assert again["uri"] == result["uri"] and s3_store.keys("inference/") == keys  # nothing rewritten elsewhere

    labels = f"{s3_store.root}/labels/labels.parquet"
    storage.write_table(labels, registry["labels"][["customer_id", "event_timestamp", "churned"]])
    verdict = ShadowCanaryAnalysisOperator(
        **KEYS_LABEL, task_id="analyse", inference_log=result["uri"], labels_path=labels,
        evidence_dir=f"{s3_store.root}/evidence",
    ).execute(context(task_id="analyse"))
    assert verdict["evidence_uri"].startswith(f"{s3_store.root}/evidence/") and verdict["recommendation"] == "promote"
    assert storage.read_json(verdict["evidence_uri"])["recommendation"] == "promote"
