"""MLflow logging of a monitoring check: one run per (kind, dag, run, task) that a retry reuses.

One flow (``log_check_run``) over two backends with the same five steps (start or reuse the run, check where its
artifacts go, log tags and metrics, upload a file, end the run): MLflow's REST API (``hook.rest``: no ``mlflow``
import, ~10 s less per task) when the tracking URI is http(s) and the server proxies artifacts, else the hook's
``MlflowClient`` (an artifact store the client writes to itself: ``s3://``, a path).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.verdict import finite as _finite


class _NotProxied(Exception):
    """The run's artifact store is not proxied by the tracking server: the client must write to it itself."""


class _RestRuns:
    """The REST backend (``MlflowRestClient``)."""

    def __init__(self, hook: Any) -> None:
        from mlops_airflow.hooks.mlflow_rest import MlflowRestError

        self.rest = hook.rest
        self.errors: tuple[type[BaseException], ...] = (MlflowRestError, KeyError, ValueError)

    def start(self, experiment: str, keys: Mapping[str, str], run_name: str) -> tuple[str, str, str | None]:
        """``(run_id, artifact_uri, status of the reused run or None when created)``."""
        experiment_id = self.rest.experiment_id(experiment)
        clauses = [f"tags.`{key}` = '{value}'" for key, value in keys.items() if "'" not in value and "\\" not in value]
        runs = self.rest.search_runs(
            experiment_id, " and ".join(clauses), max_results=100, order_by=["attributes.start_time DESC"]
        )

        def run_tags(run: dict[str, Any]) -> dict[str, str]:
            return {t["key"]: t.get("value", "") for t in (run.get("data") or {}).get("tags") or []}

        matching = [r for r in runs if all(run_tags(r).get(key) == value for key, value in keys.items())]
        finished = [r for r in matching if r["info"].get("status") == "FINISHED"]
        run = (finished or matching or [None])[0]
        status = None if run is None else str(run["info"]["status"])
        if run is None:
            run = self.rest.create_run(experiment_id, {**keys, "mlflow.runName": run_name}, run_name=run_name)
        return str(run["info"]["run_id"]), str(run["info"]["artifact_uri"]), status

    def check(self, artifact_uri: str) -> None:
        if not self.rest.proxies(artifact_uri):
            raise _NotProxied(artifact_uri)

    def log(self, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        self.rest.log_batch(run_id, metrics=metrics, tags=tags)

    def upload(self, run_id: str, artifact_uri: str, path: Path, artifact_dir: str) -> None:
        self.rest.upload_artifact(artifact_uri, path, artifact_dir)

    def end(self, run_id: str, status: str) -> None:
        self.rest.set_terminated(run_id, status)


class _ClientRuns:
    """The ``MlflowClient`` backend (through the hook's methods)."""

    errors: tuple[type[BaseException], ...] = (Exception,)

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def start(self, experiment: str, keys: Mapping[str, str], run_name: str) -> tuple[str, str, str | None]:
        experiment_id = self.hook.experiment_id(experiment, create=True)
        run = self.hook.find_run(experiment, dict(keys), prefer_finished=True)
        status = None if run is None else str(run.info.status)
        if run is None:
            run = self.hook.create_run(experiment_id, dict(keys), run_name=run_name)
        return str(run.info.run_id), str(run.info.artifact_uri), status

    def check(self, artifact_uri: str) -> None:
        return None

    def log(self, run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        self.hook.set_run_tags(run_id, tags)
        self.hook.log_run_metrics(run_id, metrics)

    def upload(self, run_id: str, artifact_uri: str, path: Path, artifact_dir: str) -> None:
        self.hook.log_run_artifact(run_id, str(path), artifact_dir)

    def end(self, run_id: str, status: str) -> None:
        self.hook.end_run(run_id, status)


def fill_uris(verdict: dict[str, Any], base: str, run_id: str, report_path: Path, verdict_path: Path) -> None:
    """Point the verdict at its logged copies under ``base``, then write the verdict file that is logged."""
    verdict["mlflow_run_id"] = run_id
    verdict["evidence_uri"] = f"{base}/{report_path.name}"
    verdict["verdict_uri"] = f"{base}/{verdict_path.name}"
    if verdict.get("retrain_event"):
        verdict["retrain_event"]["verdict_uri"] = verdict["verdict_uri"]
    verdict_path.write_text(json.dumps(verdict, indent=2, sort_keys=True, default=str))


def log_check_run(
    hook: Any,
    log: Any,
    *,
    experiment: str,
    keys: dict[str, str],
    run_name: str,
    verdict: dict[str, Any],
    files: Any,
    metrics: dict[str, float],
    tags: dict[str, str],
    where: str,
) -> None:
    """Log the report, the verdict and the metrics of one check to its run (``keys`` identify it; a retry reuses
    it), REST first where it can; fills ``mlflow_run_id`` and points ``evidence_uri``/``verdict_uri`` at the
    logged copies.

    :param files: the check's ``_Evidence`` (local ``report_path``/``verdict_path``, ``report_uri``,
        ``artifact_dir``).
    :param where: the tracking URI or connection, for the error message.
    :raises MonitoringError: MLflow refused or could not be reached (the run, if started, ends FAILED).
    """
    rest = hook.settings.tracking_uri.startswith(("http://", "https://"))
    backend: Any = _RestRuns(hook) if rest else _ClientRuns(hook)
    try:
        _log_with(backend, log, experiment, keys, run_name, verdict, files, metrics, tags, where)
    except _NotProxied as err:
        log.info("artifact store %s is not proxied by the server: logging with MlflowClient", err)
        _log_with(_ClientRuns(hook), log, experiment, keys, run_name, verdict, files, metrics, tags, where)


def _log_with(backend: Any, log: Any, experiment: str, keys: dict[str, str], run_name: str, verdict: dict[str, Any],
              files: Any, metrics: dict[str, float], tags: dict[str, str], where: str) -> None:
    run_id: str | None = None
    try:
        run_id, artifact_uri, status = backend.start(experiment, keys, run_name)
        if status is None:
            log.info("created MLflow run %s in experiment %s", run_id, experiment)
        else:
            log.info("retry: reusing MLflow run %s (status %s)", run_id, status)
        backend.check(artifact_uri)
        base = f"{artifact_uri.rstrip('/')}/{files.artifact_dir}"
        fill_uris(verdict, base, run_id, files.report_path, files.verdict_path)
        backend.log(run_id, {k: float(v) for k, v in metrics.items() if _finite(v) is not None}, tags)
        for path in (files.report_path, files.verdict_path):
            backend.upload(run_id, artifact_uri, path, files.artifact_dir)
        backend.end(run_id, "FINISHED")
    except _NotProxied:
        raise
    except backend.errors as err:
        if run_id is not None:
            with contextlib.suppress(Exception):  # the original error is the one to report
                backend.end(run_id, "FAILED")
        kind = keys.get("mlops.kind", "monitoring")
        raise MonitoringError(
            f"could not log the {kind} evidence to MLflow ({where}, experiment {experiment!r}): {err}. "
            f"The HTML report is at {files.report_uri}; check the MLflow connection, or set log_to_mlflow=False",
            cause="MLflow logging failed",
            evidence_uri=files.report_uri,
            next_step="check the MLflow connection, or set log_to_mlflow=False",
        ) from err
