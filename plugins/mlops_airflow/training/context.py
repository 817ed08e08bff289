"""The training helper: what a training entry point of any framework gets from the pack.

Runs in the *training* environment (no Airflow; mlflow, pandas and the model's framework are imported only when
used). The training operators start the entry point with an environment contract (DESIGN.md)::

    MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME          required (credentials are read by mlflow itself)
    MLOPS_TRAINING_SET_URI                               required: Parquet (local path, file:// or s3:// URI)
    AWS_ENDPOINT_URL, AWS_DEFAULT_REGION                 the object store of an s3:// training set (optional)
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY             its credentials (a pod: from a Kubernetes secret)
    MLOPS_TRAINING_SET_HASH, MLOPS_DATASET_VERSION       content hash; JSON {repo, rev, path, md5}
    MLOPS_TRAINING_CONFIG                                JSON: features, label, task_type, entity_columns, seed, ...
    MLOPS_RUN_TAGS                                       JSON: the task's identity (how the operator finds the run)
    MLOPS_ENTRYPOINT, MLOPS_ENTRYPOINT_SHA256            what runs (file or module:function) and its hash
    MLOPS_REQUIREMENTS_SHA256, MLOPS_IMAGE_DIGEST        the environment it runs in
    MLOPS_RESULT_PATH                                    optional: where ``run`` writes the result JSON

An entry point uses it like this::

    from mlops_airflow.training import context

    ctx = context()
    df = ctx.load_training_set()
    with ctx.start_run():
        model = fit(df[ctx.features], df[ctx.label], seed=ctx.seed)
        ctx.log_metrics({"val_auc": 0.91})
        ctx.log_model(model, flavor="sklearn", input_example=df[ctx.features].head(5))

``start_run`` tags the MLflow run (task identity, dataset, training-set hash, task type, label, entry point and
their hashes), logs the config as params, ends the run FAILED (KILLED on SIGTERM) on an error, and refuses to
finish a run that logged no model. ``log_model`` writes the model's metadata (features, label, task type, entity
columns) and the ``mlops.model_uri`` tag the operator reads back.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import platform
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlparse

from mlops_airflow.task_types import BINARY_CLASSIFICATION, validate_task_type
from mlops_airflow.training.entrypoints import display_path, file_sha256
from mlops_airflow.training.errors import (  # noqa: F401 - re-exported: entry points import them from here
    EXIT_INVALID_INPUT,
    EXIT_TERMINATED,
    EXIT_UNEXPECTED,
    Terminated,
    TrainingInputError,
    exit_code,
    failure_line,
    report_failure,
)

#: Keys of MLOPS_TRAINING_CONFIG that describe the data, not the hyper-parameters.
FRAMEWORK_KEYS = ("features", "label", "task_type", "entity_columns")
#: Set by ``mlops_airflow.training.run`` for a ``module:function`` entry point: ``{"spec", "file"}``.
RUNNING: dict[str, str] = {}


def _json_env(environ: Mapping[str, str], name: str, expected: type) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return expected()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrainingInputError(f"{name} is not valid JSON ({exc.msg} at char {exc.pos})",
                                 f"fix the {name} value passed by the orchestrator") from None
    if not isinstance(value, expected):
        raise TrainingInputError(f"{name} must be a JSON {expected.__name__}, got {type(value).__name__}",
                                 f"fix the {name} value passed by the orchestrator")
    return value


def _names(value: Any, field: str) -> list[str]:
    """A list of column names from a list or a comma-separated string (MLflow params are strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise TrainingInputError(f"MLOPS_TRAINING_CONFIG {field!r} must be a list of column names, got {value!r}",
                                 f"fix {field} in training_config or the training-set step's output")
    return list(value)


def local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _running_entrypoint() -> tuple[str | None, str | None]:
    """(display name, file) of the code that is running: the ``module:function`` or the ``__main__`` file."""
    if RUNNING.get("file"):
        return RUNNING.get("spec"), RUNNING["file"]
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return (display_path(main, os.getcwd()), main) if main and os.path.isfile(main) else (None, None)


class TrainingContext:
    """What an entry point needs: the training set, its columns, the config and an MLflow run tagged for the pack.

    Build it with :func:`context` (from the environment contract); the constructor is for tests.
    """

    def __init__(
        self,
        *,
        experiment_name: str,
        training_set_uri: str,
        training_set_hash: str = "",
        dataset_version: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        run_tags: dict[str, str] | None = None,
        entrypoint: str | None = None,
        entrypoint_sha256: str | None = None,
        requirements_sha256: str | None = None,
        image_digest: str = "local",
        result_path: str | None = None,
        storage_env: Mapping[str, str] | None = None,
    ) -> None:
        self.experiment_name = experiment_name
        self.training_set_uri = training_set_uri
        self.training_set_hash = training_set_hash
        self.dataset_version = dict(dataset_version or {})
        self.config = dict(config or {})
        self.run_tags = {str(k): str(v) for k, v in (run_tags or {}).items()}
        self.entrypoint, self.entrypoint_sha256 = entrypoint, entrypoint_sha256
        self.requirements_sha256 = requirements_sha256
        self.image_digest = image_digest or "local"
        self.result_path = result_path
        # Where the store's settings are read (endpoint, region, credentials); None: this process's environment.
        self.storage_env = storage_env
        self.features = _names(self.config.get("features"), "features")
        if not self.features:
            raise TrainingInputError("MLOPS_TRAINING_CONFIG names no 'features'",
                                     "pass a training_set with 'features' or training_config={'features': [...]}")
        label = self.config.get("label")
        if not isinstance(label, str) or not label:
            raise TrainingInputError("MLOPS_TRAINING_CONFIG names no 'label' column",
                                     "pass a training_set with 'label' or training_config={'label': '<column>'}")
        self.label = label
        if label in self.features:
            raise TrainingInputError(f"label column {label!r} is also listed as a feature",
                                     "remove it from the features")
        try:
            self.task_type = validate_task_type(self.config.get("task_type"))
        except ValueError as err:
            raise TrainingInputError(str(err), "fix task_type of the training task") from None
        self.entity_columns = _names(self.config.get("entity_columns"), "entity_columns")
        self._run: Any = None
        self._model_uri: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingContext:
        """The context of the environment contract.

        :raises TrainingInputError: a required variable is missing or a JSON one is malformed (named).
        """
        env = os.environ if environ is None else environ
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLOPS_TRAINING_SET_URI"):
            if not env.get(name, "").strip():
                raise TrainingInputError(f"{name} is not set",
                                         "start the entry point from a training operator, or export it")
        running, running_file = _running_entrypoint()
        declared_sha = env.get("MLOPS_ENTRYPOINT_SHA256") or None
        sha = file_sha256(running_file) if running_file else declared_sha
        if declared_sha and sha != declared_sha:
            print(f"[train] warning: MLOPS_ENTRYPOINT_SHA256 {declared_sha[:12]} is not the hash of the running "
                  f"{running_file} ({sha[:12]}); recording the running code's hash", file=sys.stderr, flush=True)
        return cls(
            experiment_name=env["MLFLOW_EXPERIMENT_NAME"].strip(),
            training_set_uri=env["MLOPS_TRAINING_SET_URI"].strip(),
            training_set_hash=env.get("MLOPS_TRAINING_SET_HASH", ""),
            dataset_version=_json_env(env, "MLOPS_DATASET_VERSION", dict),
            config={k: v for k, v in _json_env(env, "MLOPS_TRAINING_CONFIG", dict).items() if v is not None},
            run_tags=_json_env(env, "MLOPS_RUN_TAGS", dict),
            entrypoint=env.get("MLOPS_ENTRYPOINT") or running,
            entrypoint_sha256=sha,
            requirements_sha256=env.get("MLOPS_REQUIREMENTS_SHA256") or None,
            image_digest=env.get("MLOPS_IMAGE_DIGEST") or "local",
            result_path=env.get("MLOPS_RESULT_PATH") or None,
            storage_env=None if environ is None else environ,
        )

    # ------------------------------------------------------------------ data
    @property
    def seed(self) -> int | None:
        """``config["seed"]`` as an int (None when absent)."""
        seed = self.config.get("seed")
        return int(seed) if seed not in (None, "") else None

    @property
    def params(self) -> dict[str, Any]:
        """The hyper-parameters: the config without the data keys (features, label, task type, entities)."""
        return {k: v for k, v in self.config.items() if k not in FRAMEWORK_KEYS}

    def load_training_set(self) -> Any:
        """The training set as a pandas DataFrame, checked for the entity, feature and label columns.

        Read from its URI (a local path, ``file://`` or ``s3://...``) by ``mlops_airflow.training.data``, with the
        store's settings from the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` ...): the same code
        on the worker and in a pod.

        :raises TrainingInputError: missing, unreadable, empty, or missing columns (named).
        :raises RuntimeError: the store is unreachable or refused access (a retry may help).
        """
        from mlops_airflow.training.data import DataAccessError, read_table

        fix = "check the training set produced by the feature step (MLOPS_TRAINING_SET_URI)"
        uri = self.training_set_uri
        try:
            df = read_table(uri, self.storage_env, what="training set")
        except DataAccessError as err:
            if err.retryable:
                raise RuntimeError(str(err)) from None
            raise TrainingInputError(err.cause, f"{err.next_step}; {fix}") from None
        print(f"[train] training set {uri}: {len(df)} rows, {len(df.columns)} columns", flush=True)
        if len(df) == 0:
            raise TrainingInputError(f"training set {uri} has no rows", fix)
        missing = [c for c in [*self.entity_columns, *self.features, self.label] if c not in df.columns]
        if missing:
            raise TrainingInputError(f"training set is missing columns {missing} (has {list(df.columns)})",
                                     "fix features/label/entity_columns of the training task or the feature step")
        if df[self.label].isna().any():
            raise TrainingInputError(f"label {self.label!r} has {int(df[self.label].isna().sum())} missing values",
                                     fix)
        return df

    # ------------------------------------------------------------------ MLflow
    def mlops_tags(self) -> dict[str, str]:
        """The run's tags: the task identity (MLOPS_RUN_TAGS) and what the record needs to name the code."""
        tags = {
            **self.run_tags,
            "mlops.dataset_md5": str(self.dataset_version.get("md5") or ""),
            "mlops.dataset_rev": str(self.dataset_version.get("rev") or ""),
            "mlops.training_set_hash": self.training_set_hash,
            "mlops.image_digest": self.image_digest,
            "mlops.task_type": self.task_type,
            "mlops.label": self.label,
            "mlops.runtime.python_version": platform.python_version(),
        }
        for key, value in (("mlops.entrypoint", self.entrypoint), ("mlops.entrypoint_sha256", self.entrypoint_sha256),
                           ("mlops.requirements_sha256", self.requirements_sha256)):
            if value:
                tags[key] = value
        return tags

    @contextlib.contextmanager
    def start_run(self, *, log_system_metrics: bool = False, require_model: bool = True) -> Iterator[Any]:
        """The MLflow run of this job (re-entrant: a nested call yields the active run).

        :param log_system_metrics: sample CPU/GPU/memory into ``system/*`` metrics.
        :param require_model: refuse to finish a run without a logged model (the operator adopts FINISHED runs).
        """
        if self._run is not None:
            yield self._run
            return
        import mlflow

        os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
        os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            experiment = mlflow.set_experiment(self.experiment_name)
            self._run = mlflow.start_run(experiment_id=experiment.experiment_id, tags=self.mlops_tags(),
                                         log_system_metrics=log_system_metrics)
        except Exception as exc:  # noqa: BLE001 - named and re-raised
            raise RuntimeError(f"cannot create the MLflow run in experiment {self.experiment_name!r} "
                               f"({type(exc).__name__}: {str(exc)[:300]}); check MLFLOW_TRACKING_URI, the "
                               "credentials and that the MLflow server is up, then retry") from exc
        try:
            self.log_params({**{f"dataset.{k}": v for k, v in self.dataset_version.items()},
                             "training_set_hash": self.training_set_hash, "training_set_uri": self.training_set_uri,
                             **self.config})
            yield self._run
            if require_model:
                self._check_model_logged()
            mlflow.end_run("FINISHED")
        except BaseException as exc:
            line = failure_line(exc)
            with contextlib.suppress(Exception):
                mlflow.set_tag("mlops.failure_reason", line[:5000])
            with contextlib.suppress(Exception):
                mlflow.end_run("KILLED" if isinstance(exc, Terminated | KeyboardInterrupt) else "FAILED")
            report_failure(exc)
            raise
        finally:
            self._run = None
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _check_model_logged(self) -> None:
        if self._model_uri:
            return
        import mlflow

        info = self._run.info
        found = mlflow.search_logged_models(experiment_ids=[info.experiment_id], output_format="list",
                                            filter_string=f"source_run_id = '{info.run_id}'")
        if not found:
            raise TrainingInputError(f"run {info.run_id} logged no model",
                                     "call ctx.log_model(model, flavor=...) before the run ends")
        self._model_uri = f"models:/{found[0].model_id}"
        import mlflow

        mlflow.set_tags({"mlops.model_uri": self._model_uri, "mlops.model_id": found[0].model_id})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (lists joined with commas, dicts as JSON, None dropped); a param already logged is kept."""
        import mlflow

        logged = set(mlflow.get_run(self._run.info.run_id).data.params) if self._run is not None else set()
        flat = {k: ",".join(map(str, v)) if isinstance(v, list | tuple) else
                json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
                for k, v in params.items() if v is not None and k not in logged}
        if flat:
            mlflow.log_params(flat)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Log the finite metrics; returns them. Non-finite ones are named on stderr (MLflow refuses NaN)."""
        import mlflow

        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        dropped = sorted(set(metrics) - set(finite))
        if dropped:
            print(f"[train] warning: not logging non-finite metrics {dropped}", file=sys.stderr, flush=True)
        if finite:
            mlflow.log_metrics(finite, step=step)
        return finite

    def log_model(self, model: Any, flavor: str = "sklearn", *, name: str = "model", input_example: Any = None,
                  metadata: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Log ``model`` with ``mlflow.<flavor>.log_model`` so that ``mlflow.pyfunc.load_model`` loads it.

        A scikit-learn classifier is logged with ``pyfunc_predict_fn="predict_proba"`` (its pyfunc returns
        P(label == 1) in column 1). Returns the model URI (also the ``mlops.model_uri`` run tag).

        :param model: the fitted model.
        :param flavor: an MLflow flavour module (``sklearn``, ``xgboost``, ``pytorch``, ``pyfunc`` ...).
        :param name: the logged model's name.
        :param input_example: a few rows of features (the signature is inferred from it).
        :param metadata: more MLmodel metadata (features, label, task type and entity columns are always set).
        :param kwargs: passed to the flavour's ``log_model`` (signature, pip_requirements, ...).
        """
        import mlflow

        try:
            module = importlib.import_module(f"mlflow.{flavor}")
        except ImportError as err:
            raise TrainingInputError(f"MLflow has no flavour {flavor!r} in this environment ({err})",
                                     "pass flavor= one of sklearn, xgboost, pytorch, pyfunc ... and install it "
                                     "in the training requirements") from None
        if flavor == "sklearn" and self.task_type == BINARY_CLASSIFICATION and hasattr(model, "predict_proba"):
            kwargs.setdefault("pyfunc_predict_fn", "predict_proba")
        meta = {"features": self.features, "label": self.label, "task_type": self.task_type,
                "entity_columns": self.entity_columns, **(metadata or {})}
        if self._run is not None:
            meta.setdefault("training_run_id", self._run.info.run_id)
        info = module.log_model(model, name=name, input_example=input_example, metadata=meta, **kwargs)
        self._model_uri = info.model_uri
        mlflow.set_tags({"mlops.model_uri": info.model_uri, "mlops.model_id": str(info.model_id),
                         "mlops.runtime.framework": flavor})
        return info.model_uri

    def write_result(self, payload: dict[str, Any]) -> None:
        """Write ``payload`` as JSON to MLOPS_RESULT_PATH (when set), atomically."""
        if not self.result_path:
            return
        import tempfile

        path = os.path.abspath(local_path(self.result_path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)


def _raise_terminated(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise Terminated(f"received signal {signum}")


def context(environ: Mapping[str, str] | None = None) -> TrainingContext:
    """The :class:`TrainingContext` of this job, from the environment contract (see the module docstring).

    :param environ: the environment to read (default ``os.environ``).
    :raises TrainingInputError: naming the missing or malformed variable.
    """
    return TrainingContext.from_env(environ)
