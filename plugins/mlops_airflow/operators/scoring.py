"""Batch scoring of a data window with the champion, plus canary, shadow and challenger comparison.

The **served** prediction of a row comes from the ``champion``, except for a deterministic share of
entities (hash of the entity key) served by the ``canary`` when that alias exists. The ``shadow``
and ``challenger`` aliases score every row *without* affecting the served output. Everything goes
into one inference log (Parquet, content-addressed path): features, served prediction, proba,
confidence (a classifier's; a regressor has ``prediction`` only), serving model version, timestamp,
and one ``<alias>_prediction`` (+ ``_proba``) per shadow model. Labels are never part of the log:
they arrive later (``QualityCheckOperator``).

The statistics (McNemar's and Fisher's exact tests for a classifier; paired and Welch t-tests on
absolute errors for a regressor) live in ``mlops_airflow.stats``.

Models load in the training environment (``score.py`` through ``_scoring.score_parquet``); no model
framework is imported into the Airflow worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowModelVersionLink
from mlops_airflow.operators._common import run_identity
from mlops_airflow.stats import fisher_exact, mcnemar  # noqa: F401 - mcnemar: importable from here as before
from mlops_airflow.task_types import BINARY_CLASSIFICATION, is_classification, validate_task_type

if TYPE_CHECKING:
    from airflow.sdk import Context

SERVED_COLUMNS = ("prediction", "proba", "confidence")
DEFAULT_TIMESTAMP = "event_timestamp"


def served_task(hook: MlflowHook, model_name: str, version: str, need_metadata: bool) -> dict[str, Any]:
    """What ``version`` predicts (:func:`mlops_airflow.registry.tags.model_task`): its tags, plus its MLmodel
    metadata when ``need_metadata`` (a value the tags cannot give: entity columns, or a missing label)."""
    from mlops_airflow.registry.tags import model_task

    info = model_task(hook, model_name, version)
    if need_metadata or not info["label"]:
        try:
            info = model_task(hook, model_name, version, hook.settings.tracking_uri)
        except Exception as err:  # noqa: BLE001 - the caller names what it still lacks
            info["error"] = f"{type(err).__name__}: {err}"
    return info


def canary_mask(keys: Any, share: float, salt: str) -> Any:
    """Deterministic canary assignment: an entity is always routed the same way for a given salt."""
    import numpy as np

    if share <= 0:
        return np.zeros(len(keys), dtype=bool)
    buckets = np.array(
        [int(hashlib.sha256(f"{salt}:{k}".encode()).hexdigest()[:8], 16) % 10_000 for k in keys], dtype=np.int64
    )
    return buckets < int(round(share * 10_000))


class BatchScoringOperator(BaseOperator):
    """Score a window with ``champion`` (+ ``canary`` share, + ``shadow``/``challenger`` on all rows).

    Returns ``{uri, rows, served_by, versions, shadow_aliases, mean_confidence, low_confidence_share}``.

    :param model_name: registered model (templated).
    :param input_path: the window to score, Parquet, a URI or a local path (templated). Label columns are dropped.
    :param output_dir: inference-log folder, a URI (templated); the log is ``<model>/<sha16>.parquet``, the scores
        cache ``<model>/scores``.
    :param canary_share: share of entities served by the ``canary`` alias when it exists (0..1).
    :param shadow_aliases: aliases scored on every row without serving (default shadow, challenger).
    :param entity_column: the entity key(s) hashed for the canary split; None = the champion's MLmodel metadata
        ``entity_columns`` (needed only when a canary serves).
    :param label_columns: columns never passed to the models nor kept in the log; None = the champion version's
        label (its ``mlops.label`` tag, else its MLmodel metadata ``label``).
    :param task_type: ``binary_classification`` or ``regression``, passed to the scorer (``--task-type``); None =
        each model's own metadata (the scorer's default).
    """

    template_fields: Sequence[str] = ("model_name", "input_path", "output_dir", "model_task_type")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#6f42c1"

    def __init__(
        self,
        *,
        model_name: str,
        input_path: str,
        output_dir: str,
        canary_share: float = 0.0,
        shadow_aliases: Sequence[str] = ("shadow", "challenger"),
        entity_column: str | Sequence[str] | None = None,
        timestamp_column: str = DEFAULT_TIMESTAMP,
        label_columns: Sequence[str] | None = None,
        low_confidence: float = 0.6,
        task_type: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_task_type = validate_task_type(task_type) if task_type and "{{" not in str(task_type) else task_type
        if not 0 <= canary_share <= 1:
            raise ValueError(f"canary_share must be within [0, 1], got {canary_share}")
        self.model_name, self.input_path, self.output_dir = model_name, input_path, output_dir
        self.canary_share, self.shadow_aliases = canary_share, list(shadow_aliases)
        self.entity_column, self.timestamp_column = entity_column, timestamp_column
        self.label_columns = None if label_columns is None else list(label_columns)
        self.low_confidence, self.mlflow_conn_id = low_confidence, mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        import pandas as pd

        from mlops_airflow import storage
        from mlops_airflow.operators._scoring import score_parquet

        source = storage.to_uri(self.input_path)
        if not storage.exists(source):
            raise MonitoringError(f"window {source} not found: nothing to score; check the landing task")
        window = storage.read_table(source)
        if window.empty:
            raise MonitoringError(
                f"window {source} has no rows: nothing to score (an empty window is not a pass); check that the "
                "landing step wrote this interval's batch, then re-run"
            )
        versions = self.hook.alias_versions(self.model_name, ["champion", "canary", *self.shadow_aliases])
        if "champion" not in versions:
            raise MonitoringError(
                f"{self.model_name} has no champion alias: nothing can serve. Run the CT DAG to register and "
                "promote a first model"
            )
        canary_serves = "canary" in versions and self.canary_share > 0
        info: dict[str, Any] = {}
        if self.label_columns is None or (canary_serves and not self.entity_column):
            info = served_task(self.hook, self.model_name, versions["champion"],
                               need_metadata=canary_serves and not self.entity_column)
        label_columns = self.label_columns if self.label_columns is not None else (
            [info["label"]] if info.get("label") else [])
        if self.label_columns is None and not label_columns:
            self.log.warning("%s v%s names no label (no mlops.label tag nor metadata%s): no column is dropped from "
                             "the window; pass label_columns=[...] to keep labels out of the inference log",
                             self.model_name, versions["champion"], f"; {info['error']}" if "error" in info else "")
        entity = self._entity_columns(info, versions["champion"]) if canary_serves else []
        work = storage.join(storage.to_uri(self.output_dir), self.model_name)
        inputs = window.drop(columns=[c for c in label_columns if c in window.columns])
        content = hashlib.sha256(pd.util.hash_pandas_object(inputs, index=False).values.tobytes()).hexdigest()
        input_file = storage.join(work, "inputs", f"{content[:16]}.parquet")
        if not storage.exists(input_file):
            storage.write_table(input_file, inputs)

        scored: dict[str, Any] = {}
        for alias, version in versions.items():
            result = score_parquet(
                hook=self.hook, model_uri=f"models:/{self.model_name}/{version}", input_path=input_file,
                output_dir=storage.join(work, "scores"), cache_key=f"{self.model_name}-v{version}", log=self.log,
                **({"task_type": self.model_task_type} if self.model_task_type else {}),
            )
            scored[alias] = storage.read_table(result["output"] if "output" in result else result["output_path"])

        log = inputs.copy()
        champion = scored["champion"]
        served_columns = [c for c in SERVED_COLUMNS if c in champion.columns]
        missing = [c for c in entity if c not in log.columns]
        if missing:
            raise MonitoringError(f"window {source} has no entity column(s) {missing} (columns {list(log.columns)}) "
                                  "to route the canary by; fix entity_column")
        if not entity:  # no canary serves: every row is the champion's
            keys: Any = [None] * len(log)
        else:
            keys = (log[entity[0]] if len(entity) == 1 else log[entity].astype(str).agg("|".join, axis=1)).to_numpy()
        canary = canary_mask(keys, self.canary_share if canary_serves else 0.0, salt=self.model_name)
        for col in served_columns:
            log[col] = champion[col].to_numpy()
            if canary.any():
                log.loc[canary, col] = scored["canary"][col].to_numpy()[canary]
        log["served_by"] = ["canary" if c else "champion" for c in canary]
        log["model_version"] = [versions["canary"] if c else versions["champion"] for c in canary]
        shadows = [a for a in self.shadow_aliases if a in versions and versions[a] != versions["champion"]]
        for alias in shadows:
            log[f"{alias}_prediction"] = scored[alias]["prediction"].to_numpy()
            if "proba" in scored[alias].columns:
                log[f"{alias}_proba"] = scored[alias]["proba"].to_numpy()
        digest = hashlib.sha256(pd.util.hash_pandas_object(log, index=False).values.tobytes()).hexdigest()
        out = storage.join(work, f"{digest[:16]}.parquet")
        if not storage.exists(out):
            storage.write_table(out, log)
        ident = run_identity(context)
        classifier = "proba" in served_columns
        summary = {
            "uri": out,
            "rows": len(log),
            "model_name": self.model_name,
            "versions": versions,
            "served_by": {"champion": int((~canary).sum()), "canary": int(canary.sum())},
            "shadow_aliases": shadows,
            "task_type": BINARY_CLASSIFICATION if classifier else "regression",
            "label_columns": label_columns,
            "dag_run": f"{ident['dag_id']}/{ident['run_id']}",
        }
        if classifier:
            summary.update({
                "mean_confidence": round(float(log["confidence"].mean()), 6),
                "low_confidence_share": round(float((log["confidence"] < self.low_confidence).mean()), 6),
                "positive_rate": round(float(log["prediction"].mean()), 6),
            })
        else:
            summary.update({"mean_confidence": None, "low_confidence_share": None,
                            "mean_prediction": round(float(log["prediction"].mean()), 6)})
        storage.write_json(storage.join(work, f"{digest[:16]}.json"), summary)
        MlflowModelVersionLink.persist(context, self.hook.model_version_url(self.model_name, versions["champion"]))
        log_summary(
            self.log, "batch-scoring", model=self.model_name, task_type=summary["task_type"],
            champion=f"v{versions['champion']}", canary=versions.get("canary"), shadows=shadows, rows=len(log),
            mean_confidence=summary["mean_confidence"], log=out,
        )
        return summary

    def _entity_columns(self, info: dict[str, Any], version: str) -> list[str]:
        """The entity key(s) of the canary split: ``entity_column``, else the champion's metadata."""
        if self.entity_column:
            return [self.entity_column] if isinstance(self.entity_column, str) else list(self.entity_column)
        if info.get("entity_columns"):
            return [str(c) for c in info["entity_columns"]]
        why = f" ({info['error']})" if "error" in info else ""
        raise MonitoringError(
            f"a canary serves {self.model_name} but entity_column is not given and v{version}'s MLmodel metadata names "
            f"no entity_columns{why}: pass entity_column= (the entity key the canary share is hashed on)"
        )


def canary_test(correct_canary: int, n_canary: int, correct_champion: int, n_champion: int) -> dict[str, Any]:
    """Fisher's exact test (two-sided) of the canary's accuracy against the champion's on *different* rows.

    The canary and the champion serve disjoint entities, so the paired McNemar test does not apply; the 2x2 table
    is (correct, wrong) x (canary, champion). See :func:`mlops_airflow.stats.fisher_exact`.
    """
    return fisher_exact(correct_canary, n_canary, correct_champion, n_champion)


class ShadowCanaryAnalysisOperator(BaseOperator):
    """Compare the served model with each shadow/challenger (and the canary with the champion).

    The test fits the task type. **Binary classification**: without labels, the disagreement rate; with labels
    (``labels_path``, joined on ``keys``), accuracy of each shadow and the served model on the same rows with
    McNemar's exact test on the paired errors, and the canary's accuracy against the champion's on their own
    (disjoint) rows with Fisher's exact test. **Regression**: without labels, the mean absolute difference of the
    predictions relative to the mean absolute served prediction (``disagreement``); with labels, each shadow's
    absolute errors against the served model's on the same rows with a paired t-test (``paired_t``), and the
    canary's against the champion's on their own rows with Welch's t-test (``welch_t``); ``mae``/``rmse`` beside.
    The verdict's ``recommendation`` feeds the registry's steps: ``rollback`` (the canary is significantly worse:
    take its alias away, ``rollback_alias``), ``promote`` (a shadow/challenger, else the canary, is significantly
    better: ``promote_alias`` names it), or ``hold`` when the evidence is not significant.

    Returns ``{passed, reasons, metrics, recommendation, promote_alias, rollback_alias, evidence_uri, task_type}``.

    :param label_column: the label in ``labels_path``; None = the served version's ``mlops.label`` tag (else its
        MLmodel metadata), read from ``model_name``'s registry; neither is an error when labels are given.
    :param keys: join keys of log and labels; None = the served version's metadata ``entity_columns`` +
        ``timestamp_column``.
    :param task_type: ``binary_classification`` or ``regression``; None = the served version's tags/metadata
        (with ``model_name``), else the inference log itself (the scorer writes ``proba`` for classifiers only).
    :param model_name: the registered model the log belongs to (to read the version's label, keys, task type).
    :param max_disagreement: classification: the largest share of rows where a shadow's class differs;
        regression: the largest mean absolute difference relative to the mean absolute served prediction.
    """

    template_fields: Sequence[str] = ("inference_log", "labels_path", "evidence_dir", "label_column", "model_task_type",
                                      "model_name")

    def __init__(
        self,
        *,
        inference_log: str,
        evidence_dir: str,
        labels_path: str | None = None,
        label_column: str | None = None,
        keys: Sequence[str] | None = None,
        task_type: str | None = None,
        model_name: str | None = None,
        timestamp_column: str = DEFAULT_TIMESTAMP,
        alpha: float = 0.05,
        max_disagreement: float = 0.2,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task_type and "{{" not in str(task_type):
            task_type = validate_task_type(task_type)
        self.inference_log = inference_log
        self.labels_path = labels_path
        self.evidence_dir = evidence_dir
        self.label_column = label_column
        self.keys = None if keys is None else list(keys)
        self.model_task_type, self.model_name, self.timestamp_column = task_type, model_name, timestamp_column
        self.alpha = alpha
        self.max_disagreement = max_disagreement
        self.mlflow_conn_id = mlflow_conn_id

    def _resolve(self, log: Any) -> tuple[str, str | None, list[str], dict[str, str]]:
        """``(task_type, label, keys, source)``: the parameters, else the served version's tags/metadata."""
        need_labels = bool(self.labels_path)
        missing = not self.model_task_type or (need_labels and (not self.label_column or self.keys is None))
        info: dict[str, Any] = {"source": {}}
        if missing and self.model_name:
            versions = log.loc[log["served_by"] == "champion", "model_version"] if {"served_by", "model_version"} \
                <= set(log.columns) else log.get("model_version")
            version = str(versions.mode().iloc[0]) if versions is not None and len(versions.dropna()) else None
            if version is None:
                info["error"] = "the inference log has no model_version column"
            else:
                hook = MlflowHook(mlflow_conn_id=self.mlflow_conn_id)
                info = served_task(hook, str(self.model_name), version,
                                   need_metadata=need_labels and self.keys is None)
        task = self.model_task_type or info.get("task_type")
        source = {"task_type": "parameter" if self.model_task_type else info["source"].get("task_type", "")}
        if not task:  # the scorer's output contract: a classifier's log has proba, a regressor's does not
            task = BINARY_CLASSIFICATION if "proba" in log.columns else "regression"
            source["task_type"] = "inference log (proba column present)" if "proba" in log.columns else \
                "inference log (no proba column)"
        label = self.label_column or info.get("label")
        keys = list(self.keys) if self.keys is not None else (
            [*info["entity_columns"], self.timestamp_column] if info.get("entity_columns") else [])
        why = f" ({info['error']})" if "error" in info else ""
        where = f"{self.model_name}'s served version" if self.model_name else "no model_name given"
        if need_labels and not label:
            raise MonitoringError(f"labels given but no label_column, and {where} names no label{why}: pass "
                                  "label_column= (the label in labels_path)")
        if need_labels and not keys:
            raise MonitoringError(f"labels given but no keys, and {where} names no entity_columns{why}: pass keys= "
                                  "(the entity key(s) + event timestamp shared by the log and the labels)")
        return validate_task_type(task), label, keys, source

    def execute(self, context: Context) -> dict[str, Any]:

        from mlops_airflow import storage
        from mlops_airflow.operators._common import run_uri
        from mlops_airflow.operators._shadow_canary import canary_comparison, classification_shadow, regression_shadow

        log = storage.read_table(self.inference_log)
        task_type, label, keys, task_source = self._resolve(log)
        classifier = is_classification(task_type)
        shadows = sorted(c.removesuffix("_prediction") for c in log.columns if c.endswith("_prediction")
                         and c != "prediction")
        metrics: dict[str, Any] = {"rows": len(log), "comparisons": {}, "task_type": task_type,
                                   "task_source": task_source}
        reasons: list[str] = []
        labelled = None
        if self.labels_path:
            labels = storage.read_table(self.labels_path, columns=[*keys, label])
            labelled = log.merge(labels, on=keys, how="inner")
            if labelled.empty:
                raise MonitoringError(
                    f"0 of {len(labels)} labels joined the inference log on {keys}: check the keys and "
                    "timestamps of the label feed"
                )
            metrics["labelled_rows"] = len(labelled)
        candidates: list[tuple[float, str]] = []  # (error, alias) of the significantly better shadows
        compare = classification_shadow if classifier else regression_shadow
        for name in shadows:
            entry, reason, candidate = compare(log, labelled, label, name, alpha=self.alpha,
                                               max_disagreement=self.max_disagreement)
            metrics["comparisons"][name] = entry
            reasons += [reason] if reason else []
            candidates += [candidate] if candidate else []
        canary_says = "hold"
        if "served_by" in log.columns and (log["served_by"] == "canary").any() and labelled is not None:
            entry, canary_says, reason = canary_comparison(labelled, str(label), classifier, alpha=self.alpha)
            metrics["comparisons"]["canary"] = entry
            reasons += [reason] if reason else []
        # A worse canary is rolled back first (promotions wait for the next window); else the significantly
        # better shadow with the fewest errors, else a significantly better canary, is promoted.
        recommendation, promote_alias = "hold", None
        if canary_says == "rollback":
            recommendation = "rollback"
        elif candidates:
            recommendation, promote_alias = "promote", min(candidates)[1]
        elif canary_says == "promote":
            recommendation, promote_alias = "promote", "canary"
        out = storage.join(run_uri(self.evidence_dir, context), "shadow_canary.json")
        verdict = {"passed": not reasons, "reasons": reasons, "metrics": metrics, "recommendation": recommendation,
                   "promote_alias": promote_alias, "rollback_alias": "canary" if recommendation == "rollback" else None,
                   "evidence_uri": out, "task_type": task_type}
        storage.write_json(out, verdict)
        log_summary(self.log, "shadow-canary", task_type=task_type, passed=verdict["passed"],
                    recommendation=recommendation, comparisons=json.dumps(metrics["comparisons"], default=str),
                    evidence=out)
        return verdict
