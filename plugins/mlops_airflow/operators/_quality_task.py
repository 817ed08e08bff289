"""What ``QualityCheckOperator`` needs to know about the model before it reads its inputs: the task type, the
label, the join keys and the features (the parameters, else the models' MLflow metadata and version tags), the
served version's validation metrics as the reference, and the Evidently report of its task type.

A mixin beside ``_quality_inputs`` (the operator's parameters and log are its state); the statistics are in
``mlops_airflow.monitoring.quality_stats``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.operators._monitoring import _open_parquet, _placeholder_report, _with_banner
from mlops_airflow.task_types import is_classification, validate_task_type

#: The event-time column of the join keys read from a model's metadata (``entity_columns`` + this).
TIMESTAMP_COLUMN = "event_timestamp"
_TASK_KEYS = ("task_type", "label", "entity_columns", "features")


def _version_from_uri(uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of ``models:/<name>/<version>``; None for any other URI."""
    if uri.startswith("models:/"):
        name, _, version = uri.removeprefix("models:/").rstrip("/").rpartition("/")
        if name and version.isdigit():
            return name, version
    return None


class _QualityTaskMixin:
    """Task type, label, keys and features of ``QualityCheckOperator`` (see the operator's docs)."""

    model_task_type: str | None
    label_column: str | None
    join_keys: list[str] | None
    features: Any
    model_name: str | None
    quality_metric: str
    max_quality_drop: float | None
    prediction_column: str
    proba_column: str
    low_confidence_threshold: float
    max_low_confidence_share: float | None
    outcome_column: str | None
    min_outcome_correlation: float | None
    hook: Any
    log: Any

    def _resolve_task(self, path: str) -> dict[str, str]:
        """Fill ``task_type``, ``label_column``, ``join_keys`` and ``features`` the parameters left unset.

        The models in the log (``model_uri``, or ``model_version`` with ``model_name``) are asked only when a
        label, key or feature is missing; the task type alone defaults to binary classification. Returns where
        each value came from.
        """
        source = {key: "parameter" for key in ("task_type", "label", "join_keys", "features")}
        if self.label_column and self.join_keys and self.features is not None:
            if not self.model_task_type:
                source["task_type"] = "default (binary_classification)"
            self.model_task_type = validate_task_type(self.model_task_type)
            return source
        uris = self._model_uris(path)
        if not uris:
            raise MonitoringError(
                f"the inference log {path!r} names no model (model_uri, or model_version with model_name) to read "
                f"{self._missing()} from; pass {', '.join(self._missing())}"
            )
        meta = self._models_metadata(uris)
        if not self.model_task_type:
            source["task_type"] = "model metadata" if meta.get("task_type") else "default (binary_classification)"
        self.model_task_type = validate_task_type(self.model_task_type or meta.get("task_type"))
        if not self.label_column:
            self.label_column, source["label"] = meta.get("label"), "model metadata"
        if not self.join_keys and meta.get("entity_columns"):
            self.join_keys = [*meta["entity_columns"], TIMESTAMP_COLUMN]
            source["join_keys"] = "model metadata (entity_columns + event_timestamp)"
        if self.features is None and meta.get("features"):
            self.features, source["features"] = list(meta["features"]), "model metadata"
        still = self._missing()
        if still:
            raise MonitoringError(
                f"{', '.join(still)} not given and the models {uris} do not name them in their MLflow metadata "
                f"(label, entity_columns, features) nor tags (mlops.label); pass {', '.join(still)}"
            )
        return source

    def _missing(self) -> list[str]:
        names = {"label_column": self.label_column, "join_keys": self.join_keys}
        out = [name for name, value in names.items() if not value]
        return [*out, "features=[...]"] if self.features is None else out

    def _model_uris(self, path: str) -> list[str]:
        dataset = _open_parquet(path, "inference log", "check that batch scoring wrote this window's inference log")
        names = list(dataset.schema.names)
        column = next((c for c in ("model_uri", "model_version") if c in names), None)
        if column is None or (column == "model_version" and not self.model_name):
            return []
        values = sorted({str(u) for u in dataset.to_table(columns=[column]).column(0).to_pylist() if u})
        return [f"models:/{self.model_name}/{v}" for v in values] if column == "model_version" else values

    def _features(self, path: str, dataset: Any, model_column: str | None) -> list[str]:
        """The model's input features: ``features`` (a list, or templated JSON/comma-separated text)."""
        features = self.features
        if features is None:
            self._resolve_task(path)
            features = self.features
        if isinstance(features, str):  # rendered from a template
            text = features.strip()
            features = json.loads(text) if text.startswith("[") else [f.strip() for f in text.split(",")]
        return [str(f) for f in features if str(f)]

    def _models_metadata(self, model_uris: list[str]) -> dict[str, Any]:
        """What the models in the window predict (their tags, else their MLmodel metadata); all must agree."""
        from mlops_airflow.registry.tags import model_metadata, model_task

        found: dict[str, dict[str, Any]] = {}
        tracking_uri = self.hook.settings.tracking_uri
        try:
            for uri in model_uris[:5]:
                named = _version_from_uri(uri)
                if named is not None:
                    info = model_task(self.hook, named[0], named[1], tracking_uri)
                else:
                    info = model_metadata(tracking_uri, uri)
                found[uri] = {k: info.get(k) for k in _TASK_KEYS}
        except Exception as err:
            raise MonitoringError(
                f"cannot read what the models {model_uris} predict from MLflow ({type(err).__name__}: {err}); pass "
                f"task_type, label_column, join_keys and features=[...]"
            ) from err
        merged: dict[str, Any] = {}
        for key in _TASK_KEYS:
            values = {json.dumps(v) for v in (m[key] for m in found.values()) if v}
            if len(values) > 1:
                raise MonitoringError(f"the models in the window disagree on {key}: {found}; pass it explicitly")
            merged[key] = json.loads(values.pop()) if values else None
        return merged

    def _served_reference(self, version: str | None, metrics: tuple[str, ...]) -> dict[str, float]:
        """The validation metrics (``val_auc``, ``val_rmse``, ``val_mae``...) of the training run of ``version``."""
        from mlops_airflow.monitoring.quality_stats import reference_from_run

        if not version or not version.isdigit() or not self.model_name:
            raise MonitoringError(
                f"reference_from_served_version needs the served version (got {version!r}) and model_name: the log "
                "must name model_version or model_uri; or pass reference_quality"
            )
        try:
            run_metrics = self.hook.version_run(str(self.model_name), version).data.metrics
        except Exception as err:
            raise MonitoringError(
                f"cannot read the training run of {self.model_name} v{version} ({type(err).__name__}: {err}); pass "
                "reference_quality"
            ) from err
        found = reference_from_run(run_metrics, metrics)
        if self.quality_metric not in found:
            raise MonitoringError(
                f"the training run of {self.model_name} v{version} logged no val_{self.quality_metric} (it logged "
                f"{sorted(run_metrics)}); pass reference_quality, or log it in the training entrypoint"
            )
        return found

    def _log_quality(self, ident: dict[str, Any], verdict: dict[str, Any], files: Any,
                     reference_quality: dict[str, float] | None, confidence: dict[str, Any], outcome: Any,
                     quality_drop: float | None, max_drop: float | None) -> None:
        """The verdict, report and flat metrics on the quality MLflow run (a retry reuses it)."""
        from mlops_airflow.operators._quality_inputs import QUALITY_REPORT_FILE, QUALITY_RUN_KIND

        quality = verdict["metrics"]["quality"]
        flat: dict[str, float] = {k: v for k, v in quality.items() if v is not None}
        for k, v in (reference_quality or {}).items():
            flat[f"reference_{k}"] = v
        flat.update({k: v for k, v in confidence.items() if v is not None})
        flat.update({k: v for k, v in (outcome or {}).items() if v is not None})
        flat["join_rate"] = verdict["metrics"]["rows"]["join_rate"]
        flat["labelled_rows"] = float(verdict["metrics"]["rows"]["joined"])
        if quality_drop is not None:
            flat["quality_drop"] = quality_drop
        self._log_run(QUALITY_RUN_KIND, ident, verdict, files, metrics=flat, tags={  # type: ignore[attr-defined]
            "mlops.report_artifact": f"{files.artifact_dir}/{QUALITY_REPORT_FILE}",
            "mlops.quality_metric": self.quality_metric,
            "mlops.task_type": str(self.model_task_type),
            "mlops.max_quality_drop": str(max_drop),
            "mlops.concept_drift": str(verdict["concept_drift"]).lower(),
        })

    def _confidence(self, log_df: Any, reference_frame: Any | None, classifier: bool, reasons: list[str],
                    model_reasons: list[str]) -> dict[str, Any]:
        """A classifier's confidence on the window (and its drop from the reference window); too many
        low-confidence predictions are a model reason."""
        from mlops_airflow.monitoring.quality_stats import confidence_stats

        threshold = self.low_confidence_threshold
        confidence = (confidence_stats(log_df[self.proba_column].to_numpy(), threshold)
                      if classifier else {"mean_confidence": None, "low_confidence_share": None})
        if reference_frame is not None and classifier:
            ref_conf = confidence_stats(reference_frame[self.proba_column].to_numpy(), threshold)
            confidence["reference_mean_confidence"] = ref_conf["mean_confidence"]
            confidence["confidence_drop"] = ref_conf["mean_confidence"] - confidence["mean_confidence"]
        share, allowed = confidence["low_confidence_share"], self.max_low_confidence_share
        if share is not None and allowed is not None and share > allowed:
            reason = (f"low confidence: {share:.1%} of {len(log_df)} predictions have top-class probability < "
                      f"{threshold:.2f} (allowed {allowed:.1%})")
            reasons.append(reason)
            model_reasons.append(reason)
        return confidence

    def _outcome(self, joined: Any, classifier: bool, reasons: list[str],
                 model_reasons: list[str]) -> dict[str, Any] | None:
        """The link to the business outcome (``outcome_column``); a correlation below the minimum is a model
        reason. None without an outcome column."""
        from mlops_airflow.monitoring.quality_stats import outcome_stats

        if not self.outcome_column:
            return None
        score = self.proba_column if classifier else self.prediction_column
        outcome = outcome_stats(
            joined[score].to_numpy(),
            joined[self.prediction_column].to_numpy() if classifier else None,
            joined[self.outcome_column].to_numpy(),
        )
        corr, minimum = outcome["outcome_correlation"], self.min_outcome_correlation
        if minimum is not None and (corr is None or corr < minimum):
            shown = "n/a (constant or too few rows)" if corr is None else f"{corr:.3f}"
            reason = (f"business outcome: corr({score}, {self.outcome_column}) {shown} < required {minimum:.3f}: "
                      "predictions no longer track the outcome")
            reasons.append(reason)
            model_reasons.append(reason)
        return outcome

    # -- report --------------------------------------------------------------------------------------------------

    def _report(self, report_path: Path, joined: Any, reference: Any | None, verdict: dict[str, Any]) -> None:
        """Evidently's ClassificationPreset (RegressionPreset for a regressor) on the joined window; a placeholder
        (never a failure) when it cannot."""
        classifier = is_classification(self.model_task_type)
        label, pred = str(self.label_column), self.prediction_column
        cols = [label, pred, self.proba_column] if classifier else [label, pred]
        try:
            from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
            from evidently.presets import ClassificationPreset, RegressionPreset

            if classifier:
                definition = DataDefinition(classification=[BinaryClassification(
                    target=label, prediction_labels=pred, prediction_probas=self.proba_column, pos_label=1)])
            else:
                definition = DataDefinition(regression=[Regression(target=label, prediction=pred)],
                                            numerical_columns=[label, pred])

            def dataset(frame: Any) -> Any:
                data = frame[cols].copy()
                kind = int if classifier else float
                data[label], data[pred] = data[label].astype(kind), data[pred].astype(kind)
                return Dataset.from_pandas(data, data_definition=definition)

            preset = ClassificationPreset() if classifier else RegressionPreset()
            snapshot = Report([preset]).run(dataset(joined), dataset(reference) if reference is not None else None)
            snapshot.save_html(str(report_path))
        except Exception as err:  # noqa: BLE001 - the verdict stands without the picture
            self.log.warning("the Evidently %s report failed (%s); writing a placeholder",
                             "classification" if classifier else "regression", err)
            _placeholder_report(report_path, "Quality: report not rendered", [str(err), *verdict["reasons"]])
            return
        q, metric = verdict["metrics"]["quality"], verdict["metrics"]["quality_metric"]
        _with_banner(
            report_path,
            [
                f"Verdict: passed={verdict['passed']}, concept drift={verdict['concept_drift']}, "
                f"{metric} drop {verdict['quality_drop']} (allowed {verdict['metrics']['max_quality_drop']}); "
                f"{metric}={q.get(metric)}.",
                *verdict["reasons"],
                f"Rows: {verdict['metrics']['rows']}.",
            ],
        )
