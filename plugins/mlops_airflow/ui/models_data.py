"""The data of the "MLOps models" page: one request's read of the MLflow registry, as JSON-ready dicts.

For each registered model: the versions behind ``champion``/``challenger``/``canary``/``shadow`` with their
data version (DVC rev + md5) and training-set hash, every version with its status (:func:`version_states`),
the last drift and quality verdicts (runs of the monitoring experiment), the promotion history (read by the
registry's one ledger reader, :func:`mlops_airflow.registry.ledger.promotion_history`; rejections with who and
why) and links to the MLflow run, the model version, the evaluation evidence and the Evidently report. The
HTML and the routes are in :mod:`mlops_airflow.ui.models_page`.

Metrics carry their source: ``validation`` = the training run's ``val_*`` metrics (its own validation split),
``holdout`` = the challenger-vs-champion evaluation on fresh data (the ``mlops.evaluation.*`` version tags that
:class:`~mlops_airflow.operators.evaluation.EvaluateChallengerOperator` writes), which is what the approval used.

The MLflow connection (``[mlops] ui_mlflow_conn_id``, default ``mlflow_default``) is read at request time,
never at import. No FastAPI here.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from mlops_airflow.registry.aliases import ALIASES
from mlops_airflow.registry.ledger import NOT_MOVES, ledger_from_tags, promotion_history
from mlops_airflow.registry.lock import LOCK_SUFFIX

DEFAULT_MONITORING_EXPERIMENT = "mlops-monitoring"
REPORT_ARTIFACTS = {"data_drift": "drift/data_drift.html"}
MAX_MODELS = 100
MAX_VERSIONS = 200
EVALUATION_PREFIX = "mlops.evaluation."  # written by EvaluateChallengerOperator on the challenger version
_EVALUATION_FIELDS = ("passed", "primary_metric", "champion_version", "evidence_uri")
#: How the page labels each metric source.
METRIC_SOURCES = {"validation": "validation (training run)", "holdout": "holdout (evaluation)",
                  "training": "training run"}

# The page's former name for the registry's reader (kept for one release).
read_promotion_ledger = promotion_history


# ------------------------------------------------------------------------------------------- configuration
def _conf(key: str, fallback: str) -> str:
    from mlops_airflow.config import mlops_conf

    return mlops_conf(key, fallback) or fallback


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


# ------------------------------------------------------------------------------------------ data collection
class _Registry:
    """One request's view of the registry (caches runs and experiments it has already fetched)."""

    def __init__(self, hook: Any, ui_url: str) -> None:
        self.hook, self.ui_url = hook, ui_url.rstrip("/")
        self._runs: dict[str, Any] = {}

    def run(self, run_id: str | None) -> Any | None:
        if not run_id:
            return None
        if run_id not in self._runs:
            try:
                self._runs[run_id] = self.hook.get_run(run_id)
            except Exception:  # noqa: BLE001 - a deleted run leaves the version without a run link
                self._runs[run_id] = None
        return self._runs[run_id]

    def prefetch(self, run_ids: list[str]) -> None:
        """Fetch the runs of many versions at once (a few in parallel): one request per run, not one after another."""
        from concurrent.futures import ThreadPoolExecutor

        missing = sorted({r for r in run_ids if r and r not in self._runs})
        if len(missing) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
                list(pool.map(self.run, missing))

    def run_url(self, run: Any | None) -> str | None:
        if run is None:
            return None
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    def version_url(self, name: str, version: str) -> str:
        return f"{self.ui_url}/#/models/{urllib.parse.quote(name, safe='')}/versions/{version}"

    def model_url(self, name: str) -> str:
        return f"{self.ui_url}/#/models/{urllib.parse.quote(name, safe='')}"


def _evaluation(reg: _Registry, tags: dict[str, str]) -> dict[str, Any] | None:
    """The holdout verdict on a version from its ``mlops.evaluation.*`` tags (None: never evaluated)."""
    values = {k.removeprefix(EVALUATION_PREFIX): v for k, v in tags.items() if k.startswith(EVALUATION_PREFIX)}
    if not values:
        return None
    metrics = {}
    for key in sorted(set(values) - set(_EVALUATION_FIELDS)):
        try:
            number = float(values[key])
        except ValueError:
            continue
        if math.isfinite(number):
            metrics[key] = number
    passed = values.get("passed")
    champion = values.get("champion_version")
    return {
        "passed": None if passed is None else passed.lower() == "true",
        "primary_metric": values.get("primary_metric"),
        "champion_version": None if champion in (None, "", "none") else champion,
        "evidence_uri": values.get("evidence_uri"),
        "evidence_url": _evidence_url(reg, values.get("evidence_uri")),
        "metrics": metrics,
    }


def _version_view(reg: _Registry, name: str, mv: Any) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    run = reg.run(mv.run_id)
    metrics = dict(run.data.metrics) if run is not None else {}
    metrics = {k: metrics[k] for k in sorted(metrics) if not k.startswith("system/") and math.isfinite(metrics[k])}
    evaluation = _evaluation(reg, tags)
    return {
        "version": str(mv.version),
        "status": mv.status,
        "created_at": _ms_to_iso(mv.creation_timestamp),
        "run_id": mv.run_id,
        "run_url": reg.run_url(run),
        "version_url": reg.version_url(name, str(mv.version)),
        "dataset": {
            "rev": tags.get("mlops.dataset_rev"),
            "md5": tags.get("mlops.dataset_md5"),
            "path": tags.get("mlops.dataset_path"),
        },
        "training_set_hash": tags.get("mlops.training_set_hash"),
        "feature_service": tags.get("mlops.feature_service"),
        "metrics": metrics,
        "validation_metrics": {k: v for k, v in metrics.items() if k.startswith("val_")},
        "holdout_metrics": evaluation["metrics"] if evaluation else {},
        "evaluation": evaluation,
        "dag_run": "/".join(v for v in (tags.get("mlops.dag_id"), tags.get("mlops.run_id")) if v) or None,
    }


def version_states(version: str, aliases: list[str], ledger: list[dict[str, Any]],
                   evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The status of one version: the aliases it holds, then ``rejected`` (a ledger entry ``rejected`` for it),
    ``rolled back`` (a ``rollback`` entry whose ``previous_version`` it is), ``refused`` (its evaluation failed);
    with none of these ``retired`` (it held an alias once) or ``registered``.

    :param version: the version number.
    :param aliases: the aliases it holds now (in display order).
    :param ledger: the model's promotion history (:func:`promotion_history` rows, newest first).
    :param evaluation: its holdout verdict (:func:`_evaluation`), None when never evaluated.
    :returns: ``{"state", "states", "rejections", "rollbacks"}``; ``state`` is the first of ``states``.
    """
    rejections = [{"by": r.get("rejected_by"), "reason": r.get("note"), "at": r.get("at"), "alias": r.get("alias"),
                   "dag_run": r.get("dag_run")}
                  for r in ledger if r.get("action") == "rejected" and r.get("version") == version]
    rollbacks = [{"alias": r.get("alias"), "at": r.get("at"), "by": r.get("approved_by"),
                  "replaced_by": r.get("version"), "dag_run": r.get("dag_run")}
                 for r in ledger if r.get("action") == "rollback" and r.get("previous_version") == version]
    states = list(aliases)
    states += ["rejected"] if rejections else []
    states += ["rolled back"] if rollbacks else []
    states += ["refused"] if evaluation and evaluation.get("passed") is False else []
    if not states:
        held = any((r.get("version") == version and r.get("action") not in NOT_MOVES)
                   or r.get("previous_version") == version for r in ledger)
        states = ["retired" if held else "registered"]
    return {"state": states[0], "states": states, "rejections": rejections, "rollbacks": rollbacks}


def _ledger(reg: _Registry, model_tags: dict[str, str], versions: list[Any]) -> list[dict[str, Any]]:
    """The promotion history with a link per evidence, and who rejected (``rejected_by``) where someone did."""
    raw = {int(entry["seq"]): entry for entry in ledger_from_tags(model_tags)}
    rows = []
    for row in promotion_history(model_tags, versions):
        entry = raw.get(row["seq"], {}) if row.get("seq") is not None else {}
        rows.append({**row, "rejected_by": entry.get("rejected_by"),
                     "evidence_url": _evidence_url(reg, row.get("evidence_uri"))})
    return rows


def _last_monitoring_run(reg: _Registry, experiment_id: str | None, name: str, kind_filter: str) -> Any | None:
    if experiment_id is None or "'" in name or "\\" in name:
        return None
    runs = reg.hook.search_runs_where([experiment_id], f"{kind_filter} and tags.`mlops.model_name` = '{name}'")
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


def collect(hook: Any, ui_url: str, experiment_name: str) -> list[dict[str, Any]]:
    """Everything the page shows, as JSON-ready dicts (one per registered model, sorted by name).

    :param hook: the ``MlflowHook`` of the page's connection (an ``MlflowClient`` still works, for one release).
    :param ui_url: the MLflow UI address the links point at.
    :param experiment_name: the monitoring experiment (drift and quality verdicts).
    """
    from mlops_airflow.registry.versions import as_hook

    hook = as_hook(hook)
    reg = _Registry(hook, ui_url)
    experiment = hook.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment is not None else None
    models = []
    registered = hook.search_registered_models(max_results=MAX_MODELS, order_by=["name ASC"])
    for rm in registered:
        if rm.name.endswith(LOCK_SUFFIX):
            continue
        name = rm.name
        versions = (hook.search_model_versions(f"name = '{name}'", max_results=MAX_VERSIONS,
                                               order_by=["version_number DESC"]) if "'" not in name else [])
        by_version = {str(v.version): v for v in versions}
        reg.prefetch([v.run_id for v in versions])
        ledger = _ledger(reg, dict(rm.tags or {}), versions)
        views: dict[str, dict[str, Any]] = {}
        held: dict[str, list[str]] = {}
        aliases: dict[str, Any] = {}
        for alias, version in sorted(
            dict(rm.aliases or {}).items(), key=lambda kv: (ALIASES.index(kv[0]) if kv[0] in ALIASES else 99, kv[0])
        ):
            mv = by_version.get(str(version)) or hook.get_model_version(name, str(version))
            views.setdefault(str(mv.version), _version_view(reg, name, mv))
            held.setdefault(str(mv.version), []).append(alias)
            aliases[alias] = views[str(mv.version)]
        history = []
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            view = views.get(str(mv.version)) or _version_view(reg, name, mv)
            view.update(aliases=held.get(view["version"], []),
                        **version_states(view["version"], held.get(view["version"], []), ledger, view["evaluation"]))
            history.append(view)
        for view in views.values():  # an aliased version beyond the newest MAX_VERSIONS
            if "state" not in view:
                view.update(aliases=held[view["version"]],
                            **version_states(view["version"], held[view["version"]], ledger, view["evaluation"]))
        drift = _last_monitoring_run(reg, experiment_id, name, "tags.`mlops.kind` = 'data_drift'")
        quality = _last_monitoring_run(reg, experiment_id, name, "tags.`mlops.kind` LIKE '%quality%'")
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        models.append(
            {
                "name": name,
                "description": rm.description or "",
                "url": reg.model_url(name),
                "versions": len(versions),
                "latest_version": str(latest.version) if latest else None,
                "aliases": aliases,
                "version_history": history,
                "monitoring": {"drift": _verdict_view(reg, drift), "quality": _verdict_view(reg, quality)},
                "ledger": ledger,
            }
        )
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
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mlflow_conn_id": conn_id,
        "mlflow_url": None,
        "models": [],
        "error": None,
    }
    try:
        hook = MlflowHook(mlflow_conn_id=conn_id)
        ui_url = _public_url(hook.settings.ui_url)
        result["mlflow_url"] = ui_url
    except Exception as err:  # noqa: BLE001 - shown on the page, with the next step
        result["error"] = (
            f"connection {conn_id!r} is not usable ({type(err).__name__}: {err}). Define it "
            "(AIRFLOW_CONN_MLFLOW_DEFAULT or the Connections page) or set [mlops] ui_mlflow_conn_id"
        )
        return result
    try:
        result["models"] = collect(hook, ui_url, monitoring_experiment())
    except Exception as err:  # noqa: BLE001
        result["error"] = (
            f"MLflow at {ui_url} (connection {conn_id!r}) did not answer: {type(err).__name__}: "
            f"{str(err)[:300]}. Check that the server is up and the connection's tracking URI"
        )
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result
