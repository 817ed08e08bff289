"""The simulated timeline behind `make demo`: daily monitoring, drift, retraining, promotion, in ONE process.

Run by ``scripts/local_stack.py demo`` with the stack's environment (never directly: Airflow reads its
configuration at import). For each day of the scenario spec (``include/scenario/*.json``):

1. day 1: the CT DAG (``ct_dag``) trains the first champion (a manual run);
2. the monitoring DAG (``monitoring_dag``) scores the day's window, checks drift and the quality of the window
   whose labels arrived;
3. when a verdict failed, it emitted an asset event on ``mlops://monitoring/<model>``: the CT DAG runs
   with those events as its triggering events, exactly what the scheduler does for an asset-scheduled DAG
   (the events are attached to the run and their queue entries consumed); its guard decides.

A spec names its model and DAGs (``model``, ``ct_dag``, ``monitoring_dag``, ``data_dir``: the model's folder under
``[mlops] data_root``) and metric names (``train_metric``, ``primary_metric``, ``quality_metric``); the defaults
(``DEFAULTS``) are the churn classifier's. The timeline shows, for each model version, its data version (DVC rev
and md5) and training-set hash.

DAGs run with ``dag.test()`` in this process (one Airflow import instead of one per CLI call). Progress is
kept per day in ``<data_root>/scenario/<name>/state.json``: a second run resumes, or only re-prints the timeline
and rewrites the HTML summary when every day is done (nothing is trained or promoted twice).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from scenario_report import _f, write_html

ROOT = Path(__file__).resolve().parents[1]
# What a spec names about its model; absent keys are the churn classifier's (``make demo``).
DEFAULTS: dict[str, Any] = {"model": "churn_classifier", "ct_dag": "mlops_continuous_training",
                            "monitoring_dag": "mlops_monitoring", "data_dir": "", "train_metric": "val_auc",
                            "primary_metric": "auc", "quality_metric": "roc_auc", "ct_params": {}}


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with ``DEFAULTS`` filled in (the churn classifier's model, DAGs and metrics)."""
    return {**DEFAULTS, **spec}


def ct_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The CT DAG's params from the scenario spec (training window optional: all history when absent; ``epochs``
    only when the spec has it, ``ct_params`` for the model's own)."""
    params = {"cooldown_hours": spec["cooldown_hours"], "training_window_days": spec.get("training_window_days"),
              "promote_to": spec.get("promote_to", "champion"), **spec.get("ct_params", {})}
    if "epochs" in spec:
        params["epochs"] = spec["epochs"]
    return params


def knobs(spec: dict[str, Any], n: int) -> dict[str, float]:
    drifted = n >= int(spec["drift_from_day"])
    return {"covariate_shift": float(spec["covariate_shift"]) if drifted else 0.0,
            "concept_drift": float(spec["concept_drift"]) if drifted else 0.0}


class Runner:
    def __init__(self, spec: dict[str, Any], data_root: Path, out: Any) -> None:
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self.spec, self.out = with_defaults(spec), out
        spec = self.spec
        self.model, self.ct_dag, self.mon_dag = spec["model"], spec["ct_dag"], spec["monitoring_dag"]
        self.trigger_uri = f"mlops://monitoring/{self.model}"
        self.model_root = data_root / spec["data_dir"] if spec["data_dir"] else data_root
        self.dir = data_root / "scenario" / spec["name"]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        self.state: dict[str, Any] = {"spec_sha": digest, "days": [], "last_event_id": 0}
        if self.state_path.exists():
            saved = json.loads(self.state_path.read_text())
            if saved.get("spec_sha") == digest:
                self.state = saved
            else:
                self.say(f"scenario spec changed since the last run ({saved.get('spec_sha')} -> {digest}): "
                         "continuing from the registry's state, timeline restarted")
        self.data_root = data_root
        self._dags: dict[str, Any] | None = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        tmp.replace(self.state_path)

    @property
    def dags(self) -> dict[str, Any]:
        if self._dags is None:
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(ROOT / "dags"))
            if bag.import_errors:
                raise SystemExit(f"DAG import errors: {bag.import_errors}")
            self._dags = bag.dags
        return self._dags

    # -- running DAGs ------------------------------------------------------------------------------------------------

    def run_dag(self, dag_id: str, when: datetime, conf: dict[str, Any], events: list[int] | None = None) -> Any:
        """``dag.test()`` of one run; with ``events``, those asset events become the run's triggering events."""
        import airflow.models.dagrun as dagrun_module

        original = dagrun_module.get_or_create_dagrun

        def with_events(**kwargs: Any) -> Any:
            run = original(**kwargs)
            if events:
                from airflow.models.asset import AssetDagRunQueue, AssetEvent
                from sqlalchemy import delete, select

                session = kwargs["session"]
                rows = session.scalars(select(AssetEvent).where(AssetEvent.id.in_(events))).all()
                run.consumed_asset_events.extend(rows)  # what the scheduler does for an asset-triggered run
                session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))
                session.commit()
            return run

        dagrun_module.get_or_create_dagrun = with_events
        start = time.monotonic()
        try:
            run = self.dags[dag_id].test(logical_date=when, run_conf=conf)
        finally:
            dagrun_module.get_or_create_dagrun = original
        state = str(getattr(run, "state", "unknown"))
        if "success" not in state:
            raise SystemExit(f"{dag_id} run for {when.date()} ended {state}; see the demo log for the failed task")
        return time.monotonic() - start

    def pending_events(self) -> list[dict[str, Any]]:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.settings import Session
        from sqlalchemy import select

        with Session() as session:
            rows = session.execute(
                select(AssetEvent.id, AssetEvent.extra, AssetEvent.source_run_id, AssetEvent.source_task_id)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == self.trigger_uri, AssetEvent.id > int(self.state["last_event_id"]))
                .order_by(AssetEvent.id)
            ).all()
        return [{"id": r[0], "extra": dict(r[1] or {}), "source": f"{r[2]}/{r[3]}"} for r in rows]

    def ct_summary(self) -> dict[str, Any]:
        path = self.model_root / "runs" / "latest_summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def run_ct(self, day: date, conf: dict[str, Any], when: datetime, events: list[int] | None) -> dict[str, Any]:
        (self.model_root / "runs" / "latest_summary.json").unlink(missing_ok=True)
        seconds = self.run_dag(self.ct_dag, when, conf, events)
        summary = self.ct_summary()
        summary["seconds"] = round(seconds, 1)
        return summary

    # -- the timeline ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        spec = self.spec
        start = date.fromisoformat(spec["start"])
        done = {d["n"] for d in self.state["days"]}
        for n in range(1, int(spec["days"]) + 1):
            if n in done:
                continue
            day = start + timedelta(days=n - 1)
            k = knobs(spec, n)
            base = {"day": day.isoformat(), **k}
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            entry: dict[str, Any] = {"n": n, "day": day.isoformat(), **k, "ct": []}
            if n == 1:
                ct = self.run_ct(day, {**base, **ct_params(spec)},
                                 midnight, None)
                entry["ct"].append({"trigger": "manual (first model)", **compact_ct(ct, spec)})
            t0 = time.monotonic()
            self.run_dag(self.mon_dag, midnight + timedelta(hours=6),
                         {**base, "label_delay_days": spec["label_delay_days"]})
            mon = json.loads((self.model_root / "monitoring" / "summaries" / f"{day}.json").read_text())
            entry["monitoring"] = compact_monitoring(mon)
            entry["monitoring"]["seconds"] = round(time.monotonic() - t0, 1)
            events = self.pending_events()
            if events:
                ids = [e["id"] for e in events]
                ct = self.run_ct(day, {**base, **ct_params(spec)},
                                 midnight + timedelta(hours=12), ids)
                entry["ct"].append({"trigger": "; ".join(f"{e['extra'].get('kind')}" for e in events),
                                    "events": [e["extra"].get("reason") for e in events], **compact_ct(ct, spec)})
                self.state["last_event_id"] = max(ids)
            self.state["days"].append(entry)
            self.save()
            self.say(day_lines(entry, spec))

    def registry_facts(self) -> dict[str, Any]:
        from mlops_airflow.hooks.mlflow_registry import MlflowHook
        from mlops_airflow.operators.promotion import read_ledger

        client = MlflowHook().get_client()
        model = client.get_registered_model(self.model)
        versions = client.search_model_versions(f"name = '{self.model}'")
        ledger = read_ledger(client, self.model)
        return {"aliases": dict(model.aliases), "versions": len(versions),
                "ledger": [{k: e.get(k) for k in ("seq", "alias", "action", "version", "previous_version",
                                                  "approved_by")} for e in ledger]}


def compact_ct(s: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    retrain = s.get("retrain") or {}
    if s.get("blocked"):
        return {"proceed": False, "blocked_by": retrain.get("blocked_by"), "seconds": s.get("seconds")}
    model, ev, pr = s.get("model") or {}, s.get("evaluation"), s.get("promotion")
    run, metric = s.get("mlflow_run") or {}, spec["train_metric"]
    return {
        "proceed": True, "reason": retrain.get("reason"), "version": model.get("version"),
        "aliases": model.get("aliases"), "metric": metric, "metric_value": (run.get("metrics") or {}).get(metric),
        "data": {k: (s.get("dataset_version") or {}).get(k) for k in ("path", "rev", "md5", "rows")},
        "training_set_hash": (s.get("training_set") or {}).get("hash"),
        "training_set_rows": (s.get("training_set") or {}).get("rows"),
        "entrypoint": run.get("entrypoint"), "entrypoint_sha256": run.get("entrypoint_sha256"),
        "evaluation": None if ev is None else {"passed": ev["passed"], "delta": ev.get("delta"),
                                               "champion": ev.get("champion"), "reasons": ev.get("reasons")},
        "promotion": None if pr is None else {k: pr.get(k) for k in ("alias", "version", "previous_version",
                                                                     "approved_by", "ledger_seq")},
        "seconds": s.get("seconds"),
    }


def compact_monitoring(m: dict[str, Any]) -> dict[str, Any]:
    q, sc = m.get("quality"), m.get("shadow_canary")
    return {
        "champion": m["champion"], "served_by": m["scoring"]["served_by"], "versions": m["scoring"]["versions"],
        "drift": {k: m["drift"][k] for k in ("passed", "drift_share", "drifted_columns", "report")},
        "prediction_drift": None if m.get("prediction_drift") is None else {
            k: m["prediction_drift"].get(k) for k in ("passed", "column", "method", "score", "threshold",
                                                      "reference_day", "own_reference", "report")},
        "quality": None if q is None else {k: q.get(k) for k in ("labelled_day", "served_by", "passed",
                                                                 "concept_drift", "metric", "value", "reference",
                                                                 "roc_auc", "reference_auc",
                                                                 "quality_drop", "report", "served_versions",
                                                                 "serving_version", "retired")},
        "recommendation": None if sc is None else sc["recommendation"],
        "promotion": None if not m.get("promotion") else {k: m["promotion"].get(k) for k in (
            "alias", "version", "previous_version", "ledger_seq", "changed")},
        "rollback": None if not m.get("rollback") else {k: m["rollback"].get(k) for k in (
            "alias", "rolled_back_version", "changed", "ledger_seq", "reason")},
        "retrain_events": m["retrain_events"],
    }


def data_line(ct: dict[str, Any]) -> str:
    """The data lineage of the version a CT run trained: dataset version (DVC rev + md5), training-set hash."""
    d = ct.get("data") or {}
    return (f"  data   v{ct['version']}: {d.get('path')} rev {str(d.get('rev'))[:12]} md5 {d.get('md5')}; "
            f"training set {str(ct.get('training_set_hash'))[:16]} ({ct.get('training_set_rows')} rows)")


def day_lines(e: dict[str, Any], spec: dict[str, Any]) -> str:
    spec = with_defaults(spec)
    m = e["monitoring"]
    drift, q = m["drift"], m["quality"]
    head = (f"day {e['n']} {e['day']}  covariate_shift={e['covariate_shift']:.1f} "
            f"concept_drift={e['concept_drift']:.1f}")
    lines = [head]
    for ct in e["ct"]:
        if ct["trigger"].startswith("manual"):
            lines.append(f"  CT     {ct['trigger']}: v{ct['version']} {ct['metric']}={_f(ct['metric_value'])} "
                         f"aliases={ct['aliases']}")
            lines.append(data_line(ct))
    others = sorted(set(m["versions"]) - {"champion"})
    lines.append(f"  score  champion v{m['champion']} {m['served_by']} other aliases={others}")
    lines.append(f"  drift  share={drift['drift_share']:.2f} "
                 + ("ok" if drift["passed"] else f"DRIFT {drift['drifted_columns']}"))
    pd_ = m.get("prediction_drift")
    if pd_ is not None:
        ref = (f"its first window {pd_['reference_day']}" if not pd_["own_reference"]
               else "its own first window (today)")
        lines.append(f"  pred   {pd_.get('column') or 'proba'} of v{m['champion']} vs {ref}: "
                     f"{pd_['method']}={_f(pd_['score'], 2)} "
                     + ("ok" if pd_["passed"] else "PREDICTION DRIFT (informative, no retrain event)"))
    if q is None:
        lines.append("  quality  no labels yet (they arrive a day later)")
    else:
        lines.append(f"  quality  labels of {q['labelled_day']} (served by v{q['served_by']}): "
                     f"{q.get('metric') or spec['quality_metric']}={_f(q.get('value'))} vs {_f(q.get('reference'))} "
                     f"drop={_f(q['quality_drop'])} "
                     + ("ok" if q["passed"] else ("CONCEPT DRIFT" if q["concept_drift"] else "FAILED")))
        if q.get("retired"):
            lines.append(f"  quality  served by v{q['served_by']}, no longer champion (v{q['serving_version']} is): "
                         f"no retrain event for v{q['serving_version']}")
        lines.append(f"  shadow/canary  recommendation={m['recommendation']}")
        if m.get("promotion") and m["promotion"].get("changed") is False:
            lines.append(f"  promote  v{m['promotion']['version']} is {m['promotion']['alias']} already: no change")
        elif m.get("promotion"):
            pr = m["promotion"]
            lines.append(f"  promote {pr['alias']} v{pr['previous_version']} -> v{pr['version']} (significantly "
                         f"better on labelled traffic; approval gate) ledger #{pr['ledger_seq']}")
        if m.get("rollback") and m["rollback"].get("changed"):
            rb = m["rollback"]
            lines.append(f"  rollback {rb['alias']} v{rb['rolled_back_version']} removed (significantly worse than "
                         f"the champion) ledger #{rb['ledger_seq']}")
    for ev in m["retrain_events"]:
        lines.append(f"  -> retrain event ({ev['kind']}): {ev['reason'][:150]}")
    for ct in e["ct"]:
        if ct["trigger"].startswith("manual"):
            continue
        if not ct["proceed"]:
            lines.append(f"  CT     triggered by {ct['trigger']}: BLOCKED by the guard: "
                         f"{'; '.join(ct['blocked_by'] or [])[:200]}")
            continue
        lines.append(f"  CT     triggered by {ct['trigger']}: trained v{ct['version']} "
                     f"{ct['metric']}={_f(ct['metric_value'])} ({ct['seconds']}s)")
        lines.append(data_line(ct))
        ev, pr = ct["evaluation"], ct["promotion"]
        if ev:
            lines.append(f"  eval   v{ct['version']} vs champion v{ev['champion']}: "
                         f"{'PASSED' if ev['passed'] else 'not promoted'} {spec['primary_metric']} "
                         f"delta={_f(ev['delta'])}")
        if pr:
            before = f"v{pr['previous_version']}" if pr.get("previous_version") else "(none)"
            lines.append(f"  promote {pr['alias']} {before} -> v{pr['version']} "
                         f"approved_by={str(pr['approved_by'])[:40]}... ledger #{pr['ledger_seq']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "include" / "scenario" / "drift_timeline.json"))
    parser.add_argument("--log", required=True, help="file for the DAG runs' own output")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    data_root = Path(os.environ["AIRFLOW__MLOPS__DATA_ROOT"])
    # The DAG runs write a lot; keep it in the log file and this stream for the timeline.
    out = os.fdopen(os.dup(1), "w")
    log = open(args.log, "a")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    t0 = time.monotonic()
    runner = Runner(spec, data_root, out)
    done = len(runner.state["days"])
    if done < int(spec["days"]):
        runner.say(f"=== scenario {spec['name']}: {spec['description']} ===")
        if done:
            runner.say(f"(resuming after day {done})")
    runner.run()
    timeline = "\n".join(day_lines(d, runner.spec) for d in runner.state["days"])
    facts = runner.registry_facts()
    html_path = runner.dir / "summary.html"
    write_html(html_path, runner.spec, runner.state, timeline, facts)
    result = {"timeline": timeline, "html": str(html_path), "registry": facts, "days": len(runner.state["days"]),
              "seconds": round(time.monotonic() - t0, 1), "ran_days": len(runner.state["days"]) - done}
    (runner.dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    if done == int(spec["days"]):
        runner.say("every day of the scenario is done already (nothing retrained or promoted again); timeline:")
        runner.say(timeline)
    runner.say(f"\naliases now: {facts['aliases']}; versions: {facts['versions']}; ledger entries: "
               f"{len(facts['ledger'])}")
    runner.say(f"HTML summary: {html_path}")
    runner.say(f"scenario time: {result['seconds']:.0f}s ({result['ran_days']} day(s) run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
