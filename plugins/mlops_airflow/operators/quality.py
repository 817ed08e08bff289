"""``QualityCheckOperator``: delayed labels joined to the inference log; quality, concept drift as a quality
drop, confidence and the link to a business outcome, with a retraining trigger on a model-quality failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.quality_stats import (
    ALL_QUALITY_METRICS,
    _quality_drop,
    allowed_drop,
    classification_quality,  # noqa: F401 - importable from here as before
    floor_reasons,
    quality_metrics,
)
from mlops_airflow.operators._monitoring import _MonitoringMixin, _retrain_outlet
from mlops_airflow.operators._quality_inputs import (
    DEFAULT_PASSTHROUGH,
    OUTPUT_SUFFIXES,
    QUALITY_ARTIFACT_DIR,
    QUALITY_REPORT_FILE,
    QUALITY_RUN_KIND,
    QUALITY_VERDICT_FILE,
    VARIANT_COLUMNS,
    _parse_reference_quality,
    _QualityInputsMixin,
)
from mlops_airflow.operators._quality_task import _QualityTaskMixin
from mlops_airflow.task_types import default_quality_metric, is_classification, validate_task_type

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "DEFAULT_PASSTHROUGH",
    "OUTPUT_SUFFIXES",
    "QUALITY_REPORT_FILE",
    "QUALITY_VERDICT_FILE",
    "VARIANT_COLUMNS",
    "QualityCheckOperator",
]


class QualityCheckOperator(_QualityTaskMixin, _QualityInputsMixin, _MonitoringMixin, BaseOperator):
    """Join delayed labels to the inference log and judge the model's quality, confidence and business link.

    Inputs (Parquet files or directories): the **inference log** of a window (join keys, the model's features,
    ``prediction``; a classifier's ``proba`` = P(label == 1), optionally ``confidence``; ``model_uri``/
    ``model_version``) and the **labels** that arrived for it (join keys, the label, optionally a business-outcome
    column). Rows join on ``join_keys`` (timestamps compared in UTC).

    **Task types**: a binary classifier is judged on accuracy, precision, recall, F1, ROC AUC and log loss (concept
    drift: by default a ROC AUC drop of more than 0.05); a regressor on RMSE, MAE and R2 (concept drift: by default
    an RMSE rise of more than 10% of the reference; no confidence). ``task_type``, ``label_column``, ``join_keys``
    and ``features`` left unset are read from the models in the log (their ``mlops.*`` version tags and MLflow
    metadata: ``task_type``, ``label``, ``entity_columns`` + ``event_timestamp``, ``features``); the task type
    alone defaults to binary classification. ``metrics.task_type`` and ``metrics.task_source`` record them.

    Returns (XCom) ``{"passed", "reasons", "concept_drift", "quality_drop", "metrics": {"quality": {accuracy,
    precision, recall, f1, roc_auc, log_loss | rmse, mae, r2}, "reference_quality", "quality_metric", "quality_drop",
    "confidence": {...}, "outcome": {...}, "rows": {...}, "served_versions": {version: rows}, "served_version",
    "serving_version", "retired", "champion_rows", ...}, "evidence_uri", "verdict_uri", "report_path",
    "mlflow_run_id", "retrain_event"}``.

    The verdict fails on:
    - **concept drift**: ``quality_metric`` worse than the reference by more than ``max_quality_drop`` (absolute);
      the reference is ``reference_quality`` (a number for ``quality_metric``, or ``{metric: value}``), else with
      ``reference_from_served_version`` the served version's training-run metrics (``val_auc``, ``val_rmse``,
      ``val_mae``...), else the same metrics computed on ``reference_path`` (a labelled, scored reference window);
    - ``min_quality`` (``{metric: minimum}``) not met; ``max_low_confidence_share`` exceeded;
      ``min_outcome_correlation`` not reached;
    - input that cannot be trusted: columns the model does not know (named), features missing or entirely null,
      fewer than ``min_join_rate`` of the labels joined.
    Those in the first two lines are model problems: with ``emit_retrain_event`` they emit the retraining asset
    event (extra ``{reason, kind: "quality", quality_drop, verdict_uri, ...}``). Input problems fail the verdict
    without a retraining trigger.

    **Verdicts about the model that serves**: labels arrive late, so the rows judged may have been served by a
    version that is no longer champion. The version that served them (``served_version``) is the one of the
    champion variant's rows (``served_by``/``variant`` = ``champion``) or, without that column, the version
    serving most joined rows (from ``model_version``, else the version in ``model_uri``); ``served_versions``
    counts joined rows per version (canary traffic shows as a second version). When it is not ``serving_version``
    (the current champion), the version is **retired**: the verdict is reported as usual (concept drift, reasons)
    with a reason naming both versions, but no retraining event is emitted, since retraining would replace the
    current champion for a problem seen on another model. Rows the current champion served itself (e.g. as the
    canary before its promotion) are judged on their own in ``metrics.champion_rows`` (informative: against the
    same reference, no event). Raises ``MonitoringError`` (never a silent pass) on an empty window, missing
    files (a reference that no longer exists included), no label joining any prediction ("0 of N labels joined:
    check keys/timestamps"), and conflicting labels for one key.

    Quality numbers are scikit-learn's (what Evidently's ``ClassificationPreset`` shows); the HTML report is that
    preset on the joined window (and the reference window when given). Report and ``quality_verdict.json`` go to
    ``report_dir/<dag_id>/<run_id>/<task_id>/`` (a URI: ``report_path``, ``evidence_uri`` and ``verdict_uri`` are
    URIs; inputs are read from paths or URIs through ``mlops_airflow.storage``'s filesystem) and, with
    ``log_to_mlflow``, under ``quality/`` of an MLflow run in ``experiment_name`` tagged ``mlops.kind=quality`` and
    ``mlops.model_name``; a retry reuses the run.

    :param inference_log_path: Parquet of the scored window: a path or a URI (``file://``, ``s3://``; templated).
    :param labels_path: Parquet of the delayed labels, a path or a URI (templated).
    :param report_dir: folder or URI (``s3://...``) for the report and the verdict (templated).
    :param model_name: the monitored model (templated; a templated value needs ``retrain_asset``).
    :param features: the model's input features (templated). None = read from the model's MLflow metadata
        (``features``, written by the training entrypoint) for the ``model_uri`` values in the log.
    :param join_keys: entity key(s) + event timestamp shared by log and labels; None = the model's metadata.
    :param label_column: the label (0/1, a number for a regressor) in the labels file; None = the model's.
    :param task_type: ``binary_classification`` or ``regression``; None = the model's (else classification).
    :param prediction_column: predicted class (0/1) or value in the log.
    :param proba_column: predicted P(label == 1) in the log (classifiers).
    :param confidence_column: top-class probability in the log; computed from ``proba`` when absent.
    :param passthrough_columns: other log columns that are not features (model id, scoring time, ...); columns
        ending in ``_prediction``/``_proba``/``_confidence`` (shadow models' outputs) are accepted too.
    :param reference_path: labelled, scored reference window, a path or a URI (templated).
    :param reference_quality: reference value(s) of the quality metric(s) (templated; number, dict or JSON).
    :param reference_from_served_version: the reference is the served version's training-run metrics.
    :param quality_metric: the metric whose drop means concept drift (one of the task type's); None =
        ``roc_auc`` / ``rmse``.
    :param max_quality_drop: largest allowed absolute drop of ``quality_metric``; None = 0.05 for a classifier,
        10% of the reference for a regressor.
    :param min_quality: absolute floors ``{metric: minimum}`` (``log_loss``, ``rmse``, ``mae``: ceilings).
    :param low_confidence_threshold: a prediction is low-confidence when its top-class probability is below this.
    :param max_low_confidence_share: fail when more of the window is low-confidence (None = track only).
    :param outcome_column: business outcome (e.g. ``revenue_lost``) in the labels or the log; None = none.
    :param min_outcome_correlation: fail when corr(proba, outcome) is below this (None = track only).
    :param min_join_rate: fail when fewer of the labels than this share join a prediction.
    :param fail_on_quality: raise ``MonitoringError`` when the verdict does not pass (no retraining event then).
    :param emit_retrain_event: emit the retraining asset event on a model-quality failure.
    :param retrain_asset: asset URI of the trigger; default ``mlops://monitoring/<model_name>``.
    :param serving_version: the version holding the ``champion`` alias now (templated; ``3``, ``"v3"`` or
        ``models:/<name>/3``). None = read from the registry (``model_name``'s ``champion`` alias) when the
        operator uses MLflow anyway (``log_to_mlflow``); otherwise, or when that fails, unknown: no retired check.
    """

    template_fields: Sequence[str] = (
        "inference_log_path",
        "labels_path",
        "report_dir",
        "reference_path",
        "reference_quality",
        "features",
        "experiment_name",
        "model_name",
        "serving_version",
    )
    ui_color = "#f4a259"

    def __init__(
        self,
        *,
        inference_log_path: str,
        labels_path: str,
        report_dir: str,
        model_name: str | None = None,
        features: list[str] | None = None,
        join_keys: Sequence[str] | None = None,
        label_column: str | None = None,
        task_type: str | None = None,
        prediction_column: str = "prediction",
        proba_column: str = "proba",
        confidence_column: str | None = "confidence",
        passthrough_columns: Sequence[str] = DEFAULT_PASSTHROUGH,
        reference_path: str | None = None,
        reference_quality: float | dict[str, float] | str | None = None,
        reference_from_served_version: bool = False,
        quality_metric: str | None = None,
        max_quality_drop: float | None = None,
        min_quality: dict[str, float] | None = None,
        low_confidence_threshold: float = 0.6,
        max_low_confidence_share: float | None = None,
        outcome_column: str | None = None,
        min_outcome_correlation: float | None = None,
        min_join_rate: float = 0.5,
        mlflow_conn_id: str = "mlflow_default",
        tracking_uri: str | None = None,
        experiment_name: str = "mlops-monitoring",
        log_to_mlflow: bool = True,
        fail_on_quality: bool = False,
        emit_retrain_event: bool = True,
        retrain_asset: str | None = None,
        serving_version: str | int | None = None,
        **kwargs: Any,
    ) -> None:
        task_type = validate_task_type(task_type) if task_type else None
        allowed = quality_metrics(task_type) if task_type else ALL_QUALITY_METRICS
        if quality_metric is not None and quality_metric not in allowed:
            raise ValueError(f"quality_metric must be one of {allowed}, got {quality_metric!r}")
        unknown = sorted(set(min_quality or {}) - set(allowed))
        if unknown:
            raise ValueError(f"min_quality names unknown metrics {unknown}; use {allowed}")
        if reference_path is None and reference_quality is None and not min_quality and not (
            reference_from_served_version
        ):
            raise ValueError(
                "nothing to judge quality against: pass reference_path (a labelled, scored reference window), "
                "reference_quality (e.g. the champion's validation roc_auc), reference_from_served_version=True or "
                "min_quality"
            )
        if not 0 <= min_join_rate <= 1:
            raise ValueError(f"min_join_rate must be in [0, 1], got {min_join_rate}")
        if join_keys is not None and not join_keys:
            raise ValueError("join_keys must name at least one column (or None: the model's metadata)")
        emit = _retrain_outlet(kwargs, model_name, emit_retrain_event, retrain_asset)
        super().__init__(**kwargs)
        self.inference_log_path = inference_log_path
        self.labels_path = labels_path
        self.report_dir = report_dir
        self.model_name = model_name
        self.features = list(features) if isinstance(features, list | tuple) else features
        self.join_keys = None if join_keys is None else list(join_keys)
        self.label_column = label_column
        self.model_task_type = task_type
        self.prediction_column = prediction_column
        self.proba_column = proba_column
        self.confidence_column = confidence_column
        self.passthrough_columns = list(passthrough_columns)
        self.reference_path = reference_path
        self.reference_quality = reference_quality
        self.reference_from_served_version = reference_from_served_version
        self.quality_metric = quality_metric
        self.max_quality_drop = max_quality_drop
        self.min_quality = dict(min_quality or {})
        self.low_confidence_threshold = low_confidence_threshold
        self.max_low_confidence_share = max_low_confidence_share
        self.outcome_column = outcome_column
        self.min_outcome_correlation = min_outcome_correlation
        self.min_join_rate = min_join_rate
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.log_to_mlflow = log_to_mlflow
        self.fail_on_quality = fail_on_quality
        self.emit_retrain_event = emit
        self.retrain_asset = retrain_asset
        self.serving_version = serving_version

    # -- execute -------------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        ident = self._identity(context)
        log_path, labels_path = str(self.inference_log_path), str(self.labels_path)
        reasons: list[str] = []
        model_reasons: list[str] = []

        task_source = self._resolve_task(log_path)
        classifier = is_classification(self.model_task_type)
        metric = self.quality_metric = self.quality_metric or default_quality_metric(self.model_task_type)
        allowed = quality_metrics(self.model_task_type)
        unknown = sorted({metric, *self.min_quality} - set(allowed))
        if unknown:
            raise MonitoringError(f"{unknown} are not quality metrics of a {self.model_task_type} model (use "
                                  f"{allowed}); fix quality_metric/min_quality or task_type")
        if not classifier and self.max_low_confidence_share is not None:
            raise MonitoringError("max_low_confidence_share needs a classifier's probabilities; a regression model "
                                  "has no confidence: leave it unset")
        log_df, features = self._read_log(log_path, reasons)
        labels = self._read_labels(labels_path)
        joined = self._join(log_df, labels, log_path, labels_path, reasons)
        n_joined = len(joined)

        y = joined[self.label_column].astype(int if classifier else float).to_numpy()
        quality = self._quality(joined)
        reference_frame = self._read_reference() if self.reference_path else None
        reference_quality = _parse_reference_quality(self.reference_quality, metric)
        reference_source = "reference_quality"
        row_versions = self._row_versions(joined)
        served_versions, served_version = self._served_versions(joined, row_versions)
        if reference_quality is None and self.reference_from_served_version:
            reference_quality = self._served_reference(served_version, allowed)
            reference_source = f"training run of v{served_version} (val_*)"
        if reference_quality is None and reference_frame is not None:
            reference_quality = self._quality(reference_frame)
            reference_source = f"reference_path {self.reference_path}"

        quality_drop: float | None = None
        concept_drift = False
        current_value = quality.get(metric)
        reference_value = (reference_quality or {}).get(metric)
        max_drop = allowed_drop(self.model_task_type, self.max_quality_drop, reference_value)
        if reference_value is not None:
            if current_value is None:
                reasons.append(
                    f"{metric} cannot be computed on the {n_joined} joined rows (labels {sorted(set(y.tolist()))}: "
                    "one class only?); quality unknown, concept drift not ruled out"
                )
            else:
                quality_drop = _quality_drop(metric, float(reference_value), float(current_value))
                if quality_drop > max_drop:
                    concept_drift = True
                    moved = "dropped" if classifier or metric == "r2" else "rose"
                    reason = (
                        f"concept drift: {metric} {moved} {quality_drop:.3f} ({float(reference_value):.3f} -> "
                        f"{float(current_value):.3f}) > allowed {max_drop:.3f} on {n_joined} labelled "
                        f"predictions (reference: {reference_source})"
                    )
                    reasons.append(reason)
                    model_reasons.append(reason)
        floors = floor_reasons(quality, self.min_quality, n_joined)
        reasons += floors
        model_reasons += floors

        confidence = self._confidence(log_df, reference_frame, classifier, reasons, model_reasons)
        share = confidence["low_confidence_share"]
        outcome = self._outcome(joined, classifier, reasons, model_reasons)

        versions = sorted(
            {str(v) for col in ("model_version", "model_uri") if col in log_df.columns for v in log_df[col].dropna()}
        )
        # Which version served the labelled rows (above), and is it still the champion?
        serving_version = self._serving_version()
        retired, champion_rows = self._retired(joined, row_versions, served_version, serving_version,
                                               reference_value, concept_drift, model_reasons, reasons)
        verdict: dict[str, Any] = {
            "passed": not reasons,
            "reasons": reasons,
            "concept_drift": concept_drift,
            "quality_drop": None if quality_drop is None else round(quality_drop, 6),
            "metrics": {
                "quality": quality,
                "reference_quality": reference_quality,
                "reference_source": reference_source if reference_quality else None,
                "quality_metric": metric,
                "task_type": self.model_task_type,
                "task_source": task_source,
                "quality_drop": None if quality_drop is None else round(quality_drop, 6),
                "max_quality_drop": None if max_drop is None else round(max_drop, 6),
                "confidence": {**confidence, "threshold": self.low_confidence_threshold} if classifier else None,
                "outcome": outcome,
                "rows": {
                    "predictions": len(log_df),
                    "labels": len(labels),
                    "joined": n_joined,
                    "join_rate": round(n_joined / len(labels), 6),
                    "label_coverage": round(n_joined / len(log_df), 6),
                    **({"positives": int(y.sum())} if classifier else {}),
                },
                "features": features,
                "model_versions": versions[:20],
                "served_versions": served_versions,
                "served_version": served_version,
                "serving_version": serving_version,
                "retired": retired,
                "champion_rows": champion_rows,
            },
            "engine": "sklearn+evidently",
            "mlflow_run_id": None,
        }
        with self._evidence(ident, QUALITY_REPORT_FILE, QUALITY_VERDICT_FILE, QUALITY_ARTIFACT_DIR) as files:
            verdict["evidence_uri"] = verdict["report_path"] = files.report_uri
            verdict["verdict_uri"] = files.verdict_uri
            self._report(files.report_path, joined, reference_frame, verdict)
            files.put_report()
            verdict["retrain_event"] = None
            if model_reasons and self.emit_retrain_event and not retired:
                from mlops_airflow.monitoring.retrain import retrain_event_extra

                verdict["retrain_event"] = retrain_event_extra(
                    kind=QUALITY_RUN_KIND, reason="; ".join(model_reasons), verdict_uri=verdict["verdict_uri"],
                    quality_drop=quality_drop, quality_metric=metric, model_name=self.model_name,
                    source=f"{ident['dag_id']}/{ident['run_id']}/{ident['task_id']}",
                )
            if self.log_to_mlflow:
                self._log_quality(ident, verdict, files, reference_quality, confidence, outcome, quality_drop,
                                  max_drop)
            files.put_verdict(verdict)

        if verdict["retrain_event"] is not None:
            self._emit_retrain(context, verdict["retrain_event"])

        shown = "n/a" if current_value is None else f"{current_value:.3f}"
        ref_shown = "n/a" if reference_value is None else f"{float(reference_value):.3f}"
        drop_shown = "n/a" if quality_drop is None else f"{quality_drop:.3f}"
        fields = {  # a dict: the metric's name is one of the keys
            "passed": verdict["passed"], metric: shown, "reference": ref_shown, "drop": drop_shown,
            "concept_drift": concept_drift, "task_type": self.model_task_type, "joined": f"{n_joined}/{len(labels)}",
            "low_confidence": "n/a" if share is None else f"{share:.2f}",
            "served_versions": json.dumps(served_versions, sort_keys=True), "served_version": served_version,
            "serving_version": serving_version, "retired": retired,
            "retrain_event": "yes" if verdict["retrain_event"] else "no", "report": verdict["evidence_uri"],
        }
        for reason in reasons:
            self.log.info("reason: %s", reason)
        summary = log_summary(self.log, "quality", **fields)
        if self.fail_on_quality and not verdict["passed"]:
            raise MonitoringError(
                f"{summary}; reasons: {'; '.join(reasons)}. Next: open the report; on concept drift retrain on "
                "recent labelled data"
            )
        return verdict
