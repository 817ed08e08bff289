"""Runs the reference CT and monitoring DAGs with EVERY task failing once right after its side effect.

Run by ``test_every_task_retried.py`` with the local stack's environment (``scripts/local_stack.py exec --``):
Airflow reads its configuration at import, so never directly. The injection is in this process only:
``task_runner._execute_task`` (pre_execute, ``execute``, post_execute of every task, ``@task`` functions and
mapped instances included) is wrapped so that on try 1 the real work runs to the end and then
``AirflowException("injected fault after side effect")`` is raised, before Airflow records the result (no
return-value XCom, no success state, no asset event). A task whose try 1 ends in a skip decision
(``DownstreamTasksSkipped`` of a short-circuit/branch, ``AirflowSkipException``) is faulted the same way,
after its decision. A deferral passes through (the resumed execution is the one faulted). Every task gets
``retries=1`` and ``retry_delay=0``: ``dag.test()`` runs try 2, which must succeed; a second failure fails the run.

Timeline (the days of ``include/scenario/short.json`` 3-4, compressed): CT day 1 (first champion), monitoring
day 1 on a shifted window (feature drift: the retraining event), CT day 2 triggered by that event (trains on the
drifted day, evaluates, auto-approves, promotes v2), monitoring day 2 (day 1's labels arrive: quality and
shadow/canary run). Each fault, each retry's outcome and, at the end, the task instances, every asset event,
the registry (versions, aliases, ledger, runs) are written to ``--out`` (JSON) for the test to check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INJECTED = "injected fault after side effect"
DAY1, DAY2 = "2026-11-01", "2026-11-02"
DRIFT = {"covariate_shift": 0.3, "concept_drift": 1.0}
CT_PARAMS = {"epochs": 5, "cooldown_hours": 12, "promote_to": "champion"}
MODEL, CT, MON = "churn_classifier", "mlops_continuous_training", "mlops_monitoring"


class FaultInjector:
    """Wraps ``task_runner._execute_task``: try 1 runs the real work, then fails; later tries run as they are."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.entries: list[dict[str, Any]] = []

    def note(self, ti: Any, outcome: str, detail: str = "") -> None:
        entry = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                 "map_index": getattr(ti, "map_index", -1), "try": ti.try_number, "outcome": outcome,
                 "detail": detail[:300], "at": time.time()}
        self.entries.append(entry)
        with self.journal.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def install(self) -> None:
        from airflow.sdk.exceptions import AirflowException, AirflowSkipException, DownstreamTasksSkipped, TaskDeferred
        from airflow.sdk.execution_time import task_runner

        original = task_runner._execute_task

        def execute_then_fail(context: Any, ti: Any, log: Any) -> Any:
            if ti.try_number > 1:
                try:
                    result = original(context=context, ti=ti, log=log)
                except (DownstreamTasksSkipped, AirflowSkipException) as decision:
                    self.note(ti, "retry-ok", f"{type(decision).__name__}")
                    raise
                except TaskDeferred:
                    raise
                except BaseException as err:
                    self.note(ti, "retry-failed", f"{type(err).__name__}: {err}")
                    raise
                self.note(ti, "retry-ok")
                return result
            try:
                original(context=context, ti=ti, log=log)
            except TaskDeferred:
                raise  # the resumed execution (same try) is the one faulted
            except (DownstreamTasksSkipped, AirflowSkipException) as decision:
                self.note(ti, "faulted", f"after its decision ({type(decision).__name__})")
                raise AirflowException(INJECTED) from None
            except BaseException as err:
                self.note(ti, "real-failure", f"{type(err).__name__}: {err}")
                raise
            self.note(ti, "faulted", "after execute returned")
            raise AirflowException(INJECTED)

        task_runner._execute_task = execute_then_fail


def retry_once_at_once(dag: Any) -> None:
    """Every task of ``dag``: exactly one retry, no delay (mapped tasks through their partial kwargs)."""
    for task in dag.task_dict.values():
        task.retries = 1
        task.retry_delay = timedelta(0)
        task.retry_exponential_backoff = 0


def load_scenario() -> Any:
    """``scripts/scenario.py`` (its ``Runner`` runs a DAG with ``dag.test()`` as ``make demo`` does)."""
    sys.path.insert(0, str(ROOT / "scripts"))  # its sibling modules
    spec = importlib.util.spec_from_file_location("mlops_scenario", ROOT / "scripts" / "scenario.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task_instances(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.settings import Session
    from sqlalchemy import select

    with Session() as session:
        rows = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                          TaskInstance.run_id == run_id)).all()
        return [{"task_id": t.task_id, "map_index": t.map_index, "state": str(t.state), "try_number": t.try_number,
                 "max_tries": t.max_tries} for t in rows]


def latest_run_id(dag_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.settings import Session
    from sqlalchemy import select

    with Session() as session:
        return session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)
                               .order_by(DagRun.id.desc()).limit(1)).one()


def asset_events() -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session
    from sqlalchemy import select

    with Session() as session:
        rows = session.execute(
            select(AssetEvent.id, AssetModel.uri, AssetEvent.source_dag_id, AssetEvent.source_run_id,
                   AssetEvent.source_task_id, AssetEvent.source_map_index, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id).order_by(AssetEvent.id)
        ).all()
    return [{"id": r[0], "uri": r[1], "dag_id": r[2], "run_id": r[3], "task_id": r[4], "map_index": r[5],
             "extra": dict(r[6] or {})} for r in rows]


def registry(model: str) -> dict[str, Any]:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook
    from mlops_airflow.registry.ledger import read_ledger

    client = MlflowHook().get_client()
    rm = client.get_registered_model(model)
    versions = client.search_model_versions(f"name = '{model}'")
    runs = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            tags = {k: v for k, v in run.data.tags.items() if k.startswith("mlops.") and len(v) < 400}
            runs.append({"experiment": exp.name, "run_id": run.info.run_id, "status": run.info.status,
                         "name": run.info.run_name, "tags": tags})
    return {"aliases": dict(rm.aliases),
            "versions": [{"version": v.version, "run_id": v.run_id,
                          "tags": {k: t for k, t in (v.tags or {}).items() if len(t) < 400}} for v in versions],
            "model_tags": {k: v for k, v in rm.tags.items() if not k.startswith("mlops.ledger.0")},
            "ledger": read_ledger(client, model), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--days", type=int, default=2, help="CT/monitoring days to run (1: CT 1 + monitoring 1)")
    args = parser.parse_args()
    out = Path(args.out)
    journal = out.with_suffix(".faults.jsonl")
    journal.unlink(missing_ok=True)
    injector = FaultInjector(journal)
    injector.install()
    scenario = load_scenario()
    data_root = Path(os.environ["AIRFLOW__MLOPS__DATA_ROOT"])
    runner = scenario.Runner({"name": "every_task_retried"}, data_root, sys.stdout)
    for dag_id in (CT, MON):
        retry_once_at_once(runner.dags[dag_id])
    runs: list[dict[str, Any]] = []

    def run(dag_id: str, day: str, hour: int, conf: dict[str, Any], events: list[int] | None = None) -> None:
        d = datetime.fromisoformat(day).replace(tzinfo=UTC)
        t0 = time.monotonic()
        state, error = "success", None
        try:
            runner.run_dag(dag_id, d + timedelta(hours=hour), conf, events)
        except SystemExit as err:  # the run ended failed: record it, the test names the task
            state, error = "failed", str(err)
        run_id = latest_run_id(dag_id)
        runs.append({"dag_id": dag_id, "day": day, "run_id": run_id, "state": state, "error": error,
                     "seconds": round(time.monotonic() - t0, 1), "events": events or [],
                     "tis": task_instances(dag_id, run_id)})
        print(f"RETRY-RUNNER {dag_id} {day} {state} in {runs[-1]['seconds']}s", flush=True)
        if state != "success":
            raise SystemExit(error)

    try:
        run(CT, DAY1, 0, {"day": DAY1, "covariate_shift": 0.0, "concept_drift": 0.0, **CT_PARAMS})
        run(MON, DAY1, 6, {"day": DAY1, **DRIFT, "label_delay_days": 1})
        if args.days >= 2:
            events = [e["id"] for e in runner.pending_events()]
            run(CT, DAY2, 12, {"day": DAY2, **DRIFT, **CT_PARAMS, "training_window_days": 1}, events)
            run(MON, DAY2, 18, {"day": DAY2, **DRIFT, "label_delay_days": 1})
    finally:
        result = {"runs": runs, "journal": injector.entries, "asset_events": asset_events(),
                  "registry": registry(MODEL), "keys": ["customer_id", "event_timestamp"],
                  "task_ids": {d: sorted(runner.dags[d].task_dict) for d in (CT, MON)}}
        out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
