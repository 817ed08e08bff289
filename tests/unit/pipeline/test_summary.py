"""The CT run summary: a short readable block in the log (the outcome first; a refused challenger says so), the
full JSON as an artefact under ``<root>/summaries/`` (and ``runs/latest_summary.json``), its URI in the XCom."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from conftest import ROOT
from mlops_airflow import storage
from mlops_airflow.pipeline import ModelSpec
from mlops_airflow.pipeline.summary import summary_uris, write_ct_summary

pytestmark = pytest.mark.unit
USER = ROOT / "tests" / "user_dag" / "my_model.py"
SPEC = ModelSpec(name="m1", label="y", entity_columns=["account_id"], source=f"{USER}:daily_batch",
                 features=["x1", "x2"], min_metrics={"auc": 0.7}, holdout=f"{USER}:holdout_batch")
RUN_ID = "manual__2026-12-03T10:00:00+00:00"


class TI:
    run_id, task_id = RUN_ID, "summarize"

    def xcom_pull(self, task_ids: str, key: str = "return_value"):  # the guard's decision key: absent here
        return None


def xcoms(**changes):
    base = {
        "land_batch": {"day": "2026-11-02", "path": "s3://b/landing/2026-11-02.parquet", "uri": "u", "rows": 10},
        "retrain_guard": {"proceed": True, "reason": "manual run", "triggered_by": "manual"},
        "version_dataset": {"path": "s3://b/datasets/m1", "rev": "local:abcdef123456", "md5": "f" * 32, "rows": 10},
        "build_training_set": {"hash": "ab" * 32, "rows": 10, "uri": "s3://b/ts/m1/abab.parquet", "dvc": None},
        "train_model": {"run_id": "r1", "metrics": {"val_auc": 0.81}, "run_url": "http://mlflow/r1"},
        "register_model": {"model_name": "m1", "version": "4", "aliases": ["challenger"], "url": "http://mlflow/v4"},
        "check_drift": {"passed": True, "drift_share": 0.1, "drifted_columns": [], "evidence_uri": "runs:/d/r"},
        "evaluate_challenger": {"passed": False, "champion_version": "3", "evidence_uri": "runs:/e/eval",
                                "reasons": ["improvement not significant: 95% CI [-0.01, 0.02] includes 0"],
                                "metrics": {"delta": 0.004, "ci": [-0.01, 0.02]}},
    }
    base.update(changes)
    return lambda task: base.get(task)


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "file":
        return (tmp_path / "data").as_uri()
    return request.getfixturevalue("s3_store").root + "/m1"


def test_a_refused_challenger_says_so_first_and_the_json_is_an_artefact(root, caplog):
    with caplog.at_level(logging.INFO, logger="mlops_airflow.pipeline.summary"):
        summary = write_ct_summary(xcoms(), TI(), root, SPEC)
    headline = "REFUSED: challenger v4 not promoted: improvement not significant: 95% CI [-0.01, 0.02] includes 0"
    assert summary["outcome"] == {"status": "refused", "headline": headline}
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records[0] == (logging.WARNING, headline)
    lines = [m for _, m in records]
    assert lines[1] == f"SUMMARY ct-run model=m1 day=2026-11-02 status=refused dag_run={RUN_ID}"
    assert any(m.startswith("SUMMARY ct-data version=local:abcdef123456 rows=10") for m in lines)
    assert "SUMMARY ct-model version=v4 aliases=['challenger'] metrics={'val_auc': 0.81}" in lines
    assert any(m.startswith("SUMMARY ct-evaluation passed=False champion=3 delta=0.004") for m in lines)
    assert any(m.startswith("SUMMARY ct-drift passed=True drift_share=0.1") for m in lines)
    uri, latest = summary_uris(root, "m1", RUN_ID)
    assert uri == f"{root}/summaries/m1/manual__2026-12-03T10_00_00_00_00.json" == summary["summary_uri"]
    assert lines[-1] == f"SUMMARY ct-summary json={uri}" and len(lines) <= 8
    assert storage.read_json(uri) == storage.read_json(latest) == summary
    assert latest == f"{root}/runs/latest_summary.json"


def test_a_promotion_and_a_first_champion_read_plainly(tmp_path):
    promoted = xcoms(evaluate_challenger={"passed": True, "reasons": ["passed"], "champion_version": "3",
                                          "metrics": {"delta": 0.03}},
                     promote_model={"alias": "champion", "version": "4", "previous_version": "3", "changed": True,
                                    "approved_by": "alice"})
    from mlops_airflow.pipeline.summary import ct_outcome

    def outcome(pull):
        return write_ct_summary(pull, TI(), str(tmp_path), SPEC)["outcome"]

    assert outcome(promoted) == {"status": "promoted",
                                 "headline": "PROMOTED: v4 -> champion (was v3), approved by alice"}
    first = xcoms(evaluate_challenger=None,
                  register_model={"model_name": "m1", "version": "1", "aliases": ["champion"]})
    assert outcome(first)["headline"] == "CHAMPION: v1 is m1's champion"
    weak = xcoms(evaluate_challenger=None, train_model={"run_id": "r", "metrics": {"val_auc": 0.61}},
                 register_model={"model_name": "m1", "version": "1", "aliases": []})
    assert outcome(weak) == {"status": "refused", "headline": "REFUSED: v1 not made champion (no champion yet): "
                                                             "val_auc=0.61 below the minimum 0.7"}
    rejected = xcoms(evaluate_challenger={"passed": True, "reasons": [], "champion_version": "3", "metrics": {}},
                     approve_promotion={"chosen_options": ["Reject"], "params_input": {"reason": "holdout too small"}})
    assert outcome(rejected)["headline"] == ("NOT PROMOTED: challenger v4 passed evaluation, but approval answered "
                                             "'Reject': holdout too small")
    no_holdout = dataclasses.replace(SPEC, holdout=None)
    assert "no ModelSpec.holdout" in ct_outcome(
        {"model_name": "m1", "model": {"version": "2", "aliases": ["challenger"]}}, no_holdout)["headline"]


def test_a_blocked_run_is_summarised_too(root, caplog):
    pull = xcoms(retrain_guard={"proceed": False, "reason": "dataset drift: share 0.80",
                                "blocked_by": ["cool-down: last retraining 2 h ago"]})
    with caplog.at_level(logging.INFO, logger="mlops_airflow.pipeline.summary"):
        summary = write_ct_summary(pull, TI(), root, SPEC)
    assert summary["blocked"] is True and summary["day"] == "2026-11-02"
    assert summary["outcome"]["headline"] == ("BLOCKED: m1 not retrained: cool-down: last retraining 2 h ago (asked "
                                              "for: dataset drift: share 0.80)")
    assert caplog.records[0].levelno == logging.WARNING
    assert storage.read_json(summary["summary_uri"])["retrain"]["blocked_by"] == ["cool-down: last retraining 2 h ago"]
