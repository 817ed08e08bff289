"""The "MLOps models" page of the Airflow UI: a FastAPI app that the pack's plugin mounts at ``/mlops``.

For each registered model of the MLflow registry: the versions behind ``champion``/``challenger``/
``canary``/``shadow`` with their data version (DVC rev + md5) and training-set hash, the last drift and
quality verdicts (runs of the monitoring experiment), the promotion ledger, and links to the MLflow run,
the model version and the Evidently report.

- ``GET /mlops/``               server-rendered HTML (every value escaped);
- ``GET /mlops/api/models``     the same data as JSON;
- ``GET /mlops/reports/{run}``  a monitoring run's HTML report, served in a CSP sandbox (its scripts
  run in an opaque origin: they can neither read the Airflow session cookie nor call the Airflow API).

Every route requires an Airflow user allowed to view the website (the auth manager's ``WEBSITE`` view),
from the session cookie the UI sets or a bearer token: Airflow does not authenticate plugin apps itself.
The MLflow connection (``[mlops] ui_mlflow_conn_id``, default ``mlflow_default``) is read at request time,
never at import. MLflow calls are blocking, so the routes are sync (FastAPI runs them in its thread pool).
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

ALIASES = ("champion", "challenger", "canary", "shadow")
LEDGER_PREFIX = "mlops.ledger."
LOCK_SUFFIX = ".promotion-lock"
DEFAULT_MONITORING_EXPERIMENT = "mlops-monitoring"
REPORT_ARTIFACTS = {"data_drift": "drift/data_drift.html"}
MAX_MODELS = 100
MAX_LEDGER_ROWS = 25
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# The nav icon: a model version stack with a check mark (20x20, currentColor-free so it shows on both themes).
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#0194e2" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M12 2 3 7l9 5 9-5-9-5z"/><path d="m3 12 9 5 9-5"/>'
    '<path d="m3 17 9 5 9-5"/></svg>'
)


# ------------------------------------------------------------------------------------------- configuration
def _conf(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    return conf.get("mlops", key, fallback=fallback) or fallback


def mlflow_conn_id() -> str:
    return _conf("ui_mlflow_conn_id", "mlflow_default")


def monitoring_experiment() -> str:
    return _conf("monitoring_experiment", DEFAULT_MONITORING_EXPERIMENT)


def _public_url(url: str) -> str:
    """``url`` without credentials (``https://user:secret@host`` -> ``https://host``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _ms_to_iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms else None


# ----------------------------------------------------------------------------------------------- the ledger
def read_promotion_ledger(model_tags: dict[str, str], versions: Iterable[Any]) -> list[dict[str, Any]]:
    """The promotion history of one model, newest first, from both places a promotion is recorded.

    - the append-only ledger on the registered model (``mlops.ledger.<seq>`` tags, one JSON entry each,
      written by ``operators/promotion.py``);
    - the flat ``mlops.promotion.*`` tags on a model version (``alias``, ``at``, ``approved_by``,
      ``previous``, ``evidence``/``evidence_uri``, ``dag_run``), which is all a first-champion promotion
      by ``RegisterModelOperator`` writes. A version-tag move already in the ledger is not listed twice.

    Unreadable entries are kept (``action: "unreadable"``) so a gap in the history is visible.
    """
    entries: list[dict[str, Any]] = []
    for key, value in model_tags.items():
        suffix = key.removeprefix(LEDGER_PREFIX)
        if not key.startswith(LEDGER_PREFIX) or not suffix.isdigit():
            continue
        try:
            raw = json.loads(value)
        except json.JSONDecodeError:
            raw = {"action": "unreadable", "note": value[:200]}
        if not isinstance(raw, dict):
            raw = {"action": "unreadable", "note": str(raw)[:200]}
        airflow = raw.get("airflow") if isinstance(raw.get("airflow"), dict) else {}
        dag_run = "/".join(str(airflow[k]) for k in ("dag_id", "run_id") if airflow.get(k)) or None
        entries.append({
            "seq": int(raw.get("seq") or suffix),
            "at": raw.get("at"),
            "alias": raw.get("alias"),
            "version": _str_or_none(raw.get("version")),
            "previous_version": _str_or_none(raw.get("previous_version")),
            "action": raw.get("action") or "promote",
            "approved_by": raw.get("approved_by"),
            "evidence_uri": raw.get("evidence_uri"),
            "dag_run": dag_run,
            "note": raw.get("note"),
            "source": "ledger",
        })
    recorded = {(e["alias"], e["version"]) for e in entries}
    for mv in versions:
        tags = dict(mv.tags or {})
        alias = tags.get("mlops.promotion.alias")
        if not alias or (alias, str(mv.version)) in recorded:
            continue
        previous = tags.get("mlops.promotion.previous")
        evidence = tags.get("mlops.promotion.evidence_uri") or tags.get("mlops.promotion.evidence")
        entries.append({
            "seq": None,
            "at": tags.get("mlops.promotion.at"),
            "alias": alias,
            "version": str(mv.version),
            "previous_version": None if previous in (None, "", "none") else previous,
            "action": tags.get("mlops.promotion.action") or "promote",
            "approved_by": tags.get("mlops.promotion.approved_by"),
            "evidence_uri": None if evidence in (None, "", "none") else evidence,
            "dag_run": tags.get("mlops.promotion.dag_run"),
            "note": None,
            "source": "version tags",
        })
    return sorted(entries, key=lambda e: (str(e["at"] or ""), e["seq"] or 0), reverse=True)


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# ------------------------------------------------------------------------------------------ data collection
class _Registry:
    """One request's view of the registry (caches runs and experiments it has already fetched)."""

    def __init__(self, client: Any, ui_url: str) -> None:
        self.client, self.ui_url = client, ui_url.rstrip("/")
        self._runs: dict[str, Any] = {}

    def run(self, run_id: str | None) -> Any | None:
        if not run_id:
            return None
        if run_id not in self._runs:
            try:
                self._runs[run_id] = self.client.get_run(run_id)
            except Exception:  # noqa: BLE001 - a deleted run leaves the version without a run link
                self._runs[run_id] = None
        return self._runs[run_id]

    def run_url(self, run: Any | None) -> str | None:
        if run is None:
            return None
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    def version_url(self, name: str, version: str) -> str:
        return f"{self.ui_url}/#/models/{urllib.parse.quote(name, safe='')}/versions/{version}"

    def model_url(self, name: str) -> str:
        return f"{self.ui_url}/#/models/{urllib.parse.quote(name, safe='')}"


def _version_view(reg: _Registry, name: str, mv: Any) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    run = reg.run(mv.run_id)
    metrics = dict(run.data.metrics) if run is not None else {}
    return {
        "version": str(mv.version),
        "status": mv.status,
        "created_at": _ms_to_iso(mv.creation_timestamp),
        "run_id": mv.run_id,
        "run_url": reg.run_url(run),
        "version_url": reg.version_url(name, str(mv.version)),
        "dataset": {"rev": tags.get("mlops.dataset_rev"), "md5": tags.get("mlops.dataset_md5"),
                    "path": tags.get("mlops.dataset_path")},
        "training_set_hash": tags.get("mlops.training_set_hash"),
        "feature_service": tags.get("mlops.feature_service"),
        "metrics": {k: metrics[k] for k in sorted(metrics) if not k.startswith("system/")},
        "dag_run": "/".join(v for v in (tags.get("mlops.dag_id"), tags.get("mlops.run_id")) if v) or None,
    }


def _last_monitoring_run(reg: _Registry, experiment_id: str | None, name: str, kind_filter: str) -> Any | None:
    if experiment_id is None or "'" in name or "\\" in name:
        return None
    runs = reg.client.search_runs(
        [experiment_id],
        filter_string=f"{kind_filter} and tags.`mlops.model_name` = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _verdict_view(reg: _Registry, run: Any | None) -> dict[str, Any] | None:
    if run is None:
        return None
    tags, metrics = dict(run.data.tags), dict(run.data.metrics)
    passed = tags.get("mlops.passed")
    kind = tags.get("mlops.kind", "")
    report = REPORT_ARTIFACTS.get(kind) or tags.get("mlops.report_artifact")
    return {
        "kind": kind,
        "passed": None if passed is None else passed.lower() == "true",
        "status": run.info.status,
        "at": _ms_to_iso(run.info.start_time),
        "run_id": run.info.run_id,
        "run_url": reg.run_url(run),
        "report_url": f"reports/{run.info.run_id}" if report else None,
        "metrics": {k: metrics[k] for k in sorted(metrics) if not k.startswith(("drift_score.", "system/"))},
        "threshold": tags.get("mlops.drift_share_threshold"),
        "dag_run": "/".join(v for v in (tags.get("mlops.dag_id"), tags.get("mlops.run_id")) if v) or None,
    }


def collect(client: Any, ui_url: str, experiment_name: str) -> list[dict[str, Any]]:
    """Everything the page shows, as JSON-ready dicts (one per registered model, sorted by name)."""
    reg = _Registry(client, ui_url)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment is not None else None
    models = []
    registered = client.search_registered_models(max_results=MAX_MODELS, order_by=["name ASC"])
    for rm in registered:
        if rm.name.endswith(LOCK_SUFFIX):
            continue
        name = rm.name
        versions = client.search_model_versions(f"name = '{name}'", max_results=200) if "'" not in name else []
        by_version = {str(v.version): v for v in versions}
        aliases: dict[str, Any] = {}
        for alias, version in sorted(dict(rm.aliases or {}).items(),
                                     key=lambda kv: (ALIASES.index(kv[0]) if kv[0] in ALIASES else 99, kv[0])):
            mv = by_version.get(str(version)) or client.get_model_version(name, str(version))
            aliases[alias] = _version_view(reg, name, mv)
        drift = _last_monitoring_run(reg, experiment_id, name, "tags.`mlops.kind` = 'data_drift'")
        quality = _last_monitoring_run(reg, experiment_id, name, "tags.`mlops.kind` LIKE '%quality%'")
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        models.append({
            "name": name,
            "description": rm.description or "",
            "url": reg.model_url(name),
            "versions": len(versions),
            "latest_version": str(latest.version) if latest else None,
            "aliases": aliases,
            "monitoring": {"drift": _verdict_view(reg, drift), "quality": _verdict_view(reg, quality)},
            "ledger": [{**entry, "evidence_url": _evidence_url(reg, entry.get("evidence_uri"))}
                       for entry in read_promotion_ledger(dict(rm.tags or {}), versions)],
        })
    return models


def _evidence_url(reg: _Registry, uri: str | None) -> str | None:
    """``runs:/<run>/<path>`` -> the artifact in the MLflow UI; http(s) as is; anything else has no link."""
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        url = reg.run_url(reg.run(run_id))
        return f"{url}/artifacts/{urllib.parse.quote(path)}" if url and path else url
    return None


def snapshot() -> dict[str, Any]:
    """The page's data, read now from the MLflow connection; an ``error`` (cause + next step) instead on failure."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    conn_id = mlflow_conn_id()
    started = time.monotonic()
    result: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "mlflow_conn_id": conn_id, "mlflow_url": None, "models": [], "error": None}
    try:
        hook = MlflowHook(mlflow_conn_id=conn_id)
        ui_url = _public_url(hook.settings.ui_url)
        result["mlflow_url"] = ui_url
    except Exception as err:  # noqa: BLE001 - shown on the page, with the next step
        result["error"] = (f"connection {conn_id!r} is not usable ({type(err).__name__}: {err}). Define it "
                           "(AIRFLOW_CONN_MLFLOW_DEFAULT or the Connections page) or set [mlops] ui_mlflow_conn_id")
        return result
    try:
        result["models"] = collect(hook.get_client(), ui_url, monitoring_experiment())
    except Exception as err:  # noqa: BLE001
        result["error"] = (f"MLflow at {ui_url} (connection {conn_id!r}) did not answer: {type(err).__name__}: "
                           f"{str(err)[:300]}. Check that the server is up and the connection's tracking URI")
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


# --------------------------------------------------------------------------------------------------- HTML
def e(value: Any) -> str:
    """Escape for HTML text and attribute values (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _link(url: str | None, text: str, *, external: bool = True) -> str:
    """An escaped link; only http(s) and the page's own relative routes (never ``javascript:`` & co.).

    Links to this API server (the report, the JSON, DAG runs) open in the same frame: inside the Airflow UI
    the page is an iframe that may not open windows. Links to MLflow open a new tab (the full page).
    """
    if not url or not url.startswith(("http://", "https://", "reports/", "api/", "../dags/")):
        return f'<span class="muted">{e(text)}</span>' if not url else e(url)
    same_origin = url.startswith(("reports/", "api/", "../dags/"))
    target = "" if same_origin or not external else ' target="_blank" rel="noopener noreferrer"'
    return f'<a href="{e(url)}"{target}>{e(text)}</a>'


def _short(value: str | None, n: int = 12) -> str:
    if not value:
        return '<span class="muted">-</span>'
    return f'<code title="{e(value)}">{e(value[:n])}</code>'


def _metrics(metrics: dict[str, float], limit: int = 4) -> str:
    """The most telling metrics first: validation metrics (AUC, accuracy, ...) before training ones."""
    if not metrics:
        return '<span class="muted">-</span>'
    preferred = ("val_auc", "auc", "val_accuracy", "accuracy", "drift_share", "drifted_columns", "val_logloss")
    ranked = sorted(metrics.items(), key=lambda kv: (
        preferred.index(kv[0]) if kv[0] in preferred else len(preferred) + (0 if kv[0].startswith("val_") else 1),
        kv[0]))
    return " ".join(f'<span class="metric">{e(k)} <b>{v:.4g}</b></span>' for k, v in ranked[:limit])


def _when(iso: str | None) -> str:
    """``2026-11-29T05:24:06.235+00:00`` -> ``2026-11-29 05:24 UTC`` (the full value in the tooltip)."""
    if not iso:
        return '<span class="muted">-</span>'
    try:
        moment = datetime.fromisoformat(str(iso)).astimezone(UTC)
    except ValueError:
        return e(iso)
    return f'<span title="{e(iso)}" class="num">{moment:%Y-%m-%d %H:%M} UTC</span>'


def _dag_run(dag_run: str | None) -> str:
    """A link to the DAG run in the Airflow UI (relative: the page is served under the UI's base URL)."""
    if not dag_run or "/" not in dag_run:
        return e(dag_run)
    dag_id, _, run_id = dag_run.partition("/")
    href = f"../dags/{urllib.parse.quote(dag_id, safe='')}/runs/{urllib.parse.quote(run_id, safe='')}"
    return f'<a href="{e(href)}" title="{e(dag_run)}">{e(run_id[:36])}</a>'


def _evidence(evidence: str | None, url: str | None = None) -> str:
    """An evidence URI as a link; a JSON evidence (a first champion's thresholds) as its short form."""
    if not evidence:
        return '<span class="muted">-</span>'
    if url:
        name = evidence.rstrip("/").rsplit("/", 1)[-1] if "/" in evidence else "evidence"
        return f'<span title="{e(evidence)}">{_link(url, name)}</span>'
    try:
        data = json.loads(evidence)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("min_metrics"), dict):
        metrics = data.get("metrics") or {}
        checks = [f"{k} {metrics.get(k, float('nan')):.3f} ≥ {v}" for k, v in data["min_metrics"].items()]
        return f'<span class="small" title="{e(evidence)}">{e("; ".join(checks))}</span>'
    text = evidence if len(evidence) <= 60 else evidence[:57] + "..."
    return f'<code class="small" title="{e(evidence)}">{e(text)}</code>'


def _badge(passed: bool | None, ok: str, bad: str) -> str:
    if passed is None:
        return '<span class="badge unknown">unknown</span>'
    return f'<span class="badge {"ok" if passed else "bad"}">{e(ok if passed else bad)}</span>'


def _alias_rows(model: dict[str, Any]) -> str:
    if not model["aliases"]:
        return ('<tr><td colspan="7" class="muted">No alias set: no version has passed its gate yet '
                f'({e(model["versions"])} version(s) registered).</td></tr>')
    rows = []
    for alias, v in model["aliases"].items():
        d = v["dataset"]
        data = (f'{_short(d.get("rev"))}<br><span class="muted small">md5</span> {_short(d.get("md5"), 10)}'
                if d.get("rev") or d.get("md5") else '<span class="muted">-</span>')
        links = " · ".join(x for x in (_link(v["run_url"], "MLflow run"), _link(v["version_url"], "version"))
                           if "href" in x) or '<span class="muted">-</span>'
        rows.append(
            f'<tr><td><span class="alias alias-{e(alias)}">{e(alias)}</span></td>'
            f'<td class="num">v{e(v["version"])}</td><td>{data}</td><td>{_short(v["training_set_hash"], 16)}</td>'
            f'<td>{_metrics(v["metrics"])}</td><td class="small">{_when(v["created_at"])}'
            f'{"<br>" + _dag_run(v["dag_run"]) if v["dag_run"] else ""}</td>'
            f"<td>{links}</td></tr>"
        )
    return "".join(rows)


def _verdict_block(title: str, verdict: dict[str, Any] | None, ok: str, bad: str, none_text: str) -> str:
    if verdict is None:
        return f'<div class="verdict"><h4>{e(title)}</h4><p class="muted">{e(none_text)}</p></div>'
    threshold = verdict.get("threshold")
    threshold_html = f' <span class="metric">threshold <b>{e(threshold)}</b></span>' if threshold else ""
    links = [_link(verdict["report_url"], "Evidently report", external=True) if verdict["report_url"] else "",
             _link(verdict["run_url"], "MLflow run")]
    return (
        f'<div class="verdict"><h4>{e(title)} {_badge(verdict["passed"], ok, bad)}</h4>'
        f'<p>{_metrics(verdict["metrics"], 5)}{threshold_html}</p>'
        f'<p class="small muted">{_when(verdict["at"])} · run {e(verdict["status"]).lower()}'
        f'{" · DAG run " + _dag_run(verdict["dag_run"]) if verdict["dag_run"] else ""}</p>'
        f'<p>{" · ".join(x for x in links if x)}</p></div>'
    )


def _ledger_rows(ledger: list[dict[str, Any]]) -> str:
    if not ledger:
        return '<tr><td colspan="7" class="muted">No promotion recorded yet.</td></tr>'
    rows = []
    for entry in ledger[:MAX_LEDGER_ROWS]:
        previous = entry.get("previous_version")
        version = entry.get("version")
        holder = (f'v{e(version)}{" <span class=muted>(was v" + e(previous) + ")</span>" if previous else ""}'
                  if version is not None else f'<span class=muted>removed from</span> v{e(previous)}')
        rows.append(
            f'<tr><td class="small">{_when(entry.get("at"))}</td><td class="small">{e(entry.get("action"))}</td>'
            f'<td><span class="alias alias-{e(entry.get("alias"))}">{e(entry.get("alias"))}</span></td>'
            f'<td class="num">{holder}</td>'
            f'<td class="small">{e(entry.get("approved_by"))}</td>'
            f'<td>{_evidence(entry.get("evidence_uri"), entry.get("evidence_url"))}</td>'
            f'<td class="small">{_dag_run(entry.get("dag_run"))}'
            f'{" <span class=muted>(version tags)</span>" if entry.get("source") == "version tags" else ""}</td></tr>'
        )
    more = len(ledger) - MAX_LEDGER_ROWS
    if more > 0:
        rows.append(f'<tr><td colspan="7" class="muted">{more} older entries in the JSON view.</td></tr>')
    return "".join(rows)


CSS = """
:root { --fg:#1f2933; --muted:#667085; --line:#e4e7ec; --bg:#f8f9fb; --card:#fff; --ok:#067647; --okbg:#dcfae6;
  --bad:#b42318; --badbg:#fee4e2; --accent:#0194e2; }
* { box-sizing: border-box; }
body { margin:0; padding:20px 24px; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; justify-content:space-between; gap:16px; margin-bottom:16px; }
h1 { font-size:20px; margin:0; } h2 { font-size:17px; margin:0; } h3 { font-size:13px; margin:16px 0 6px;
  text-transform:uppercase; letter-spacing:.04em; color:var(--muted); } h4 { margin:0 0 6px; font-size:14px; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin-bottom:18px;
  box-shadow:0 1px 2px rgba(16,24,40,.04); }
.card-head { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; color:var(--muted); font-weight:600; }
tr:last-child td { border-bottom:none; }
code { font:12px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; background:#f2f4f7; padding:1px 4px;
  border-radius:4px; }
.muted { color:var(--muted); } .small { font-size:12px; }
.num { font-variant-numeric:tabular-nums; white-space:nowrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  vertical-align:1px; }
.badge.ok { color:var(--ok); background:var(--okbg); } .badge.bad { color:var(--bad); background:var(--badbg); }
.badge.unknown { color:var(--muted); background:#f2f4f7; }
.alias { display:inline-block; padding:1px 8px; border-radius:4px; font-size:12px; font-weight:600; background:#eef4ff;
  color:#3538cd; } .alias-champion { background:#fef0c7; color:#93370d; }
.alias-challenger { background:#f4f3ff; color:#5925dc; } .alias-canary { background:#ecfdf3; color:#067647; }
.alias-shadow { background:#f2f4f7; color:#344054; }
.metric { display:inline-block; margin-right:10px; white-space:nowrap; font-size:12px; color:var(--muted); }
.metric b { color:var(--fg); font-weight:600; }
.verdicts { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.verdict { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:#fcfcfd; }
.verdict p { margin:4px 0; }
.hint { border:1px solid var(--line); background:#f9fafb; color:var(--muted); font-size:12px; padding:6px 10px;
  border-radius:6px; margin-bottom:12px; }
.error { border:1px solid #fda29b; background:#fef3f2; color:var(--bad); padding:12px 14px; border-radius:8px; }
"""


def render_page(data: dict[str, Any], embedded: bool = False) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>MLOps models</title><style>{CSS}</style></head><body>",
        '<header><div><h1>MLOps models</h1><div class="small muted">Registry: '
        f'{_link(data.get("mlflow_url"), data.get("mlflow_url") or "-")} (connection '
        f'<code>{e(data.get("mlflow_conn_id"))}</code>) · read {_when(data.get("generated_at"))}</div></div>'
        '<div class="small"><a href="api/models">JSON</a></div></header>',
    ]
    if embedded:
        parts.append('<div class="hint">Shown inside the Airflow UI, which lets this frame open no new tab: '
                     'MLflow links open from the full page, <code>/mlops/</code> on this server '
                     '(or right-click a link, <i>Open link in new tab</i>).</div>')
    if data.get("error"):
        parts.append(f'<div class="error" role="alert"><b>Registry not readable:</b> {e(data["error"])}</div>')
    elif not data["models"]:
        parts.append('<div class="card muted">No registered model yet. Run the continuous-training DAG '
                     '(<code>mlops_continuous_training</code>) to register one.</div>')
    for model in data["models"]:
        mon = model["monitoring"]
        parts.append(
            f'<section class="card" data-model="{e(model["name"])}"><div class="card-head">'
            f'<h2>{_link(model["url"], model["name"])}</h2><span class="small muted">{e(model["versions"])} '
            f'version(s), latest v{e(model["latest_version"])}</span></div>'
            + (f'<p class="small muted">{e(model["description"])}</p>' if model["description"] else "")
            + "<h3>Aliases</h3><table><thead><tr><th>Alias</th><th>Version</th><th>Data version (DVC rev, md5)</th>"
            "<th>Training-set hash</th><th>Metrics</th><th>Registered</th><th>Links</th></tr></thead><tbody>"
            + _alias_rows(model) + "</tbody></table><h3>Monitoring</h3><div class=verdicts>"
            + _verdict_block("Data drift", mon["drift"], "no drift", "drift", "No drift check has run yet.")
            + _verdict_block("Quality", mon["quality"], "passed", "failed",
                             "No quality run yet (needs delayed labels).")
            + "</div><h3>Promotion ledger</h3><table><thead><tr><th>At</th><th>Action</th><th>Alias</th>"
            "<th>Version</th><th>Approved by</th><th>Evidence</th><th>DAG run</th></tr></thead><tbody>"
            + _ledger_rows(model["ledger"]) + "</tbody></table></section>"
        )
    parts.append("</body></html>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------- the app
def _auth_dependency() -> Callable[..., Any]:
    """The Airflow API server's own check: an authenticated user allowed to view the website."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return requires_access_view(AccessView.WEBSITE)


def create_app() -> FastAPI:
    app = FastAPI(title="MLOps models", description="Registered models, aliases, verdicts and promotion ledger",
                  dependencies=[Depends(_auth_dependency())], docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        data = snapshot()
        # Browsers say when they load the page into a frame (the Airflow UI's plugin view).
        embedded = request.headers.get("sec-fetch-dest") == "iframe"
        return HTMLResponse(render_page(data, embedded=embedded), status_code=503 if data.get("error") else 200,
                            headers={"Cache-Control": "no-store", "Vary": "Sec-Fetch-Dest"})

    @app.get("/api/models")
    def models_json() -> JSONResponse:
        data = snapshot()
        return JSONResponse(data, status_code=503 if data.get("error") else 200, headers={"Cache-Control": "no-store"})

    @app.get("/reports/{run_id}", response_class=HTMLResponse)
    def report(run_id: str, path: str | None = Query(default=None, max_length=200)) -> HTMLResponse:
        return _report(run_id, path)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/index.html", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("./")

    return app


def _report(run_id: str, path: str | None) -> HTMLResponse:
    """A monitoring run's HTML report, in a sandbox: scripts run, but in an opaque origin (no Airflow cookie)."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    if not _RUN_ID.match(run_id):
        raise HTTPException(status_code=404, detail="not a run id")
    hook = MlflowHook(mlflow_conn_id=mlflow_conn_id())
    client = hook.get_client()
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001
        raise HTTPException(status_code=404, detail=f"run {run_id} not found in MLflow") from None
    kind = run.data.tags.get("mlops.kind", "")
    artifact = path or REPORT_ARTIFACTS.get(kind) or run.data.tags.get("mlops.report_artifact")
    if not kind or not artifact:
        raise HTTPException(status_code=404, detail=f"run {run_id} is not a monitoring run with a report")
    if not artifact.endswith(".html") or artifact.startswith("/") or ".." in artifact.split("/"):
        raise HTTPException(status_code=400, detail="only .html artifacts inside the run")
    with tempfile.TemporaryDirectory(prefix="mlops-report-") as tmp:
        try:
            local = client.download_artifacts(run_id, artifact, tmp)
        except Exception as err:  # noqa: BLE001
            raise HTTPException(status_code=404, detail=f"{artifact} not found on run {run_id}: {err}") from None
        body = Path(local).read_text(encoding="utf-8", errors="replace")
    return HTMLResponse(body, headers={
        "Content-Security-Policy": "sandbox allow-scripts allow-popups",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
    })
