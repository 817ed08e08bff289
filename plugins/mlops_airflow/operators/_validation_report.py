"""What the data validation gate writes and says: the result JSON, the HTML summary, the evidence link, the message.

``validation_result.json`` (the full GX result, the pipeline contract's checks and the batch) and
``validation_summary.html`` go to the run's results folder whatever the outcome; the failure message names the
batch, the failing contract checks and expectations and the next step. stdlib only at module level.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_airflow import storage
from mlops_airflow.links.mlflow import EvidenceLink
from mlops_airflow.operators._validation_gx import DOMAIN_KWARGS, domain, examples, exception_message, short
from mlops_airflow.operators._validation_quarantine import shown as display

RESULT_FILE = "validation_result.json"
SUMMARY_FILE = "validation_summary.html"
# A failure message names at most this many expectations; the full result file has them all.
MAX_REASONS_IN_MESSAGE = 8


def batch_name(uri: str) -> str:
    """The batch's file or folder name as a person reads it (a local name percent-decoded)."""
    return Path(display(uri)).name if storage.is_local(uri) else storage.name(uri)


def not_run_result(structural: list[str], suite_name: str) -> dict[str, Any]:
    """The result document of a batch that failed a structural check (the suite did not run)."""
    return {
        "success": False,
        "structural_failures": structural,
        "results": [],
        "statistics": {
            "evaluated_expectations": 0,
            "successful_expectations": 0,
            "unsuccessful_expectations": 0,
        },
        "suite_name": suite_name,
    }


def result_metrics(result: dict[str, Any], rows: int) -> dict[str, int]:
    stats = result.get("statistics") or {}
    return {
        "evaluated": int(stats.get("evaluated_expectations") or 0),
        "successful": int(stats.get("successful_expectations") or 0),
        "failed": int(stats.get("unsuccessful_expectations") or 0),
        "rows": rows,
    }


@dataclass(frozen=True)
class Evidence:
    """What one run of the gate found: the result document and the facts the summary and the message show."""

    result: dict[str, Any]
    source_uri: str
    data_md5: str | None
    metrics: dict[str, int]
    reasons: list[str]
    passed: bool
    suite_path: str
    max_examples: int


def write_evidence(out_dir: str, ev: Evidence) -> tuple[str, str]:
    """The result JSON and the HTML summary under ``out_dir`` (a URI), each written whole; their URIs."""
    result_uri = storage.join(out_dir, RESULT_FILE)
    summary_uri = storage.join(out_dir, SUMMARY_FILE)
    batch = {"path": storage.to_uri(ev.source_uri), "md5": ev.data_md5, "rows": ev.metrics["rows"]}
    storage.write_atomic(result_uri, json.dumps({**ev.result, "batch": batch}, indent=2, default=str))
    storage.write_atomic(summary_uri, render_html(ev))
    return result_uri, summary_uri


def render_html(ev: Evidence) -> str:
    result, metrics, passed, max_examples = ev.result, ev.metrics, ev.passed, ev.max_examples
    esc = html.escape
    rows = []
    for item in result.get("results", []):
        config = item.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        detail = item.get("result") or {}
        error = exception_message(item.get("exception_info"))
        expected = {k: v for k, v in kwargs.items() if k not in DOMAIN_KWARGS}
        if error:
            observed = f"error: {error.strip().splitlines()[0]}"
        elif detail.get("unexpected_count") is not None:
            observed = f"{detail['unexpected_count']} unexpected ({float(detail.get('unexpected_percent') or 0):.2f}%)"
        elif "observed_value" in detail:
            observed = f"observed {short(detail['observed_value'])}"
        else:
            observed = ""
        shown = ", ".join(examples(detail.get("partial_unexpected_list"), max_examples))
        ok = bool(item.get("success"))
        rows.append(
            f'<tr class="{"ok" if ok else "bad"}"><td>{esc(str(config.get("type")))}</td>'
            f"<td>{esc(domain(kwargs))}</td><td>{esc(short(expected, 200) if expected else '')}</td>"
            f"<td>{'pass' if ok else 'FAIL'}</td><td>{esc(observed)}</td><td>{esc(shown)}</td></tr>"
        )
    table_rows = "\n".join(rows) or '<tr><td colspan="6">not run (structural failure)</td></tr>'
    contract = _contract_html(result.get("contract") or {})
    reason_items = "".join(f"<li>{esc(r)}</li>" for r in ev.reasons)
    verdict = "PASSED" if passed else "FAILED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Data validation {esc(verdict)}: {esc(batch_name(ev.source_uri))}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 0.9em; }}
tr.bad td {{ background: #fde8e8; }}
tr.ok td {{ background: #eef8ee; }}
.verdict {{ font-weight: bold; color: {"#1a7f37" if passed else "#c62828"}; }}
</style></head><body>
<h1>Data validation: <span class="verdict">{esc(verdict)}</span></h1>
<p>Batch <code>{esc(display(ev.source_uri))}</code>, md5 <code>{esc(str(ev.data_md5))}</code>,
{metrics["rows"]} rows.<br>
Suite <code>{esc(str(result.get("suite_name", "")))}</code> ({esc(ev.suite_path)}):
{metrics["evaluated"]} expectations evaluated, {metrics["successful"]} passed, {metrics["failed"]} failed.</p>
{f"<h2>Reasons</h2><ul>{reason_items}</ul>" if ev.reasons else ""}
{contract}
<h2>Expectations</h2>
<table><tr><th>Expectation</th><th>Column(s)</th><th>Expected</th><th>Result</th><th>Observed</th>
<th>Examples of unexpected values</th></tr>
{table_rows}
</table></body></html>
"""


def _contract_html(contract: dict[str, Any]) -> str:
    """The pipeline contract's checks as a table (one row per check, skipped ones with their reason)."""
    esc = html.escape
    css = {"pass": "ok", "fail": "bad", "warn": "bad", "skipped": ""}
    rows = [
        f'<tr class="{css.get(c["status"], "")}"><td>{esc(c["check"])}</td><td>{esc(", ".join(c["columns"]))}</td>'
        f"<td>{esc(c['status'].upper() if c['status'] in ('fail', 'warn') else c['status'])}</td>"
        f"<td>{esc(c['detail'])}</td><td>{esc(', '.join(c['examples']))}</td>"
        f"<td>{esc(c['next_step'] if c['status'] in ('fail', 'warn') else '')}</td></tr>"
        for c in contract.get("checks") or []
    ]
    stats = contract.get("statistics") or {}
    body = "\n".join(rows) or f'<tr><td colspan="6">not run ({esc(str(contract.get("not_run", "")))})</td></tr>'
    return (
        f"<h2>Pipeline contract</h2><p>{stats.get('evaluated', 0)} checks evaluated, {stats.get('failed', 0)} "
        f"failed, {stats.get('warnings', 0)} warnings, {stats.get('skipped', 0)} skipped. "
        f"{esc(str(contract.get('read', '')))} {esc(str(contract.get('suite_sample', '')))}</p>\n"
        "<table><tr><th>Check</th><th>Column(s)</th><th>Result</th><th>Detail</th><th>Examples</th>"
        f"<th>Next step</th></tr>\n{body}\n</table>"
    )


def persist_link(context: Any, summary_uri: str, results_dir: str, evidence_url_prefix: str | None) -> None:
    """The "Evidence report" extra link: the HTML summary (under ``evidence_url_prefix`` when given)."""
    url = summary_uri
    base = storage.to_uri(results_dir).rstrip("/") + "/"
    if evidence_url_prefix and summary_uri.startswith(base):
        url = f"{evidence_url_prefix.rstrip('/')}/{summary_uri.removeprefix(base)}"
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None and hasattr(ti, "xcom_push"):
        EvidenceLink.persist(context, url)


def failure_message(
    source_uri: str,
    landed: bool,
    data_md5: str | None,
    rows: int | None,
    metrics: dict[str, int],
    reasons: list[str],
    structural: list[str],
    where: str,
    result_uri: str,
    suite_path: str,
    *,
    contract: dict[str, Any] | None = None,
) -> str:
    """The one message of a failed gate: batch, failed checks (contract first), where it went, the next step."""
    facts = []
    if data_md5:
        facts.append(f"md5 {data_md5[:12]}")
    if rows is not None:
        facts.append(f"{rows} rows")
    head = f"Data validation failed for {batch_name(source_uri)}" + (f" ({', '.join(facts)})" if facts else "")
    shown = [r.rstrip(".") for r in reasons[:MAX_REASONS_IN_MESSAGE]]
    more = f"; and {len(reasons) - len(shown)} more (see the full result)" if len(reasons) > len(shown) else ""
    if structural:
        body = "; ".join(shown) + more
        if not landed:
            step = (
                f"check that the upstream task wrote {display(source_uri)} (and that the path template rendered as "
                "expected), then rerun this task."
            )
        else:
            step = "fix the upstream export and re-land the batch."
        return f"{head}: {body}. {where} Full result: {display(result_uri)}. Next step: {step}"
    stats = (contract or {}).get("statistics") or {}
    counts = []
    if stats.get("failed"):
        counts.append(f"{stats['failed']} of {stats['evaluated']} pipeline contract checks failed")
    if metrics["failed"]:
        counts.append(f"{metrics['failed']} of {metrics['evaluated']} expectations failed")
    else:
        counts.append(f"the suite passed ({metrics['evaluated']} expectations)")
    body = ", ".join(counts) + " - " + "; ".join(shown) + more
    if metrics["failed"]:
        step = f"fix the upstream export and re-land the batch, or adjust the suite {suite_path} if the data is right."
        if stats.get("failed"):
            step = step.rstrip(".") + "; for the contract checks, see each one's next step."
    else:
        step = (
            "fix the upstream export as each contract check's next step says and re-land the batch; if the data is "
            "right, correct the gate's contract parameters (entity_columns, timestamp_column, interval_start/"
            "interval_end, allowed_lateness, clock_skew, label_column, task_type, feature_columns, max_null_share, "
            "extra_columns)."
        )
    return f"{head}: {body}. {where} Full result: {display(result_uri)}. Next step: {step}"
