"""Two Celery workers that share no disk run the CT DAG, its challenger and a drift retrain (issue #11 items 5, 6).

The stack (``_multi_stack.py``): PostgreSQL metadata and result backend, Redis broker, moto's S3 API behind a
switchable loopback endpoint, MLflow with its artefacts on S3, the DVC data repository served by ``git daemon``
(remote on S3), ``[mlops] data_root = s3://<bucket>/data``, and two ``airflow celery worker`` processes, each with
a private AIRFLOW_HOME, working directory, HOME and TMPDIR (mode 700), emptied between DAG runs.

The scenario, in one pass (the tests below check its parts):
1. the S3 endpoint is taken down and the CT run of day 1 is triggered: its first task that touches the store
   fails with a StorageError naming the URI and the next step; the endpoint comes back on the same port and the
   task's retry completes the run (the first model becomes the champion) with one data version (one DVC commit),
   one model version and no duplicate ledger entry;
2. the CT run of day 2, whose labels follow a changed concept (``concept_drift=1``; the holdout too), trained on
   that day only: a challenger that beats the champion significantly on the holdout, through evaluation, approval
   (auto policy) and promotion (on same-distribution days the two models tie and promotion is, rightly, refused);
3. ``mlops_monitoring`` on a drifted day 3: its asset event makes the scheduler start a CT run that retrains.
Every task instance's ``hostname`` is one of the two workers and both ran tasks; no XCom value is a ``file://``
URI or a path of a worker's folder. ``test-output/multi_worker.json``: wall times, tasks per worker, the S3 bytes
each CT run wrote (data/DVC/MLflow prefixes).

Mandatory under MLOPS_REQUIRE_SERVICES=1 (CI); skips with the reason when PostgreSQL, Redis or the training venv
are absent.
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REQUIRE_SERVICES, TRAIN_PYTHON, require_service
from integration._multi_stack import OUTPUT, WORKERS, MultiWorkerStack, sched, training_venv_present

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(3000)]

CT = "mlops_continuous_training"
MONITORING = "mlops_monitoring"
MODEL = "churn_classifier"
DAYS = ("2026-11-10", "2026-11-11", "2026-11-12")
FAST = {"epochs": 5}  # the model converges in 2-3 epochs
# Day 2's labels follow a changed concept (features unchanged): a model trained on that day alone beats the day-1
# champion on the day's (drifted) holdout with a CI that excludes 0. Day 3's features then drift against it.
CHALLENGER = {"day": DAYS[1], "concept_drift": 1.0, "training_window_days": 1, **FAST}
PREFIXES = ("data/", "dvc/", "mlflow/")


def _trigger(stack: MultiWorkerStack, dag_id: str, conf: dict[str, Any]) -> str:
    dag_url = f"{stack.api_url}/api/v2/dags/{dag_id}"
    status, body = sched._http("POST", f"{dag_url}/dagRuns", stack.token, {"logical_date": None, "conf": conf})
    assert status == 200, (status, body)
    return body["dag_run_id"]


def _parsed_and_unpaused(stack: MultiWorkerStack, dag_id: str) -> None:
    def ok() -> bool:
        status, body = sched._http("GET", f"{stack.api_url}/api/v2/dags/{dag_id}", stack.token)
        return status == 200 and not body.get("has_import_errors")

    sched._wait(f"the dag-processor to parse {dag_id}", ok, 300, stack.procs, stack.logs)
    # DAGs are paused at creation here: only the two of the scenario run (the examples' daily runs would take the
    # workers' slots). Unpausing mlops_monitoring starts its daily run, which stops at resolve_champion (none yet).
    status, body = sched._http("PATCH", f"{stack.api_url}/api/v2/dags/{dag_id}", stack.token, {"is_paused": False})
    assert status == 200, (status, body)


class Scenario:
    """Runs the three steps once and keeps what the tests check."""

    def __init__(self, stack: MultiWorkerStack) -> None:
        self.stack = stack
        self.runs: dict[str, dict[str, Any]] = {}  # label -> {dag_id, run_id, state, summary, seconds, bytes}
        self.outage: dict[str, Any] = {}
        self.commits: dict[str, list[str]] = {}

    def _bytes(self) -> dict[str, int]:
        return {p.rstrip("/"): self.stack.s3_bytes(p) for p in PREFIXES}

    def ct(self, label: str, run_id: str, before: dict[str, int], t0: float) -> None:
        run = sched._wait_run(self.stack, CT, run_id, 1500)
        after = self._bytes()
        self.runs[label] = {"dag_id": CT, "run_id": run_id, "state": run["state"], "summary": run.get("summary"),
                            "seconds": round(time.monotonic() - t0, 1),
                            "s3_bytes_written": {k: after[k] - before[k] for k in after}}
        self.stack.clean_worker_dirs()

    def run(self) -> None:
        stack = self.stack
        _parsed_and_unpaused(stack, CT)
        _parsed_and_unpaused(stack, MONITORING)

        # 1. the champion, with the store down when the run starts: its first store task fails, then retries
        before, t0 = self._bytes(), time.monotonic()
        stack.switch.down()
        run_id = _trigger(stack, CT, {"day": DAYS[0], **FAST})
        failed = self._first_failure(run_id, 600)
        self.outage = {"run": "champion", "task_id": failed["task_id"], "state": failed["state"],
                       "try_number": failed["try_number"], "down_s": round(time.monotonic() - t0, 1)}
        stack.switch.up()
        self.outage["log"] = stack.task_log(CT, run_id, failed["task_id"], failed["try_number"])
        if failed["state"] == "failed":  # no retry left: clear it, as the operator would
            self._clear(run_id, failed["task_id"])
        self.ct("champion", run_id, before, t0)
        if self.runs["champion"]["state"] != "success":
            return

        # 2. a challenger: evaluation against the champion, approval (auto policy), promotion
        before, t0 = self._bytes(), time.monotonic()
        self.ct("challenger", _trigger(stack, CT, CHALLENGER), before, t0)
        if self.runs["challenger"]["state"] != "success":
            return

        # 3. drift -> asset event -> the scheduler's own CT run
        t0 = time.monotonic()
        mon_id = _trigger(stack, MONITORING, {"day": DAYS[2], "covariate_shift": 0.3, "concept_drift": 1.0})
        mon = sched._wait_run(stack, MONITORING, mon_id, 1500)
        self.runs["monitoring"] = {"dag_id": MONITORING, "run_id": mon_id, "state": mon["state"],
                                   "summary": mon.get("summary"), "seconds": round(time.monotonic() - t0, 1)}
        stack.clean_worker_dirs()
        if mon["state"] != "success":
            return
        before, t0 = self._bytes(), time.monotonic()
        ct_url = f"{stack.api_url}/api/v2/dags/{CT}/dagRuns?run_type=asset_triggered"

        def asset_run() -> str | None:
            status, body = sched._http("GET", ct_url, stack.token)
            runs = ((body or {}).get("dag_runs") or []) if status == 200 else []
            return runs[0]["dag_run_id"] if runs else None

        run_id = sched._wait("the scheduler to start the asset-triggered CT run", asset_run, 300, stack.procs,
                             stack.logs)
        self.ct("retrain", run_id, before, t0)

    def _first_failure(self, run_id: str, timeout_s: float) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for ti in self.stack.task_instances(CT, run_id):
                if ti["state"] in ("up_for_retry", "failed"):
                    return ti
            return None

        return sched._wait(f"a task of {run_id} to fail while the store is down", probe, timeout_s,
                           self.stack.procs, self.stack.logs)

    def _clear(self, run_id: str, task_id: str) -> None:
        status, body = sched._http("POST", f"{self.stack.api_url}/api/v2/dags/{CT}/clearTaskInstances",
                                   self.stack.token, {"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id],
                                                      "only_failed": True, "reset_dag_runs": True})
        assert status == 200, (status, body)


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest) -> Scenario:
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    if not training_venv_present():
        msg = f"training venv missing ({TRAIN_PYTHON}); run make install"
        pytest.fail(msg) if REQUIRE_SERVICES else pytest.skip(msg)
    stack = MultiWorkerStack(base=Path(tempfile.mkdtemp(prefix="mlops-mw-it-")))
    request.config.add_cleanup(stack.stop)
    t0 = time.monotonic()
    stack.start()
    result = Scenario(stack)
    try:
        result.run()
    finally:
        stack.timings["total_s"] = time.monotonic() - t0
        _write_report(result)
    return result


def _all_tis(result: Scenario) -> list[dict[str, Any]]:
    return [ti for run in result.runs.values() for ti in result.stack.task_instances(run["dag_id"], run["run_id"])]


def _write_report(result: Scenario) -> None:
    stack = result.stack
    per_worker = collections.Counter(ti["hostname"] for ti in _all_tis(result) if ti["state"] == "success")
    report = {
        "timings_s": {k: round(v, 1) for k, v in stack.timings.items()},
        "runs": {label: {k: v for k, v in run.items() if k != "summary"} for label, run in result.runs.items()},
        "tasks_per_worker": dict(per_worker),
        "outage": {k: v for k, v in result.outage.items() if k != "log"},
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "multi_worker.json").write_text(json.dumps(report, indent=2))
    print(f"\n[multi-worker] {json.dumps(report)}")


def _run_ok(result: Scenario, label: str) -> dict[str, Any]:
    run = result.runs.get(label)
    assert run, f"the scenario stopped before the {label} run: {list(result.runs)}"
    if run["state"] != "success":
        pytest.fail(f"the {label} run {run['run_id']} ended {run['state']}:\n"
                    f"{result.stack.failure_report(run['dag_id'], run['run_id'])}")
    return run


# ------------------------------------------------------------------------------------------------------- tests
def test_a_champion_then_a_challenger_through_evaluation_and_promotion(scenario: Scenario) -> None:
    champion = _run_ok(scenario, "champion")["summary"]
    assert champion["model"]["name"] == MODEL and champion["model"]["aliases"] == ["champion"], champion["model"]
    challenger = _run_ok(scenario, "challenger")
    states = {ti["task_id"]: ti["state"] for ti in scenario.stack.task_instances(CT, challenger["run_id"])}
    for task in ("has_challenger", "holdout_batch", "evaluate_challenger", "approve_promotion", "promote_model"):
        assert states.get(task) == "success", (task, states)
    assert challenger["summary"]["model"]["version"] != champion["model"]["version"]


def test_a_drift_verdict_retrains_through_the_asset_on_the_workers(scenario: Scenario) -> None:
    monitoring = _run_ok(scenario, "monitoring")["summary"]
    assert monitoring["drift"]["passed"] is False, monitoring["drift"]
    assert [e["kind"] for e in monitoring["retrain_events"]] == ["data_drift"]
    retrain = _run_ok(scenario, "retrain")["summary"]["retrain"]
    assert retrain["proceed"] is True and retrain["reason"].startswith("dataset drift:"), retrain
    assert MONITORING in retrain["triggered_by"], retrain


def test_tasks_ran_on_both_workers_and_only_there(scenario: Scenario) -> None:
    for label in ("champion", "challenger"):
        _run_ok(scenario, label)
    tis = _all_tis(scenario)
    ran = [ti for ti in tis if ti["state"] == "success"]
    assert len(ran) >= 20, ran
    per_worker = collections.Counter(ti["hostname"] for ti in ran)
    assert set(per_worker) == set(WORKERS), f"tasks per host: {dict(per_worker)}"
    assert {ti["executor"] for ti in tis} <= {None, "CeleryExecutor"}, {ti["executor"] for ti in tis}


def test_no_task_handed_another_a_local_path(scenario: Scenario) -> None:
    """Every artefact URI in XCom is on the store; none names a worker's folder (they are emptied between runs and
    private to each worker, so a path that worked could only have been the task's own)."""
    _run_ok(scenario, "challenger")
    stack = scenario.stack
    private = [str(p) for worker in stack.workers.values() for p in (worker["root"],)]
    values = {f"{run['run_id']}:{k}": v for run in scenario.runs.values()
              for k, v in stack.xcom_values(run["dag_id"], run["run_id"]).items()}
    assert len(values) >= 15, values
    local = {k: v[:300] for k, v in values.items() if "file://" in v or any(p in v for p in private)}
    assert not local, json.dumps(local, indent=2)[:4000]
    on_store = [k for k, v in values.items() if f"s3://{stack.bucket}/data/" in v]
    assert len(on_store) >= 5, sorted(values)
    # The store holds the data, the DVC cache and MLflow's artefacts of the runs.
    assert all(stack.s3_bytes(prefix) > 0 for prefix in ("data/", "dvc/", "mlflow/"))
    run = scenario.runs["champion"]
    assert run["s3_bytes_written"]["data"] > 0 and run["s3_bytes_written"]["dvc"] > 0, run


def test_store_outage_fails_with_the_uri_and_a_retry_duplicates_nothing(scenario: Scenario) -> None:
    outage = scenario.outage
    assert outage, "the outage step did not run"
    log = outage["log"]
    assert "StorageError" in log, log[-3000:]
    assert f"s3://{scenario.stack.bucket}/" in log, log[-3000:]
    assert "clear the task" in log or "retry" in log, log[-3000:]
    run_id = _run_ok(scenario, "champion")["run_id"]
    tis = {ti["task_id"]: ti for ti in scenario.stack.task_instances(CT, run_id) if ti["map_index"] in (-1, None)}
    assert tis[outage["task_id"]]["try_number"] >= 2, tis[outage["task_id"]]

    # One data version: one DVC commit names the run.
    commits = [c for c in scenario.stack.commits() if run_id in c]
    assert len(commits) == 1, commits
    # One model version from the run, and no ledger entry twice.
    from mlflow import MlflowClient
    from mlops_airflow.registry.ledger import read_ledger

    client = MlflowClient(scenario.stack.mlflow_url)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    mine = [v.version for v in versions if v.tags.get("mlops.run_id") == run_id]
    assert len(mine) == 1, mine
    ledger = read_ledger(client, MODEL)
    keys = [json.dumps({k: e.get(k) for k in ("action", "alias", "version", "run_id")}, sort_keys=True)
            for e in ledger]
    assert len(keys) == len(set(keys)), ledger
    assert any(str(e.get("version")) == str(mine[0]) for e in ledger), ledger


def test_the_report_is_written(scenario: Scenario) -> None:
    report = json.loads((OUTPUT / "multi_worker.json").read_text())
    assert report["timings_s"]["boot_s"] > 0 and report["tasks_per_worker"]
    assert {"champion", "challenger"} <= set(report["runs"]), report["runs"]
    for label in ("champion", "challenger", "retrain"):
        if label in report["runs"]:
            assert set(report["runs"][label]["s3_bytes_written"]) == {"data", "dvc", "mlflow"}

