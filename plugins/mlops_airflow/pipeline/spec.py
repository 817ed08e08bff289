"""``ModelSpec``: the small, typed description of one model that the pipeline factories build a loop from.

No Airflow import (a spec is plain data, checked when it is made): a wrong field fails at DAG parse with an error
that names the field and what to pass instead, before any task runs. What only the data can tell (a misspelled
column, a feature service the Feast registry does not know) is checked by the first task that reads the data
(``land_batch``), before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_airflow.task_types import HOLDOUT_METRICS, validate_task_type

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class SpecError(ValueError):
    """A ``ModelSpec`` field is invalid; the message names the field and the fix."""


Source = str | Callable[..., Any]


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def source_kind(value: Source, field_name: str = "source") -> str:
    """``callable`` (a function), ``ref`` (``"path/to/file.py:function"`` or ``"package.module:function"``) or
    ``uri`` (a path/URI template such as ``"s3://bucket/{ds}.parquet"``); :class:`SpecError` otherwise."""
    if callable(value):
        return "callable"
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            f"ModelSpec.{field_name}={value!r}: pass a function (day, **params) -> DataFrame, "
            "'path/to/file.py:function', 'package.module:function', or a URI template like 's3://bucket/{ds}.parquet'"
        )
    if "://" in value or "{" in value or value.endswith((".parquet", ".csv")):
        return "uri"
    target, sep, func = value.rpartition(":")
    if not sep or not target or not func.isidentifier():
        raise SpecError(
            f"ModelSpec.{field_name}={value!r} is neither 'file.py:function' / 'module:function' nor a URI template "
            "with {ds} (e.g. 'file:///data/landing/{ds}.parquet'); fix the reference"
        )
    if not target.endswith(".py") and not _IDENT.match(target):
        raise SpecError(
            f"ModelSpec.{field_name}={value!r}: {target!r} is not a .py file or a dotted module name; write "
            "'path/to/file.py:function' or 'package.module:function'"
        )
    return "ref"


def _strings(value: Any, field_name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    items = tuple(value or ())
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad or (not items and not allow_empty):
        raise SpecError(f"ModelSpec.{field_name}={value!r}: pass a non-empty list of column names")
    dups = sorted({v for v in items if items.count(v) > 1})
    if dups:
        raise SpecError(f"ModelSpec.{field_name} names {dups} more than once; list each column once")
    return items


@dataclass(frozen=True)
class ModelSpec:
    """One model's loop: its data, features, training code, thresholds and monitoring.

    :param name: registered model name in MLflow (also the MLflow experiment unless ``experiment_name``).
    :param label: the label column of the batches and of the training set.
    :param entity_columns: the key columns of a row (with ``timestamp_column``: one row per entity and time).
    :param source: where a day's batch comes from: a function ``(day: date, **source_params) -> DataFrame``,
        ``"path/to/file.py:function"`` (relative paths: against ``[mlops] project_root``), ``"module:function"``,
        or a URI template (``{ds}``, ``{ds_nodash}``, ``{yyyy}``, ``{mm}``, ``{dd}``) such as
        ``"s3://bucket/events/{ds}.parquet"``, copied to the landing area through ``ObjectStoragePath``.
    :param task_type: ``binary_classification`` (default) or ``regression``.
    :param timestamp_column: the event-time column (UTC).
    :param source_params: keyword arguments for the source function (templated: ``"{{ params.x }}"`` works).
    :param features: feature columns, taken directly from the batch (no Feast); or ``feature_service``.
    :param feature_service: a Feast feature service (the features and their point-in-time join).
    :param feast_repo: the model's Feast repository (a folder with ``feature_store.yaml``); wins over the connection.
    :param feast_conn_id: Airflow connection (type ``feast``) of the model's feature repository.
    :param feature_asset: the ``feast://`` asset the materialisation updates (default ``feast://<name>/<service>``).
    :param suite: Great Expectations suite (JSON) the batch must pass; None = no validation gate.
    :param dataset_path: DVC dataset folder inside the data repository; None = no DVC
        (``<data_root>/datasets/<model>/``).
    :param dvc_conn_id: Airflow connection (type ``dvc``) of the data repository; None = ``dvc_default``.
    :param experiment_name: MLflow experiment of the training runs (default ``name``).
    :param entrypoint: training code: a ``.py`` file or ``"module:function"``; None = the configured default.
    :param python: interpreter of the training environment; None = ``[mlops] training_python``.
    :param requirements: requirements file of the training environment (a venv is built for it).
    :param training_config: hyper-parameters passed to the entrypoint (templated).
    :param min_metrics: lower bounds, e.g. ``{"auc": 0.7}``: on the holdout for a challenger and, as ``val_<key>``,
        on the training run for a first model. Keys written ``val_<key>`` apply to the training run only.
    :param max_metrics: upper bounds, the same way (e.g. ``{"rmse": 70.0}`` for a regressor).
    :param min_improvement: primary-metric gain over the champion a challenger needs (templated).
    :param primary_metric: the metric a comparison is decided on (default ``auc`` / ``rmse`` by task type).
    :param monitored_columns: columns whose drift is checked (default: ``features``, or all shared columns).
    :param drift_share_threshold: dataset drift (monitoring's retraining event) when at least this share of the
        monitored columns drifted (default 0.5).
    :param holdout: a fresh labelled batch the challenger and champion are scored on (same forms as ``source``);
        None = no evaluation stage (a new version stays challenger).
    :param holdout_params: keyword arguments for the holdout function (templated).
    :param holdout_day_offset: the holdout's day, relative to the landed day (default the next day).
    :param n_boot: bootstrap resamples of the evaluation.
    :param canary_share: share of scored rows the canary serves (monitoring).
    :param max_quality_drop: concept drift threshold of the quality check (monitoring); None = the task type's
        default (0.05 AUC for a classifier).
    :param approval_policy: ``hitl`` or ``auto`` in front of a promotion; None = ``[mlops] approval_policy``.
    """

    name: str
    label: str
    entity_columns: Sequence[str]
    source: Source
    task_type: str = "binary_classification"
    timestamp_column: str = "event_timestamp"
    source_params: Mapping[str, Any] = field(default_factory=dict)
    features: Sequence[str] | None = None
    feature_service: str | None = None
    feast_repo: str | None = None
    feast_conn_id: str | None = None
    feature_asset: str | None = None
    suite: str | None = None
    dataset_path: str | None = None
    dvc_conn_id: str | None = None
    experiment_name: str | None = None
    entrypoint: str | None = None
    python: str | None = None
    requirements: str | None = None
    training_config: Mapping[str, Any] = field(default_factory=dict)
    min_metrics: Mapping[str, Any] = field(default_factory=dict)
    max_metrics: Mapping[str, Any] = field(default_factory=dict)
    min_improvement: float | str = 0.0
    primary_metric: str | None = None
    monitored_columns: Sequence[str] | None = None
    drift_share_threshold: float = 0.5
    holdout: Source | None = None
    holdout_params: Mapping[str, Any] = field(default_factory=dict)
    holdout_day_offset: int = 1
    n_boot: int = 1000
    canary_share: float = 0.1
    max_quality_drop: float | None = None
    approval_policy: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: normalise once, here
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SpecError(
                f"ModelSpec.name={self.name!r}: a registered model name of letters, digits, '_', '-', '.' "
                "(at most 128 characters, starting with a letter or digit)"
            )
        try:
            set_("task_type", validate_task_type(self.task_type))
        except ValueError as err:
            raise SpecError(f"ModelSpec.{err}") from None
        if not isinstance(self.label, str) or not self.label.strip():
            raise SpecError("ModelSpec.label is empty: name the label column of the batches")
        set_("entity_columns", _strings(self.entity_columns, "entity_columns"))
        if not isinstance(self.timestamp_column, str) or not self.timestamp_column.strip():
            raise SpecError("ModelSpec.timestamp_column is empty: name the event-time column")
        keys = {*self.entity_columns, self.timestamp_column}
        if self.label in keys:
            raise SpecError(f"ModelSpec.label={self.label!r} is also a key column; the label must be its own column")
        source_kind(self.source, "source")
        if self.holdout is not None:
            source_kind(self.holdout, "holdout")
        self._check_features(keys)
        self._check_metrics()
        for name in ("source_params", "holdout_params", "training_config"):
            if not isinstance(getattr(self, name), Mapping):
                raise SpecError(f"ModelSpec.{name} must be a mapping (dict), got {type(getattr(self, name)).__name__}")
            set_(name, dict(getattr(self, name)))
        if not isinstance(self.holdout_day_offset, int) or isinstance(self.holdout_day_offset, bool):
            raise SpecError(f"ModelSpec.holdout_day_offset={self.holdout_day_offset!r} must be an integer (days)")
        if not isinstance(self.n_boot, int) or self.n_boot < 100:
            raise SpecError(f"ModelSpec.n_boot={self.n_boot!r}: use at least 100 bootstrap resamples")
        if isinstance(self.drift_share_threshold, bool) or not isinstance(self.drift_share_threshold, int | float) \
                or not 0.0 < float(self.drift_share_threshold) <= 1.0:
            raise SpecError(f"ModelSpec.drift_share_threshold={self.drift_share_threshold!r} must be a number in "
                            "(0, 1]: the share of monitored columns that must drift for dataset drift")
        if not 0.0 <= float(self.canary_share) < 1.0:
            raise SpecError(f"ModelSpec.canary_share={self.canary_share!r} must be in [0, 1)")
        if self.approval_policy not in (None, "hitl", "auto"):
            raise SpecError(f"ModelSpec.approval_policy={self.approval_policy!r} is not one of: hitl, auto, None")
        if self.entrypoint is not None and not str(self.entrypoint).strip():
            raise SpecError("ModelSpec.entrypoint is empty: pass a .py file, 'module:function', or None")

    def _check_features(self, keys: set[str]) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.features is not None and self.feature_service:
            raise SpecError(
                "ModelSpec has both features and feature_service: pass features (columns of the batch, no Feast) "
                "or feature_service (Feast), not both"
            )
        if self.features is None and not self.feature_service:
            raise SpecError(
                "ModelSpec needs features (columns of the batch) or feature_service (a Feast feature service)"
            )
        if (self.feast_repo or self.feast_conn_id) and not self.feature_service:
            raise SpecError("ModelSpec.feast_repo/feast_conn_id without feature_service: name the feature service")
        if self.features is not None:
            set_("features", _strings(self.features, "features"))
            clash = sorted(set(self.features) & (keys | {self.label}))
            if clash:
                raise SpecError(f"ModelSpec.features include key/label columns {clash}; list only the inputs")
        if self.monitored_columns is not None:
            set_("monitored_columns", _strings(self.monitored_columns, "monitored_columns"))
            if self.label in self.monitored_columns:
                raise SpecError(
                    f"ModelSpec.monitored_columns include the label {self.label!r}: drift is checked on inputs "
                    "(label quality is the monitoring quality check's job)"
                )

    def _check_metrics(self) -> None:
        known = HOLDOUT_METRICS[self.task_type]
        for name in ("min_metrics", "max_metrics"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise SpecError(f"ModelSpec.{name} must be a mapping such as {{'{known[0]}': 0.7}}")
            for key, bound in value.items():
                base = str(key).removeprefix("val_")
                if base not in known:
                    raise SpecError(
                        f"ModelSpec.{name} key {key!r} is not a {self.task_type} metric; use one of {list(known)} "
                        f"(or val_<metric> for the training run only)"
                    )
                if not _is_template(bound):
                    try:
                        float(bound)
                    except (TypeError, ValueError):
                        raise SpecError(f"ModelSpec.{name}[{key!r}]={bound!r} is not a number") from None
            object.__setattr__(self, name, dict(value))
        if self.primary_metric is not None and self.primary_metric not in known:
            raise SpecError(
                f"ModelSpec.primary_metric={self.primary_metric!r} is not a {self.task_type} metric; use one of "
                f"{list(known)}"
            )
        if not _is_template(self.min_improvement):
            try:
                if float(self.min_improvement) < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise SpecError(
                    f"ModelSpec.min_improvement={self.min_improvement!r} must be a number >= 0 (or a template)"
                ) from None

    # -- derived values the factories use -----------------------------------------------------------------------
    @property
    def uses_feast(self) -> bool:
        return bool(self.feature_service)

    @property
    def uses_dvc(self) -> bool:
        return bool(self.dataset_path)

    @property
    def experiment(self) -> str:
        return self.experiment_name or self.name

    @property
    def primary(self) -> str:
        return self.primary_metric or HOLDOUT_METRICS[self.task_type][0]

    @property
    def keys(self) -> list[str]:
        return [*self.entity_columns, self.timestamp_column]

    def training_thresholds(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(min, max) thresholds on the training run's metrics: ``val_<metric>``."""
        return tuple(  # type: ignore[return-value]
            {k if k.startswith("val_") else f"val_{k}": v for k, v in bounds.items()}
            for bounds in (self.min_metrics, self.max_metrics)
        )

    def holdout_thresholds(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(min, max) thresholds on the holdout metrics (keys without ``val_``)."""
        return tuple(  # type: ignore[return-value]
            {k: v for k, v in bounds.items() if not k.startswith("val_")}
            for bounds in (self.min_metrics, self.max_metrics)
        )

    def required_columns(self) -> dict[str, list[str]]:
        """What a landed batch must have, by the spec field that names it (for errors that name the field)."""
        need = {"entity_columns": list(self.entity_columns), "timestamp_column": [self.timestamp_column],
                "label": [self.label]}
        if self.features is not None:
            need["features"] = list(self.features)
        if self.monitored_columns is not None:
            need["monitored_columns"] = list(self.monitored_columns)
        return need


def load_spec(path: str | Any, name: str = "SPEC") -> ModelSpec:
    """The ``ModelSpec`` named ``name`` in the Python file ``path``: one spec shared by a model's CT and monitoring
    DAG files (the DAGs folder is not always on ``sys.path`` when a DAG file is parsed).

    :param path: the file that defines the spec (e.g. ``Path(__file__).with_name("model_specs.py")``).
    :param name: the spec's variable name in that file.
    """
    import hashlib
    import importlib.util
    import sys
    from pathlib import Path

    file = Path(path).resolve()
    module_name = f"mlops_specs_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:10]}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, file)
        if loader_spec is None or loader_spec.loader is None:
            raise SpecError(f"cannot load specs from {file}: not a Python file, or missing")
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        sys.modules[module_name] = module
    spec = getattr(module, name, None)
    if not isinstance(spec, ModelSpec):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, ModelSpec))
        raise SpecError(f"{file} has no ModelSpec named {name!r}; it defines {found or 'none'}")
    return spec

