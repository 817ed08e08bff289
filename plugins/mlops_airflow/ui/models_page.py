"""The "MLOps models" page of the Airflow UI: a FastAPI app that the pack's plugin mounts at ``/mlops``.

For each registered model of the MLflow registry: the versions behind ``champion``/``challenger``/
``canary``/``shadow`` with their data version (DVC rev + md5) and training-set hash, every version with its
status (champion ... rejected, rolled back, refused, retired), metrics labelled by source (validation of the
training run vs the holdout evaluation), the last drift and quality verdicts (runs of the monitoring
experiment), the promotion ledger (rejections with who and why), and links to the MLflow run, the model
version, the evaluation evidence and the Evidently report. The data is gathered by
:mod:`mlops_airflow.ui.models_data` (the ledger through the registry's reader,
:mod:`mlops_airflow.registry.ledger`); this module renders it.

Every link opens a new tab. Inside the Airflow UI the page is an iframe sandboxed without ``allow-popups``
(Airflow 3.3), where a ``target="_blank"`` link does nothing; there ``frame.js`` opens the tab from the
Airflow window (same origin, not sandboxed) on the same click.

- ``GET /mlops/``               server-rendered HTML (every value escaped);
- ``GET /mlops/api/models``     the same data as JSON;
- ``GET /mlops/reports/{run}``  a monitoring run's HTML report, served in a CSP sandbox (its scripts
  run in an opaque origin: they can neither read the Airflow session cookie nor call the Airflow API);
- ``GET /mlops/frame.js``       the page's one script (new tabs from inside the Airflow UI's frame).

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
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

# Re-exported for one release (noqa: F401): the data side moved to ui/models_data.py, the ledger to the registry.
from mlops_airflow.registry.ledger import LEDGER_PREFIX  # noqa: F401
from mlops_airflow.ui.assets import CSS, FRAME_JS, ICON
from mlops_airflow.ui.models_data import (  # noqa: F401
    ALIASES,
    DEFAULT_MONITORING_EXPERIMENT,
    LOCK_SUFFIX,
    MAX_MODELS,
    METRIC_SOURCES,
    REPORT_ARTIFACTS,
    collect,
    mlflow_conn_id,
    monitoring_experiment,
    read_promotion_ledger,
    snapshot,
)

MAX_LEDGER_ROWS = 25
MAX_VERSION_ROWS = 50
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# --------------------------------------------------------------------------------------------------- HTML
def e(value: Any) -> str:
    """Escape for HTML text and attribute values (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _link(url: str | None, text: str, *, external: bool = True) -> str:
    """An escaped link; only http(s) and the page's own relative routes (never ``javascript:`` & co.).

    Every link opens a new tab (``external=False``: the same tab), MLflow's and this server's (the report,
    the JSON, DAG runs in the Airflow UI, which inside the frame would nest the UI in itself). Inside the
    Airflow UI's sandboxed frame ``frame.js`` opens the tab.
    """
    if not url or not url.startswith(("http://", "https://", "reports/", "api/", "../dags/")):
        return f'<span class="muted">{e(text)}</span>' if not url else e(url)
    target = ' target="_blank" rel="noopener noreferrer"' if external else ""
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


def _metric_sources(version: dict[str, Any], limit: int = 4) -> str:
    """The version's metrics under their source: validation (training run) and holdout (evaluation)."""
    groups = []
    if version.get("validation_metrics"):
        groups.append(("validation", version["validation_metrics"]))
    elif version.get("metrics"):  # no val_* metric: what the training run logged, said so
        groups.append(("training", version["metrics"]))
    if version.get("holdout_metrics"):
        groups.append(("holdout", version["holdout_metrics"]))
    if not groups:
        return '<span class="muted">-</span>'
    return "".join(f'<div class="msrc msrc-{key}"><span class="src">{e(METRIC_SOURCES[key])}</span> '
                   f'{_metrics(metrics, limit)}</div>' for key, metrics in groups)


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
    return f'<a href="{e(href)}" title="{e(dag_run)}" target="_blank" rel="noopener noreferrer">{e(run_id[:36])}</a>'


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
            f'<td>{_metric_sources(v)}</td><td class="small">{_when(v["created_at"])}'
            f'{"<br>" + _dag_run(v["dag_run"]) if v["dag_run"] else ""}</td>'
            f"<td>{links}</td></tr>"
        )
    return "".join(rows)


def _state_badges(v: dict[str, Any]) -> str:
    """A version's status: its aliases, then rejected / rolled back / refused / retired / registered, with why."""
    badges = [f'<span class="alias alias-{e(s)}">{e(s)}</span>' if s in v.get("aliases", [])
              else f'<span class="state state-{e(s.replace(" ", "-"))}">{e(s)}</span>' for s in v.get("states", [])]
    details = [f'rejected by <b>{e(r.get("by") or "?")}</b> {_when(r.get("at"))}'
               + (f': <span class="reason">{e(r["reason"])}</span>' if r.get("reason") else "")
               for r in v.get("rejections", [])]
    details += [f'{e(r.get("alias"))} rolled back {_when(r.get("at"))}'
                + (f' (now v{e(r["replaced_by"])})' if r.get("replaced_by") else "") for r in v.get("rollbacks", [])]
    evaluation = v.get("evaluation") or {}
    if evaluation.get("passed") is not None:
        against = f' vs champion v{e(evaluation["champion_version"])}' if evaluation.get("champion_version") else ""
        details.append(f'holdout evaluation {"passed" if evaluation["passed"] else "failed"}{against}')
    return " ".join(badges) + "".join(f'<div class="small muted">{d}</div>' for d in details)


def _version_rows(model: dict[str, Any]) -> str:
    history = model.get("version_history") or []
    if not history:
        return '<tr><td colspan="6" class="muted">No version registered yet.</td></tr>'
    rows = []
    for v in history[:MAX_VERSION_ROWS]:
        d = v["dataset"]
        data = _short(d.get("rev")) if d.get("rev") else '<span class="muted">-</span>'
        evidence = (v.get("evaluation") or {}).get("evidence_url")
        links = " · ".join(x for x in (_link(v["run_url"], "MLflow run"), _link(v["version_url"], "version"),
                                       _link(evidence, "evaluation evidence")) if "href" in x)
        rows.append(
            f'<tr data-version="{e(v["version"])}" data-state="{e(v.get("state"))}"><td class="num">v{e(v["version"])}'
            f'</td><td>{_state_badges(v)}</td><td>{data}</td><td>{_metric_sources(v)}</td>'
            f'<td class="small">{_when(v["created_at"])}{"<br>" + _dag_run(v["dag_run"]) if v["dag_run"] else ""}'
            f'</td><td>{links or "<span class=muted>-</span>"}</td></tr>'
        )
    return "".join(rows) + _more_rows(len(history) - MAX_VERSION_ROWS, 6, "versions")


def _decision(entry: dict[str, Any]) -> str:
    """Who decided a ledger entry: the approver, or for a rejection who rejected it and the reason given."""
    if entry.get("action") == "rejected":
        reason = entry.get("note")
        return (f'<span class="state state-rejected">rejected</span> by <b>{e(entry.get("rejected_by") or "?")}</b>'
                + (f'<div class="small">reason: <span class="reason">{e(reason)}</span></div>' if reason else ""))
    note = entry.get("note")
    return e(entry.get("approved_by")) + (f'<div class="small muted">{e(note)}</div>' if note else "")


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
            f'<td class="small">{_decision(entry)}</td>'
            f'<td>{_evidence(entry.get("evidence_uri"), entry.get("evidence_url"))}</td>'
            f'<td class="small">{_dag_run(entry.get("dag_run"))}'
            f'{" <span class=muted>(version tags)</span>" if entry.get("source") == "version tags" else ""}</td></tr>'
        )
    return "".join(rows) + _more_rows(len(ledger) - MAX_LEDGER_ROWS, 7, "entries")


def _more_rows(more: int, columns: int, what: str) -> str:
    """The table's last row when ``more`` rows were left out (they are in the JSON view); else nothing."""
    return f'<tr><td colspan="{columns}" class="muted">{more} older {what} in the JSON view.</td></tr>' if more > 0 \
        else ""


def render_page(data: dict[str, Any], embedded: bool = False) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>MLOps models</title><style>{CSS}</style></head><body>",
        '<header><div><h1>MLOps models</h1><div class="small muted">Registry: '
        f'{_link(data.get("mlflow_url"), data.get("mlflow_url") or "-")} (connection '
        f'<code>{e(data.get("mlflow_conn_id"))}</code>) · read {_when(data.get("generated_at"))}</div></div>'
        f'<div class="small">{_link("api/models", "JSON")}</div></header>',
    ]
    if embedded:
        parts.append('<div class="hint">Shown inside the Airflow UI: every link opens a new tab. The full page is '
                     '<code>/mlops/</code> on this server.</div>')
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
            + _alias_rows(model) + "</tbody></table><h3>Versions</h3><table class=versions><thead><tr><th>Version"
            "</th><th>Status</th><th>Data version</th><th>Metrics</th><th>Registered</th><th>Links</th></tr></thead>"
            "<tbody>" + _version_rows(model) + "</tbody></table><h3>Monitoring</h3><div class=verdicts>"
            + _verdict_block("Data drift", mon["drift"], "no drift", "drift", "No drift check has run yet.")
            + _verdict_block("Quality", mon["quality"], "passed", "failed",
                             "No quality run yet (needs delayed labels).")
            + "</div><h3>Promotion ledger</h3><table><thead><tr><th>At</th><th>Action</th><th>Alias</th>"
            "<th>Version</th><th>Decided by</th><th>Evidence</th><th>DAG run</th></tr></thead><tbody>"
            + _ledger_rows(model["ledger"]) + "</tbody></table></section>"
        )
    parts.append('<script src="frame.js"></script></body></html>')
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

    @app.get("/frame.js", include_in_schema=False)
    def frame_js() -> Response:
        return Response(FRAME_JS, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

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
    try:
        run = hook.get_run(run_id)
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
            local = hook.download_artifacts(run_id, artifact, tmp)
        except Exception as err:  # noqa: BLE001
            raise HTTPException(status_code=404, detail=f"{artifact} not found on run {run_id}: {err}") from None
        body = Path(local).read_text(encoding="utf-8", errors="replace")
    return HTMLResponse(body, headers={
        "Content-Security-Policy": "sandbox allow-scripts allow-popups",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
    })
