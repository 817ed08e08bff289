"""The simulated timeline behind `make demo`: daily monitoring, drift, retraining, promotion, in ONE process.

Run by ``scripts/local_stack.py demo`` with the stack's environment (never directly: Airflow reads its
configuration at import). For each day of the scenario spec (``include/scenario/*.json``):

1. day 1: ``mlops_continuous_training`` trains the first champion (a manual run);
2. ``mlops_monitoring`` scores the day's window, checks drift and the quality of the window whose labels arrived;
3. when a verdict failed, it emitted an asset event on ``mlops://monitoring/churn_classifier``: the CT DAG runs
   with those events as its triggering events, exactly what the scheduler does for an asset-scheduled DAG
   (the events are attached to the run and their queue entries consumed); its guard decides.

DAGs run with ``dag.test()`` in this process (one Airflow import instead of one per CLI call). Progress is
kept per day in ``<data_root>/scenario/<name>/state.json``: a second run resumes, or only re-prints the timeline
and rewrites the HTML summary when every day is done (nothing is trained or promoted twice).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "churn_classifier"
TRIGGER_URI = f"mlops://monitoring/{MODEL}"
CT, MON = "mlops_continuous_training", "mlops_monitoring"


def ct_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The CT DAG's params from the scenario spec (training window optional: all history when absent)."""
    return {"epochs": spec["epochs"], "cooldown_hours": spec["cooldown_hours"],
            "training_window_days": spec.get("training_window_days"),
            "promote_to": spec.get("promote_to", "champion")}


def knobs(spec: dict[str, Any], n: int) -> dict[str, float]:
    drifted = n >= int(spec["drift_from_day"])
    return {"covariate_shift": float(spec["covariate_shift"]) if drifted else 0.0,
            "concept_drift": float(spec["concept_drift"]) if drifted else 0.0}


class Runner:
    def __init__(self, spec: dict[str, Any], data_root: Path, out: Any) -> None:
        self.spec, self.out = spec, out
        self.dir = data_root / "scenario" / spec["name"]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
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
                .where(AssetModel.uri == TRIGGER_URI, AssetEvent.id > int(self.state["last_event_id"]))
                .order_by(AssetEvent.id)
            ).all()
        return [{"id": r[0], "extra": dict(r[1] or {}), "source": f"{r[2]}/{r[3]}"} for r in rows]

    def ct_summary(self) -> dict[str, Any]:
        path = self.data_root / "runs" / "latest_summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def run_ct(self, day: date, conf: dict[str, Any], when: datetime, events: list[int] | None) -> dict[str, Any]:
        (self.data_root / "runs" / "latest_summary.json").unlink(missing_ok=True)
        seconds = self.run_dag(CT, when, conf, events)
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
                entry["ct"].append({"trigger": "manual (first model)", **compact_ct(ct)})
            t0 = time.monotonic()
            self.run_dag(MON, midnight + timedelta(hours=6),
                         {**base, "label_delay_days": spec["label_delay_days"]})
            mon = json.loads((self.data_root / "monitoring" / "summaries" / f"{day}.json").read_text())
            entry["monitoring"] = compact_monitoring(mon)
            entry["monitoring"]["seconds"] = round(time.monotonic() - t0, 1)
            events = self.pending_events()
            if events:
                ids = [e["id"] for e in events]
                ct = self.run_ct(day, {**base, **ct_params(spec)},
                                 midnight + timedelta(hours=12), ids)
                entry["ct"].append({"trigger": "; ".join(f"{e['extra'].get('kind')}" for e in events),
                                    "events": [e["extra"].get("reason") for e in events], **compact_ct(ct)})
                self.state["last_event_id"] = max(ids)
            self.state["days"].append(entry)
            self.save()
            self.say(day_lines(entry))

    def registry_facts(self) -> dict[str, Any]:
        from mlops_airflow.hooks.mlflow_registry import MlflowHook
        from mlops_airflow.operators.promotion import read_ledger

        client = MlflowHook().get_client()
        model = client.get_registered_model(MODEL)
        versions = client.search_model_versions(f"name = '{MODEL}'")
        ledger = read_ledger(client, MODEL)
        return {"aliases": dict(model.aliases), "versions": len(versions),
                "ledger": [{k: e.get(k) for k in ("seq", "alias", "action", "version", "previous_version",
                                                  "approved_by")} for e in ledger]}


def compact_ct(s: dict[str, Any]) -> dict[str, Any]:
    retrain = s.get("retrain") or {}
    if s.get("blocked"):
        return {"proceed": False, "blocked_by": retrain.get("blocked_by"), "seconds": s.get("seconds")}
    model, ev, pr = s.get("model") or {}, s.get("evaluation"), s.get("promotion")
    return {
        "proceed": True, "reason": retrain.get("reason"), "version": model.get("version"),
        "aliases": model.get("aliases"), "val_auc": (s.get("mlflow_run") or {}).get("metrics", {}).get("val_auc"),
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
            k: m["prediction_drift"].get(k) for k in ("passed", "method", "score", "threshold", "reference_day",
                                                      "own_reference", "report")},
        "quality": None if q is None else {k: q.get(k) for k in ("labelled_day", "served_by", "passed",
                                                                 "concept_drift", "roc_auc", "reference_auc",
                                                                 "quality_drop", "report", "served_versions",
                                                                 "serving_version", "retired")},
        "recommendation": None if sc is None else sc["recommendation"],
        "promotion": None if not m.get("promotion") else {k: m["promotion"].get(k) for k in (
            "alias", "version", "previous_version", "ledger_seq", "changed")},
        "rollback": None if not m.get("rollback") else {k: m["rollback"].get(k) for k in (
            "alias", "rolled_back_version", "changed", "ledger_seq", "reason")},
        "retrain_events": m["retrain_events"],
    }


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def day_lines(e: dict[str, Any]) -> str:
    m = e["monitoring"]
    drift, q = m["drift"], m["quality"]
    head = (f"day {e['n']} {e['day']}  covariate_shift={e['covariate_shift']:.1f} "
            f"concept_drift={e['concept_drift']:.1f}")
    lines = [head]
    for ct in e["ct"]:
        if ct["trigger"].startswith("manual"):
            lines.append(f"  CT     {ct['trigger']}: v{ct['version']} val_auc={_f(ct['val_auc'])} "
                         f"aliases={ct['aliases']}")
    others = sorted(set(m["versions"]) - {"champion"})
    lines.append(f"  score  champion v{m['champion']} {m['served_by']} other aliases={others}")
    lines.append(f"  drift  share={drift['drift_share']:.2f} "
                 + ("ok" if drift["passed"] else f"DRIFT {drift['drifted_columns']}"))
    pd_ = m.get("prediction_drift")
    if pd_ is not None:
        ref = (f"its first window {pd_['reference_day']}" if not pd_["own_reference"]
               else "its own first window (today)")
        lines.append(f"  pred   proba of v{m['champion']} vs {ref}: {pd_['method']}={_f(pd_['score'], 2)} "
                     + ("ok" if pd_["passed"] else "PREDICTION DRIFT (informative, no retrain event)"))
    if q is None:
        lines.append("  quality  no labels yet (they arrive a day later)")
    else:
        lines.append(f"  quality  labels of {q['labelled_day']} (served by v{q['served_by']}): "
                     f"roc_auc={_f(q['roc_auc'])} vs {_f(q['reference_auc'])} drop={_f(q['quality_drop'])} "
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
        lines.append(f"  CT     triggered by {ct['trigger']}: trained v{ct['version']} val_auc={_f(ct['val_auc'])} "
                     f"({ct['seconds']}s)")
        ev, pr = ct["evaluation"], ct["promotion"]
        if ev:
            lines.append(f"  eval   v{ct['version']} vs champion v{ev['champion']}: "
                         f"{'PASSED' if ev['passed'] else 'not promoted'} auc delta={_f(ev['delta'])}")
        if pr:
            before = f"v{pr['previous_version']}" if pr.get("previous_version") else "(none)"
            lines.append(f"  promote {pr['alias']} {before} -> v{pr['version']} "
                         f"approved_by={str(pr['approved_by'])[:40]}... ledger #{pr['ledger_seq']}")
    return "\n".join(lines)


# -- the HTML summary ----------------------------------------------------------------------------------------------

def _svg_chart(title: str, days: list[str], series: list[tuple[str, str, list[float | None]]],
               marks: dict[int, str], y_max: float, y_min: float = 0.0, hline: tuple[float, str] | None = None) -> str:
    w, h, left, right, top, bottom = 720, 260, 50, 20, 30, 40
    pw, ph = w - left - right, h - top - bottom
    n = max(len(days), 1)

    def x(i: int) -> float:
        return left + (i + 0.5) * pw / n

    def y(v: float) -> float:
        return top + ph - (min(max(v, y_min), y_max) - y_min) / (y_max - y_min) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
             f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>']
    for k in range(5):
        v = y_min + (y_max - y_min) * k / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4}" font-size="10" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v)}" x2="{left + pw}" y2="{y(v)}" stroke="#eee"/>')
    for i, d in enumerate(days):
        parts.append(f'<text x="{x(i)}" y="{top + ph + 16}" font-size="10" text-anchor="middle">{d[5:]}</text>')
    for i, label in marks.items():
        parts.append(f'<line x1="{x(i)}" y1="{top}" x2="{x(i)}" y2="{top + ph}" stroke="#2e7d32" '
                     'stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x(i) + 3}" y="{top + 10}" font-size="10" fill="#2e7d32">{html.escape(label)}</text>')
    if hline:
        parts.append(f'<line x1="{left}" y1="{y(hline[0])}" x2="{left + pw}" y2="{y(hline[0])}" stroke="#c62828" '
                     'stroke-dasharray="6 3"/>')
        parts.append(f'<text x="{left + pw - 4}" y="{y(hline[0]) - 4}" font-size="10" fill="#c62828" '
                     f'text-anchor="end">{html.escape(hline[1])}</text>')
    for si, (name, color, values) in enumerate(series):
        pts = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(pts) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{left + 10 + si * 170}" y="{h - 6}" font-size="11" fill="{color}">'
                     f'&#9632; {html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pred_cell(p: dict[str, Any] | None) -> str:
    if p is None:
        return "-"
    ref = "itself" if p["own_reference"] else str(p["reference_day"])[5:]
    return html.escape(f"{_f(p['score'], 2)} vs {ref}" + ("" if p["passed"] else " DRIFT"))


def write_html(path: Path, spec: dict[str, Any], state: dict[str, Any], timeline: str, facts: dict[str, Any]) -> None:
    days = [d["day"] for d in state["days"]]
    drift = [d["monitoring"]["drift"]["drift_share"] for d in state["days"]]
    # quality is measured on the labelled day's window: plot it at that day
    auc: list[float | None] = [None] * len(days)
    ref: list[float | None] = [None] * len(days)
    for d in state["days"]:
        q = d["monitoring"]["quality"]
        if q and q["labelled_day"] in days:
            auc[days.index(q["labelled_day"])] = q["roc_auc"]
            ref[days.index(q["labelled_day"])] = q["reference_auc"]
    marks: dict[int, str] = {}
    for i, d in enumerate(state["days"]):
        for ct in d["ct"]:
            if ct.get("proceed") and ct.get("aliases") and "champion" in ct["aliases"]:
                marks[i] = f"v{ct['version']} champion"
            if ct.get("promotion"):
                pr = ct["promotion"]
                marks[i] = (f"promoted v{pr['version']}" if pr.get("alias") == "champion"
                            else f"v{pr['version']} {pr.get('alias')}")
        promoted = (d["monitoring"].get("promotion") or {})
        if promoted.get("version") and promoted.get("changed") is not False:
            marks[i] = f"promoted v{promoted['version']}"
    charts = [
        _svg_chart("Drift share per day (window vs the champion's training set)", days,
                   [("drift share", "#ed6a5a", drift)], marks, 1.0, hline=(0.5, "dataset drift threshold 0.5")),
        _svg_chart("Quality per day (ROC AUC on the delayed labels of that day)", days,
                   [("roc_auc", "#1565c0", auc), ("serving model's validation AUC", "#9e9e9e", ref)], marks, 1.0,
                   0.4),
    ]
    by_labelled_day = {d["monitoring"]["quality"]["labelled_day"]: d["monitoring"]["quality"]
                       for d in state["days"] if d["monitoring"]["quality"]}
    rows = []
    for d in state["days"]:
        m = d["monitoring"]
        q = by_labelled_day.get(d["day"])  # measured when the day's labels arrived
        quality_cell = "-" if q is None else (f"{_f(q['roc_auc'])} (v{q['served_by']})"
                                              + ("" if q["passed"] else " FAIL"))
        cts = "<br>".join(
            html.escape(("BLOCKED: " + "; ".join(c["blocked_by"] or [])) if not c["proceed"] else
                        f"{c['trigger']}: v{c['version']} aliases={c['aliases']}"
                        + (f", {c['promotion']['alias']} v{c['promotion']['previous_version'] or '-'}"
                           f"->v{c['promotion']['version']}" if c.get("promotion") else ""))
            for c in d["ct"])
        rows.append(
            f"<tr><td>{d['n']}</td><td>{d['day']}</td><td>{d['covariate_shift']}/{d['concept_drift']}</td>"
            f"<td>v{m['champion']}</td><td>{m['drift']['drift_share']:.2f}"
            f"{'' if m['drift']['passed'] else ' DRIFT'}</td>"
            f"<td>{pred_cell(m.get('prediction_drift'))}</td>"
            f"<td>{quality_cell}</td>"
            f"<td>{html.escape(', '.join(e['kind'] for e in m['retrain_events']) or '-')}</td><td>{cts or '-'}</td>"
            "</tr>")
    ledger = "".join(f"<tr><td>{e['seq']}</td><td>{e['alias']}</td><td>{e['action']}</td><td>v{e['version']}</td>"
                     f"<td>{e['previous_version'] or '-'}</td><td>{html.escape(str(e['approved_by'])[:80])}</td></tr>"
                     for e in facts.get("ledger", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mlops demo: {html.escape(spec['name'])}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1000px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}pre{{background:#f6f8fa;padding:10px;font-size:12px;
overflow-x:auto}}</style></head><body>
<h1>Continuous training demo: {html.escape(spec['description'])}</h1>
<p>Model <b>{MODEL}</b>; aliases now {html.escape(json.dumps(facts.get('aliases')))}; {facts.get('versions')} versions.
Generated {datetime.now(UTC).isoformat(timespec='seconds')}. Self-contained (inline SVG).</p>
{''.join(charts)}
<h2>Day by day</h2><table><tr><th>#</th><th>day</th><th>shift/concept</th><th>champion</th><th>drift share</th>
<th>prediction drift (champion's proba vs its first window)</th><th>ROC AUC on that day's labels (serving model)</th>
<th>retrain events</th><th>continuous training</th></tr>{''.join(rows)}</table>
<h2>Promotion ledger</h2><table><tr><th>seq</th><th>alias</th><th>action</th><th>version</th><th>previous</th>
<th>approved by</th></tr>{ledger}</table>
<h2>Timeline (as printed)</h2><pre>{html.escape(timeline)}</pre></body></html>"""
    path.write_text(page, encoding="utf-8")


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
    timeline = "\n".join(day_lines(d) for d in runner.state["days"])
    facts = runner.registry_facts()
    html_path = runner.dir / "summary.html"
    write_html(html_path, spec, runner.state, timeline, facts)
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
