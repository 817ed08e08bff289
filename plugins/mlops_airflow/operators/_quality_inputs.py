"""What ``QualityCheckOperator`` reads and checks before it judges: the inference log, the delayed labels, their
join, the reference window, which model versions served the labelled rows, and the Evidently report.

Kept apart from the operator so its ``execute`` reads as the verdict it builds; a mixin because every step
reports through the operator's parameters (columns, keys, thresholds) and its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.quality_stats import _quality_drop, allowed_drop, task_quality
from mlops_airflow.operators._monitoring import _open_parquet, _read_frame
from mlops_airflow.task_types import is_classification

QUALITY_REPORT_FILE = "quality.html"
QUALITY_VERDICT_FILE = "quality_verdict.json"
QUALITY_ARTIFACT_DIR = "quality"
QUALITY_RUN_KIND = "quality"
#: Inference-log columns that are neither features nor model outputs, accepted without being "unknown".
DEFAULT_PASSTHROUGH = (
    "model_uri",
    "model_version",
    "model_name",
    "model_alias",
    "served_by",
    "variant",
    "scored_at",
    "run_id",
)
#: Per-model output columns of shadow/challenger scoring (``<alias>_prediction``, ``<alias>_proba``).
OUTPUT_SUFFIXES = ("_prediction", "_proba", "_confidence")
#: Inference-log columns naming the variant that served a row (``BatchScoringOperator`` writes ``served_by``).
VARIANT_COLUMNS = ("served_by", "variant")
#: The registry alias of the model that serves (the one a retraining replaces).
CHAMPION_ALIAS = "champion"


def _version_of(value: Any) -> str | None:
    """A model version as text: ``3``, ``"v3"`` and ``models:/<name>/3`` -> ``"3"``; other URIs stay whole."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if text in ("", "None", "nan"):
        return None
    if text.startswith("models:/"):
        last = text.rstrip("/").rsplit("/", 1)[-1]
        return last if last.isdigit() else text
    if text[:1] in ("v", "V") and text[1:].isdigit():
        return text[1:]
    return text


def _version_sort_key(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _parse_reference_quality(value: Any, metric: str) -> dict[str, float] | None:
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, int | float):
        return {metric: float(value)}
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if v is not None}
    text = str(value).strip()
    try:
        return {metric: float(text)}
    except ValueError:
        pass
    from mlops_airflow.operators._common import as_dict

    return {str(k): float(v) for k, v in as_dict(text, "reference_quality").items() if v is not None}


def _time_range(series: Any) -> str:
    try:
        return f"{series.min()} .. {series.max()}"
    except Exception:  # noqa: BLE001 - only for a message
        return "?"


def _align_keys(left: Any, right: Any, keys: Sequence[str]) -> None:
    """Make join-key dtypes comparable in place: timestamps to UTC microseconds, numbers to one numeric type."""
    import pandas as pd
    from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

    for key in keys:
        a, b = left[key], right[key]
        if is_datetime64_any_dtype(a) or is_datetime64_any_dtype(b):
            try:
                left[key] = pd.to_datetime(a, utc=True).astype("datetime64[us, UTC]")
                right[key] = pd.to_datetime(b, utc=True).astype("datetime64[us, UTC]")
            except (ValueError, TypeError) as err:
                raise MonitoringError(
                    f"join key {key!r} is {a.dtype} in the inference log but {b.dtype} in the labels and cannot be "
                    f"read as timestamps: {err}; write both as timestamps"
                ) from err
        elif is_numeric_dtype(a) and is_numeric_dtype(b) and a.dtype != b.dtype:
            left[key] = a.astype("float64")
            right[key] = b.astype("float64")
        elif is_numeric_dtype(a) != is_numeric_dtype(b):
            raise MonitoringError(
                f"join key {key!r} is {a.dtype} in the inference log but {b.dtype} in the labels; write both with "
                "the same type"
            )


class _QualityInputsMixin:
    """Input reading and the serving-version lookup of ``QualityCheckOperator`` (see the operator's docs)."""

    join_keys: list[str]
    label_column: str
    model_task_type: str
    prediction_column: str
    proba_column: str
    confidence_column: str | None
    passthrough_columns: list[str]
    outcome_column: str | None
    features: Any
    model_name: str | None
    reference_path: str | None
    min_join_rate: float
    quality_metric: str
    max_quality_drop: float | None
    serving_version: Any
    log_to_mlflow: bool
    hook: Any
    log: Any

    # -- inputs --------------------------------------------------------------------------------------------------

    def _outputs(self) -> list[str]:
        """The model outputs the log must have: ``prediction`` (+ ``proba`` for a classifier)."""
        classifier = is_classification(self.model_task_type)
        return [self.prediction_column, self.proba_column] if classifier else [self.prediction_column]

    def _read_log(self, path: str, reasons: list[str]) -> tuple[Any, list[str]]:
        """The inference log (needed columns only) and the model's features; input problems go to ``reasons``."""
        hint = "check that batch scoring wrote this window's inference log at inference_log_path"
        dataset = _open_parquet(path, "inference log", hint)
        names = list(dataset.schema.names)
        required = [*self.join_keys, *self._outputs()]
        missing = [c for c in required if c not in names]
        if missing:
            raise MonitoringError(
                f"inference log {path!r} lacks columns {missing} (has {names}); batch scoring must write the join "
                f"keys {self.join_keys} and the {self.model_task_type} model's outputs {self._outputs()}"
            )
        if dataset.count_rows() == 0:
            raise MonitoringError(
                f"inference log {path!r} has no rows: nothing was scored in this window, so there is no quality "
                "to check; check the scoring step (an empty window is never a pass)"
            )
        model_column = next((c for c in ("model_uri", "model_version") if c in names), None)
        features = self._features(path, dataset, model_column)
        outputs = {self.prediction_column, self.proba_column, self.confidence_column}
        known = set(features) | set(self.join_keys) | outputs | set(self.passthrough_columns)
        known |= {self.label_column} | ({self.outcome_column} if self.outcome_column else set())
        unknown = [c for c in names if c not in known and not c.endswith(OUTPUT_SUFFIXES)]
        if unknown:
            reasons.append(
                f"the inference log has columns the model does not know: {unknown} (model features: {features}); "
                "the scoring input changed: align the feature pipeline with the model, or retrain with them "
                "(list non-feature columns in passthrough_columns)"
            )
        absent = [c for c in features if c not in names]
        if absent:
            reasons.append(
                f"features {absent} of the model are missing from the inference log {path!r}: predictions were "
                "not made on the model's inputs; fix the scoring step"
            )
        read = [c for c in dict.fromkeys([*required, *[f for f in features if f in names]])]
        for extra in (self.confidence_column, model_column, self.outcome_column, "model_version", *VARIANT_COLUMNS):
            if extra and extra in names and extra not in read:
                read.append(extra)
        frame = _read_frame(path, "inference log", hint, read)
        for col in features:
            if col in frame.columns and frame[col].isna().all():
                reasons.append(
                    f"feature {col!r} is entirely null in the inference log ({len(frame)} rows): the model scored "
                    "without it; fix the upstream feature pipeline"
                )
        output = self._outputs()[-1]  # proba of a classifier, prediction of a regressor
        null_output = int(frame[output].isna().sum())
        if null_output:
            reasons.append(f"{null_output} of {len(frame)} predictions have no value in {output!r}")
            frame = frame[frame[output].notna()]
            if frame.empty:
                raise MonitoringError(f"no prediction in {path!r} has a value in {output!r}; check the scoring step")
        return frame, features

    def _quality(self, frame: Any) -> dict[str, float | None]:
        """The task type's quality metrics on labelled, scored rows."""
        classifier = is_classification(self.model_task_type)
        y = frame[self.label_column].astype(int if classifier else float).to_numpy()
        proba = frame[self.proba_column].to_numpy() if classifier else None
        return task_quality(self.model_task_type, y, frame[self.prediction_column].to_numpy(), proba)

    # -- serving versions ----------------------------------------------------------------------------------------

    @staticmethod
    def _row_versions(frame: Any) -> Any | None:
        """Each row's model version (``model_version``, else parsed from ``model_uri``); None without either."""
        found = None
        for col in ("model_version", "model_uri"):
            if col in frame.columns:
                parsed = frame[col].map(_version_of)
                found = parsed if found is None else found.where(found.notna(), parsed)
        return found

    def _served_versions(self, joined: Any, row_versions: Any | None) -> tuple[dict[str, int], str | None]:
        """Joined rows per version, and the version that served them: the champion variant's, else the majority."""
        if row_versions is None or row_versions.isna().all():
            return {}, None
        counts = {str(k): int(v) for k, v in row_versions.value_counts(dropna=True).items()}
        served = {k: counts[k] for k in sorted(counts, key=_version_sort_key)}
        basis = counts
        variant = next((c for c in VARIANT_COLUMNS if c in joined.columns), None)
        if variant is not None:
            mask = (joined[variant].astype(str) == CHAMPION_ALIAS) & row_versions.notna()
            if mask.any():
                basis = {str(k): int(v) for k, v in row_versions[mask].value_counts().items()}
        primary = max(basis.items(), key=lambda kv: (kv[1], _version_sort_key(kv[0])))[0]
        return served, primary

    def _serving_version(self) -> str | None:
        """The version holding the champion alias now: ``serving_version``, else the registry's (MLflow in use)."""
        given = _version_of(self.serving_version)
        if given is not None or not (self.log_to_mlflow and self.model_name):
            return given
        unknown = ("the current %s of %s is unknown (%s): the labels are judged without checking that the version "
                   "that served them still serves; pass serving_version")
        try:
            self.hook.ensure_reachable(attempts=1)
            mv = self.hook.get_version_by_alias(str(self.model_name), CHAMPION_ALIAS)
        except Exception as err:  # noqa: BLE001 - unknown is the old behaviour, never a failure
            self.log.warning(unknown, CHAMPION_ALIAS, self.model_name, f"{type(err).__name__}: {err}")
            return None
        if mv is None:
            self.log.warning(unknown, CHAMPION_ALIAS, self.model_name, "no such alias")
            return None
        return _version_of(mv.version)

    def _retired(self, joined: Any, row_versions: Any, served_version: str | None, serving_version: str | None,
                 reference_value: Any, concept_drift: bool, model_reasons: list[str],
                 reasons: list[str]) -> tuple[bool, dict[str, Any] | None]:
        """Whether the labelled rows were served by a version that no longer serves (then no retraining event), and
        the informative quality of the rows the current champion served itself."""
        retired = served_version is not None and serving_version is not None and served_version != serving_version
        if not retired:
            return False, None
        champion_rows = self._champion_rows(joined, row_versions, str(serving_version), reference_value)
        judged = "concept drift" if concept_drift else ("the quality failure" if model_reasons else "quality")
        notice = (
            f"labels of traffic served by v{served_version}, which is no longer {CHAMPION_ALIAS} "
            f"({CHAMPION_ALIAS} is v{serving_version} now): {judged} reported for v{served_version}, "
            f"no retraining event for v{serving_version}"
        )
        if model_reasons:
            reasons.append(notice)  # the verdict failed already; this says why no retraining follows
        self.log.info("%s", notice)
        if champion_rows is not None:
            self.log.info(
                "informative: the %d joined rows served by the current %s v%s (e.g. as canary): %s=%s, drop %s, "
                "concept drift on them alone=%s (against the same reference; no retraining event)",
                champion_rows["rows"], CHAMPION_ALIAS, serving_version, self.quality_metric,
                champion_rows["quality"].get(self.quality_metric), champion_rows["quality_drop"],
                champion_rows["concept_drift"],
            )
        return True, champion_rows

    def _champion_rows(
        self, joined: Any, row_versions: Any, serving_version: str, reference_value: Any
    ) -> dict[str, Any] | None:
        """Quality of the rows the current champion served itself (informative; None when it served none)."""
        rows = joined[(row_versions == serving_version).to_numpy()]
        if rows.empty:
            return None
        quality = self._quality(rows)
        value = quality.get(self.quality_metric)
        drop = None
        if value is not None and reference_value is not None:
            drop = _quality_drop(self.quality_metric, float(reference_value), float(value))
        return {
            "version": serving_version,
            "rows": len(rows),
            "quality": quality,
            "quality_drop": None if drop is None else round(drop, 6),
            "concept_drift": drop is not None and drop > (allowed_drop(self.model_task_type, self.max_quality_drop,
                                                                       reference_value) or 0.0),
        }

    def _read_labels(self, path: str) -> Any:
        hint = "the delayed labels may not have landed yet: check the labelling step, or run later"
        dataset = _open_parquet(path, "labels", hint)
        names = list(dataset.schema.names)
        needed = [*self.join_keys, self.label_column]
        missing = [c for c in needed if c not in names]
        if missing:
            raise MonitoringError(f"labels {path!r} lack columns {missing} (have {names}); {hint}")
        read = list(needed)
        if self.outcome_column and self.outcome_column in names:
            read.append(self.outcome_column)
        labels = _read_frame(path, "labels", hint, read)
        if labels.empty:
            raise MonitoringError(f"labels {path!r} have no rows: no label arrived for this window; {hint}")
        null = int(labels[self.label_column].isna().sum())
        if null:
            self.log.warning("%d of %d labels are null and are left out", null, len(labels))
            labels = labels[labels[self.label_column].notna()]
            if labels.empty:
                raise MonitoringError(f"every label in {path!r} is null; {hint}")
        if is_classification(self.model_task_type):
            values = set(labels[self.label_column].unique().tolist())
            if not values <= {0, 1}:
                raise MonitoringError(
                    f"labels {path!r} column {self.label_column!r} holds {sorted(values, key=str)[:10]}; binary 0/1 "
                    "labels expected: map the labels to 0/1 in the label feed, point label_column at the binary "
                    "label, or pass task_type='regression' for a regressor"
                )
        else:
            from pandas.api.types import is_bool_dtype, is_numeric_dtype

            column = labels[self.label_column]
            if not is_numeric_dtype(column) or is_bool_dtype(column):
                raise MonitoringError(
                    f"labels {path!r} column {self.label_column!r} is {column.dtype}; a regressor's labels are "
                    "numbers: fix the label feed or label_column"
                )
        dup = labels.duplicated(subset=self.join_keys, keep=False)
        if dup.any():
            conflicting = labels[dup].groupby(self.join_keys, dropna=False)[self.label_column].nunique()
            if (conflicting > 1).any():
                raise MonitoringError(
                    f"labels {path!r} give different labels to {int((conflicting > 1).sum())} keys "
                    f"({self.join_keys}); deduplicate them upstream"
                )
            labels = labels.drop_duplicates(subset=self.join_keys)
        return labels

    def _join(self, log_df: Any, labels: Any, log_path: str, labels_path: str, reasons: list[str]) -> Any:
        keys = self.join_keys
        left = log_df.copy()
        right = labels.copy()
        _align_keys(left, right, keys)
        if self.outcome_column and self.outcome_column in left.columns and self.outcome_column in right.columns:
            left = left.drop(columns=[self.outcome_column])
        try:
            joined = left.merge(right, on=keys, how="inner", validate="many_to_one")
        except Exception as err:
            raise MonitoringError(
                f"cannot join labels to the inference log on {keys}: {err}; check that the keys have the same "
                "types on both sides and identify one prediction each (deduplicate the inference log)"
            ) from err
        if joined.empty:
            ts = next((k for k in keys if "time" in k or "date" in k), None)
            detail = f" (label {ts} {_time_range(right[ts])}; prediction {ts} {_time_range(left[ts])})" if ts else ""
            raise MonitoringError(
                f"0 of {len(labels)} labels joined to the {len(log_df)} predictions on {keys}: check keys/timestamps"
                f"{detail}. Labels {labels_path!r}, inference log {log_path!r}"
            )
        if self.outcome_column and self.outcome_column not in joined.columns:
            raise MonitoringError(
                f"outcome column {self.outcome_column!r} is in neither the labels nor the inference log; fix "
                "outcome_column"
            )
        rate = len(joined) / len(labels)
        if rate < self.min_join_rate:
            reasons.append(
                f"only {len(joined)} of {len(labels)} labels joined ({rate:.0%} < {self.min_join_rate:.0%}) on "
                f"{keys}: quality is measured on part of the window; check keys/timestamps"
            )
        return joined

    def _read_reference(self) -> Any:
        path = str(self.reference_path)
        hint = "point reference_path at a labelled, scored reference window (e.g. the validation set)"
        gone = (
            f"reference dataset {path!r} no longer exists; re-create the scored reference window (e.g. score the "
            "validation set with the champion) or pass reference_quality (e.g. the champion's validation metric)"
        )
        columns = [self.label_column, *self._outputs()]
        dataset = _open_parquet(path, "reference", hint, missing=gone)
        try:
            frame = dataset.to_table().to_pandas()
        except Exception as err:
            raise MonitoringError(f"cannot read the reference {path!r}: {err}; {hint}") from err
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise MonitoringError(f"reference {path!r} lacks columns {missing} (has {list(frame.columns)}); {hint}")
        frame = frame[columns].dropna()
        if frame.empty:
            raise MonitoringError(f"reference {path!r} has no labelled, scored row; {hint}")
        return frame
