"""The self-contained HTML summary of a scenario run (inline SVG charts, the day table, the model versions with
their data lineage, the ledger, the printed timeline). Used by ``scripts/scenario.py``; standard library only."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


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
    metric = spec["quality_metric"]
    # quality is measured on the labelled day's window: plot it at that day
    value: list[float | None] = [None] * len(days)
    ref: list[float | None] = [None] * len(days)
    for d in state["days"]:
        q = d["monitoring"]["quality"]
        if q and q["labelled_day"] in days:
            value[days.index(q["labelled_day"])] = q.get("value")
            ref[days.index(q["labelled_day"])] = q.get("reference")
    # AUC-like metrics live in [0.4, 1]; an error metric (rmse) from 0 to a bit above the largest value.
    bounded = metric in ("roc_auc", "auc", "accuracy", "r2")
    seen = [v for v in value + ref if v is not None]
    y_max, y_min = (1.0, 0.4) if bounded else (max(seen, default=1.0) * 1.25 or 1.0, 0.0)
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
        _svg_chart(f"Quality per day ({metric} on the delayed labels of that day)", days,
                   [(metric, "#1565c0", value), (f"serving model's {spec['train_metric']}", "#9e9e9e", ref)], marks,
                   y_max, y_min),
    ]
    by_labelled_day = {d["monitoring"]["quality"]["labelled_day"]: d["monitoring"]["quality"]
                       for d in state["days"] if d["monitoring"]["quality"]}
    rows = []
    for d in state["days"]:
        m = d["monitoring"]
        q = by_labelled_day.get(d["day"])  # measured when the day's labels arrived
        quality_cell = "-" if q is None else (f"{_f(q.get('value'))} (v{q['served_by']})"
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
    lineage = "".join(
        f"<tr><td>v{c['version']}</td><td>{html.escape(str(c['trigger']))}</td>"
        f"<td>{html.escape(str((c.get('data') or {}).get('path')))}</td>"
        f"<td>{html.escape(str((c.get('data') or {}).get('rev'))[:12])}</td>"
        f"<td>{html.escape(str((c.get('data') or {}).get('md5')))}</td>"
        f"<td>{html.escape(str(c.get('training_set_hash'))[:16])}</td>"
        f"<td>{html.escape(str(c.get('entrypoint')))}</td></tr>"
        for d in state["days"] for c in d["ct"] if c.get("proceed"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mlops demo: {html.escape(spec['name'])}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1000px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}pre{{background:#f6f8fa;padding:10px;font-size:12px;
overflow-x:auto}}</style></head><body>
<h1>Continuous training demo: {html.escape(spec['description'])}</h1>
<p>Model <b>{html.escape(spec['model'])}</b>;
aliases now {html.escape(json.dumps(facts.get('aliases')))}; {facts.get('versions')} versions.
Generated {datetime.now(UTC).isoformat(timespec='seconds')}. Self-contained (inline SVG).</p>
{''.join(charts)}
<h2>Day by day</h2><table><tr><th>#</th><th>day</th><th>shift/concept</th><th>champion</th><th>drift share</th>
<th>prediction drift (champion's output vs its first window)</th><th>{html.escape(metric)} on that day's labels
(serving model)</th>
<th>retrain events</th><th>continuous training</th></tr>{''.join(rows)}</table>
<h2>Model versions: data lineage</h2><table><tr><th>version</th><th>trained on trigger</th><th>dataset</th>
<th>DVC rev</th><th>md5</th><th>training-set hash</th><th>entrypoint</th></tr>{lineage}</table>
<h2>Promotion ledger</h2><table><tr><th>seq</th><th>alias</th><th>action</th><th>version</th><th>previous</th>
<th>approved by</th></tr>{ledger}</table>
<h2>Timeline (as printed)</h2><pre>{html.escape(timeline)}</pre></body></html>"""
    path.write_text(page, encoding="utf-8")
