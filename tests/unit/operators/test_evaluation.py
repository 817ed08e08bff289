"""EvaluateChallengerOperator: statistics (unit) and real challenger-vs-champion verdicts (integration).

Real models (test_registry_support.py) scored through score.py in the training venv; predictions
are cached per logged model, so each model is scored once per session (~10-20 s each).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TRAIN_PYTHON, make_context
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators.evaluation import (
    EvaluateChallengerOperator,
    binary_metrics,
    check_absolute,
    mcnemar,
    paired_bootstrap,
    roc_auc,
)
from unit.operators.test_registry_support import (
    holdout,
    mlflow_conn_json,
    needs_training_env,
    register,
    scores_dir,
    trained,
    unique,
)


# ------------------------------------------------------------------------------- statistics
@pytest.mark.unit
def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.5 + y * 0.3, 2)  # rounded: many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))


@pytest.mark.unit
def test_mcnemar_exact_and_bootstrap_are_deterministic():
    y = np.array([1] * 20)
    champ = np.array([1] * 10 + [0] * 10)  # champion right on the first 10
    chal = np.array([0] * 8 + [1] * 12)    # challenger right on the last 12
    result = mcnemar(y, chal, champ)
    # discordant: b = 8 (champion only), c = 10 (challenger only); two-sided exact p for 8 of 18
    assert (result["b_champion_only_correct"], result["c_challenger_only_correct"]) == (8, 10)
    assert result["p_value"] == pytest.approx(0.814529, abs=1e-6)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good, bad = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1), rng.random(400)
    first = paired_bootstrap(y, good, bad, n_boot=200, seed=7)
    assert first == paired_bootstrap(y, good, bad, n_boot=200, seed=7)
    assert first["ci"][0] > 0 and first["delta"] > 0.3
    same = paired_bootstrap(y, good, good, n_boot=50, seed=7, metric="logloss")
    assert same["delta"] == 0 and same["ci"] == [0.0, 0.0]


@pytest.mark.unit
def test_absolute_thresholds_safe_default():
    metrics = binary_metrics([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])
    assert metrics == {"auc": 1.0, "accuracy": 1.0, "logloss": pytest.approx(0.1976, abs=1e-3)}
    assert check_absolute(metrics, None) == (False, [
        "no absolute thresholds configured (min_metrics/max_metrics): never promoted without them"])
    assert check_absolute(metrics, {"auc": 0.9}, {"logloss": 0.1}) == (False, ["logloss=0.1976 > maximum 0.1"])


# ------------------------------------------------------------------------- real models
@pytest.fixture
def models(mlflow_server, monkeypatch):
    if needs_training_env.args[0]:
        pytest.skip(needs_training_env.kwargs["reason"])
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(mlflow_server))
    return trained(mlflow_server)


def _evaluate(name: str, **kwargs) -> dict:
    ctx = make_context("evaluate_challenger")
    kwargs.setdefault("min_metrics", {"auc": 0.6})
    op = EvaluateChallengerOperator(task_id="evaluate_challenger", model_name=name, holdout_path=holdout(),
                                    n_boot=300, output_dir=str(scores_dir()), python=str(TRAIN_PYTHON), **kwargs)
    verdict = op.execute(ctx)
    verdict["_xcom"] = ctx["ti"].xcom
    return verdict


def _evaluation_tags(name: str, version: str) -> dict[str, str]:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    tags = MlflowHook().get_client().get_model_version(name, version).tags
    return {k.removeprefix("mlops.evaluation."): v for k, v in tags.items() if k.startswith("mlops.evaluation.")}


@pytest.mark.integration
def test_better_challenger_passes_with_significant_delta_and_evidence(models):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    name = unique("evaluate")
    register(name, models["weak"], min_metrics={"val_auc": 0.5})
    challenger = register(name, models["good"], min_metrics={"val_auc": 0.5})
    verdict = _evaluate(name, challenger=challenger, min_improvement=0.01)
    m = verdict["metrics"]
    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["champion_version"] == "1" and verdict["challenger_version"] == "2"
    assert m["challenger"]["auc"] > m["champion"]["auc"] and m["delta"] > 0.01 and m["ci"][0] > 0
    assert m["mcnemar_p"] < 0.05 and m["holdout_rows"] == 2000
    assert verdict["evidence_uri"] == f"runs:/{challenger['run_id']}/evaluation/vs-v1.json"
    hook = MlflowHook()
    evidence = hook.load_json_artifact(hook.get_client(), challenger["run_id"], "evaluation/vs-v1.json")
    assert evidence["comparison"]["bootstrap"]["n_boot"] == 300 and evidence["holdout"]["sha256"]
    assert "_link_EvidenceLink" in verdict["_xcom"] and "_link_MlflowModelVersionLink" in verdict["_xcom"]
    # The evidence link opens the evidence file itself in the MLflow UI (not a raw runs:/ URI).
    assert verdict["_xcom"]["_link_EvidenceLink"] == verdict["evidence_url"] == (
        f"{verdict['run_url']}/artifacts/evaluation/vs-v1.json")
    assert verdict["outcome"] == "promotable"
    json.dumps({k: v for k, v in verdict.items() if k != "_xcom"})
    # The verdict on the challenger version, for the models page (holdout metrics labelled as such there).
    tags = _evaluation_tags(name, "2")
    assert tags == {"passed": "true", "primary_metric": "auc", "champion_version": "1",
                    "evidence_uri": verdict["evidence_uri"], "auc": str(m["challenger"]["auc"]),
                    "accuracy": str(m["challenger"]["accuracy"]), "logloss": str(m["challenger"]["logloss"])}

    # The reverse: the weak model challenging the good champion fails, with the reason.
    from mlops_airflow.hooks.mlflow_registry import MlflowHook as Hook

    client = Hook().get_client()
    client.set_registered_model_alias(name, "champion", "2")
    reverse = _evaluate(name, challenger="1", min_improvement=0.0, min_metrics={"auc": 0.5})
    assert reverse["passed"] is False
    assert any("improvement -" in r and "< min_improvement 0.0" in r for r in reverse["reasons"])
    assert any("not significant" in r for r in reverse["reasons"])
    assert reverse["outcome"] == "refused"  # approval and promotion skip on it, with these reasons
    refused = _evaluation_tags(name, "1")
    assert (refused["passed"], refused["champion_version"]) == ("false", "2")
    assert refused["evidence_uri"] == reverse["evidence_uri"] and float(refused["auc"]) < float(tags["auc"])


@pytest.mark.integration
def test_safe_defaults_no_thresholds_and_no_champion(models):
    name = unique("defaults")
    challenger = register(name, models["good"], min_metrics=None)  # no champion yet
    no_thresholds = _evaluate(name, challenger=challenger, min_metrics=None)
    assert no_thresholds["passed"] is False
    assert any("no absolute thresholds configured" in r for r in no_thresholds["reasons"])
    alone = _evaluate(name, challenger=challenger, min_metrics={"auc": 0.6})
    assert alone["passed"] is True and alone["champion_version"] is None
    assert alone["metrics"]["champion"] is None and alone["evidence_uri"].endswith("/evaluation/no-champion.json")
    assert _evaluation_tags(name, challenger["version"])["passed"] == "true"
    # A stale tag (another metric set) goes; each rerun rewrites the verdict on the version.
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    MlflowHook().get_client().set_model_version_tag(name, challenger["version"], "mlops.evaluation.r2", "0.5")
    too_high = _evaluate(name, challenger=challenger, min_metrics={"auc": 0.999})
    assert too_high["passed"] is False and "auc=" in too_high["reasons"][0]
    tags = _evaluation_tags(name, challenger["version"])
    assert (tags["passed"], tags["champion_version"], tags["evidence_uri"]) == (
        "false", "none", too_high["evidence_uri"])
    assert "r2" not in tags and set(tags) == {"passed", "primary_metric", "champion_version", "evidence_uri", "auc",
                                              "accuracy", "logloss"}


@pytest.mark.integration
def test_champion_without_model_artifact_is_a_clear_error(models):
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    name = unique("brokenchamp")
    challenger = register(name, models["good"], min_metrics=None)
    client = MlflowHook().get_client()
    run_id = models["weak"][0]["run_id"]
    broken = client.create_model_version(name, f"runs:/{run_id}/no_such_model", run_id)
    client.set_registered_model_alias(name, "champion", broken.version)
    with pytest.raises(RegistryError, match=rf"champion {name} v{broken.version} .*could not be scored.*model "
                                            r"artifact .* is missing \(no MLmodel file\)"):
        _evaluate(name, challenger=challenger, min_improvement=0.0)
    with pytest.raises(RegistryError, match="no challenger to evaluate"):
        _evaluate(name, challenger=None, challenger_alias="nobody")


@pytest.mark.integration
def test_holdout_and_scores_on_object_storage_and_the_cache_is_reused(models, s3_store, caplog, capsys):
    """Issue #11: the holdout is read from an s3:// URI and the scores are written under an s3:// output_dir;
    a second evaluation (a retry, another worker) reuses the cached scores keyed by the holdout's content."""
    import logging
    from pathlib import Path

    from mlops_airflow import storage

    name = unique("evaluates3")
    register(name, models["weak"], min_metrics={"val_auc": 0.5})
    challenger = register(name, models["good"], min_metrics={"val_auc": 0.5})
    holdout_uri = storage.put_file(holdout(), f"{s3_store.root}/holdout/day.parquet")["uri"]
    scores = f"{s3_store.root}/scores"

    def evaluate() -> dict:
        op = EvaluateChallengerOperator(task_id="evaluate_challenger", model_name=name, holdout_path=holdout_uri,
                                        challenger=challenger, min_metrics={"auc": 0.6}, min_improvement=0.01,
                                        n_boot=300, output_dir=scores, python=str(TRAIN_PYTHON))
        return op.execute(make_context("evaluate_challenger"))

    first = evaluate()
    assert first["passed"] is True, first["reasons"]
    keys = s3_store.keys("scores/")
    assert len([k for k in keys if k.endswith(".parquet")]) == 2 and len([k for k in keys if k.endswith(".json")]) == 2
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        again = evaluate()
    logged = caplog.text + capsys.readouterr().out  # task loggers write through structlog to stdout
    assert logged.count(f"reusing {scores}/") == 2, logged  # both models: nothing scored again
    assert s3_store.keys("scores/") == keys
    assert again["metrics"] == first["metrics"]
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    evidence = MlflowHook().read_json_artifact(challenger["run_id"], "evaluation/vs-v1.json")
    from mlops_airflow._io import file_sha256

    assert (evidence["holdout"]["path"], evidence["holdout"]["sha256"]) == (holdout_uri, file_sha256(Path(holdout())))
