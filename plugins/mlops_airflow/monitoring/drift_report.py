"""The drift report as one self-contained HTML page, drawn from the engine's own statistics (no Evidently).

Per column: its type, the stattest, threshold and score (with the certified bounds of a streamed score), the
decision, the row counts, and the two distributions side by side as an inline SVG (shares per bin for numerical
columns, per value for categorical ones). Above the table: the dataset verdict; below it: the columns that were
not checked and why. Evidently's own report stays available (``DataDriftOperator(report="evidently")``).

No Airflow import and nothing heavier than the standard library: the numbers come in ``DriftResult``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_REF, _CUR = "#4d7ea8", "#ed6a5a"
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2733}
h1{font-size:20px;margin:0 0 4px} .sub{color:#5a6776;margin:0 0 16px}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
.ok{background:#e7f5ea;border:1px solid #8cc79a} .bad{background:#fdeceb;border:1px solid #ed6a5a}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:6px 8px;border-bottom:1px solid #e3e7eb;
text-align:left;vertical-align:middle} th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.drift{color:#b3261e;font-weight:600} .nodrift{color:#2e7d32} .note{color:#5a6776;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
ul{margin:4px 0 12px}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _svg(hist: Mapping[str, Any] | None, width: int = 260, height: int = 64) -> str:
    """Reference and current shares as paired bars (values) or overlaid step outlines (bins)."""
    if not hist:
        return '<span class="note">no picture</span>'
    ref, cur = list(hist["reference"]), list(hist["current"])
    n = len(ref)
    top = max([*ref, *cur, 1e-12])
    slot = width / max(n, 1)
    parts = [f'<svg width="{width}" height="{height + 14}" viewBox="0 0 {width} {height + 14}" role="img">']
    if hist["kind"] == "values":
        bar = max(1.0, slot / 2 - 1)
        for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
            x = i * slot
            label = html.escape(str(hist["values"][i]))
            if n <= 12:  # room for the value under its pair of bars
                parts.append(
                    f'<text x="{x + bar:.1f}" y="{height + 11}" font-size="8" fill="#5a6776" '
                    f'text-anchor="middle">{html.escape(str(hist["values"][i])[:6])}</text>'
                )
            for dx, share, color, side in ((0, r, _REF, "reference"), (bar, c, _CUR, "current")):
                h = height * share / top
                parts.append(
                    f'<rect x="{x + dx:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{label}: {side} {share:.1%}</title></rect>"
                )
    else:
        edges = hist["edges"]
        for values, color, opacity in ((ref, _REF, "0.55"), (cur, _CUR, "0.45")):
            for i, share in enumerate(values):
                h = height * share / top
                parts.append(
                    f'<rect x="{i * slot:.1f}" y="{height - h:.1f}" width="{max(slot - 0.5, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="{color}" fill-opacity="{opacity}"><title>[{edges[i]:.4g}, '
                    f"{edges[i + 1]:.4g}): {share:.1%}</title></rect>"
                )
        parts.append(
            f'<text x="0" y="{height + 12}" font-size="9" fill="#5a6776">{edges[0]:.4g}</text>'
            f'<text x="{width}" y="{height + 12}" font-size="9" fill="#5a6776" text-anchor="end">{edges[-1]:.4g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(
    result: Any,
    verdict: Mapping[str, Any],
    *,
    reference: str,
    current: str,
    title: str = "Data drift",
    notes: Sequence[str] = (),
) -> str:
    """The report page for a ``drift_engine.DriftResult`` and the verdict built from it."""
    passed = bool(verdict.get("passed"))
    share = float(verdict.get("drift_share") or 0.0)
    threshold = verdict.get("metrics", {}).get("drift_share_threshold")
    drifted = list(verdict.get("drifted_columns") or [])
    rows = []
    for col, res in result.columns.items():
        if res.empty_side:
            decision = f'<span class="drift">not compared: no value in the {html.escape(res.empty_side)}</span>'
        elif res.drifted:
            decision = '<span class="drift">drifted</span>'
        else:
            decision = '<span class="nodrift">no drift</span>'
        score = _fmt(res.score)
        if not res.exact and res.score_low is not None:
            score += f'<br><span class="note">in [{_fmt(res.score_low)}, {_fmt(res.score_high)}]'
            score += "" if res.certain else ", uncertain: decided on the midpoint"
            score += "</span>"
        kind = html.escape(res.kind) + (
            f'<br><span class="note">{html.escape(res.typing_note)}</span>' if res.typing_note else ""
        )
        rows.append(
            f"<tr><td><b>{html.escape(col)}</b></td><td>{kind}</td><td>{_fmt(res.method)}</td>"
            f'<td class="num">{_fmt(res.threshold)}</td><td class="num">{score}</td><td>{decision}</td>'
            f'<td class="num">{res.reference_count:,} / {res.current_count:,}</td><td>{_svg(res.histogram)}</td></tr>'
        )
    unchecked = "".join(
        f"<li><b>{html.escape(col)}</b>: {html.escape(reason)}</li>" for col, reason in result.unchecked.items()
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.get("reasons") or [])
    extra_notes = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    headline = (
        f"{'No dataset drift' if passed else 'Verdict failed'}: {len(drifted)} of {len(result.columns)} compared "
        f"columns drifted (share {share:.2f}" + (f", dataset drift at >= {float(threshold):.2f})" if threshold else ")")
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">reference <code>{html.escape(reference)}</code> ({result.reference_rows:,} rows) &middot; current
<code>{html.escape(current)}</code> ({result.current_rows:,} rows) &middot; every row, fast drift engine
(Evidently 0.7's stattests and column typing), {result.seconds:.2f} s</p>
<div class="verdict {"ok" if passed else "bad"}">{html.escape(headline)}</div>
{f"<ul>{reasons}</ul>" if reasons else ""}
<p class="legend note">Distributions: <span style="background:{_REF}"></span>reference
<span style="background:{_CUR}"></span>current (share of each side's values per bin or value)</p>
<table><thead><tr><th>column</th><th>type</th><th>stattest</th><th>threshold</th><th>score</th><th>decision</th>
<th>values ref / cur</th><th>distribution</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
{f"<h2 style='font-size:16px'>Not checked</h2><ul>{unchecked}</ul>" if unchecked else ""}
{f"<ul class='note'>{extra_notes}</ul>" if extra_notes else ""}
<p class="note">A distance drifts when score &gt;= threshold (wasserstein, jensenshannon, psi); a p-value when
score &lt; threshold (chisquare, z) or &lt;= threshold (ks), as in Evidently 0.7. The verdict JSON beside this page
holds every number.</p>
</body></html>
"""
