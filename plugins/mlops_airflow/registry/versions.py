"""Model versions in the MLflow registry: the registered model with a clear error, whether a version can
move (exists, READY, its model artifact present), the lineage of a version (what decides that a new training
repeats an existing version: :func:`same_lineage_version`), and the registry outage guard of the tasks that
write to the registry (:func:`registry_outage_guard`). No Airflow operator here: registration, promotion,
evaluation and rollback share it without importing each other."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def registered_model(hook: MlflowHook, model_name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return hook.get_registered_model(model_name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"registered model {model_name!r} does not exist; check model_name, or register a version first "
                "(RegisterModelOperator)"
            ) from None
        raise


def as_hook(mlflow: Any) -> MlflowHook:
    """``mlflow`` when it is an ``MlflowHook``, else a hook calling through it (an ``MlflowClient`` that an older
    caller passes; accepted for one release)."""
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    return mlflow if isinstance(mlflow, MlflowHook) else MlflowHook.for_client(mlflow)


def run_ids(hook: MlflowHook, mv: Any) -> tuple[str, str]:
    """``(experiment_id, run_id)`` of the run behind model version ``mv``."""
    return hook.get_run(mv.run_id).info.experiment_id, mv.run_id


def check_version_usable(hook: MlflowHook, model_name: str, version: str, *legacy: str) -> Any:
    """The version exists, is READY, and its model artifact (MLmodel) is present; else a clear error.

    :param hook: the MLflow hook.
    :param model_name: the registered model.
    :param version: the version.
    :param legacy: the former call ``(hook, client, model_name, version)``, accepted for one release.
    """
    from mlflow.exceptions import MlflowException

    if legacy:
        model_name, version = version, legacy[0]
    registered_model(hook, model_name)
    try:
        mv = hook.get_model_version(model_name, version)
    except MlflowException:
        raise RegistryError(f"{model_name} has no version {version!r}; check the version passed to this task") \
            from None
    if mv.status != "READY":
        raise RegistryError(f"{model_name} v{version} is {mv.status} ({mv.status_message}); only READY versions move")
    if not model_artifact_present(hook, mv):
        raise RegistryError(
            f"{model_name} v{version}: the model artifact behind {mv.source} is missing (no MLmodel file); it cannot "
            "be served. Re-register the version from a run that logged a model, or pick another version"
        )
    return mv


def model_artifact_present(hook: MlflowHook, mv: Any) -> bool:
    """True when the version's source holds an ``MLmodel`` file (:meth:`MlflowHook.model_artifact_present`)."""
    return as_hook(hook).model_artifact_present(mv)


# ------------------------------------------------------------------------------------ lineage
# What makes two trainings the same model: the data (DVC rev, training-set hash), the code (entrypoint and its
# requirements, by sha256) and the training config (sha256 of the run's params, data params excluded). Each field
# is compared as it is on both sides: one absent on both sides (an entrypoint tagged by no hash) matches.
LINEAGE_FIELDS = {
    "mlops.dataset_rev": "dataset rev",
    "mlops.training_set_hash": "training-set hash",
    "mlops.entrypoint_sha256": "entrypoint sha256 (code)",
    "mlops.requirements_sha256": "requirements sha256",
    "mlops.training_config_sha256": "training config",
}
CONFIG_TAG = "mlops.training_config_sha256"
# Run params that describe the data, not the training config (as in the reproducibility record's training.config).
DATA_PARAMS = ("dataset.", "training_set_", "n_rows", "n_train", "n_val", "split_digest")


def training_config(params: Mapping[str, Any]) -> dict[str, str]:
    """The training config of a run: its params without the ones that describe the data."""
    return {k: str(v) for k, v in params.items() if not k.startswith(DATA_PARAMS)}


def config_sha256(params: Mapping[str, Any]) -> str:
    """sha256 of the run's training config (canonical JSON of :func:`training_config`)."""
    body = json.dumps(training_config(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def run_lineage(run: Any, dataset_rev: str | None, training_set_hash: str | None,
                fallback: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """The lineage of a training run (:data:`LINEAGE_FIELDS`): data from the caller, code and config from the run.

    :param fallback: values the run's tags lack (the training XCom ``entrypoint_sha256``/``requirements_sha256``,
        or a version's tags).
    """
    tags, fallback = dict(run.data.tags), dict(fallback or {})

    def tag(key: str) -> str | None:
        return tags.get(f"mlops.{key}") or fallback.get(key) or fallback.get(f"mlops.{key}") or None

    return {"mlops.dataset_rev": dataset_rev or None, "mlops.training_set_hash": training_set_hash or None,
            "mlops.entrypoint_sha256": tag("entrypoint_sha256"),
            "mlops.requirements_sha256": tag("requirements_sha256") or fallback.get("mlops.training_lock_sha256"),
            CONFIG_TAG: config_sha256(run.data.params)}


def lineage_difference(ours: Mapping[str, Any], theirs: Mapping[str, Any], our_params: Mapping[str, Any] | None = None,
                       their_params: Mapping[str, Any] | None = None) -> list[str]:
    """The lineage fields that differ, each said for a person (``training config: epochs 4 -> 5``)."""
    out = []
    for key, label in LINEAGE_FIELDS.items():
        a, b = theirs.get(key) or None, ours.get(key) or None
        if a == b:
            continue
        if key == CONFIG_TAG and our_params is not None and their_params is not None:
            old, new = training_config(their_params), training_config(our_params)
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            out.append(f"{label}: " + ", ".join(f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys[:5])
                       + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""))
        else:
            out.append(f"{label} {_short(a)} -> {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = "none" if value is None else str(value)
    return text[:12] if len(text) >= 32 and all(c in "0123456789abcdef" for c in text) else text[:40]


def same_lineage_version(hook: MlflowHook, model_name: str, lineage: Mapping[str, Any], run_id: str,
                         params: Mapping[str, Any]) -> tuple[Any | None, str]:
    """A READY version of ``model_name`` from another run with the same lineage, and why (or why none fits).

    Candidates share the data (the version tags ``mlops.dataset_rev`` and ``mlops.training_set_hash``); their code
    and config come from their run. Of several matches, one holding an alias wins, then the oldest.
    """
    from mlflow.exceptions import MlflowException

    rev, ts_hash = lineage.get("mlops.dataset_rev"), lineage.get("mlops.training_set_hash")
    if not rev or not ts_hash:
        return None, ("the dataset version has no rev or the training set no hash: the lineage cannot be compared, "
                      "so a new version is registered")
    found = hook.search_model_versions(
        f"name = '{model_name}' and tags.`mlops.training_set_hash` = '{ts_hash}'")
    candidates = sorted((mv for mv in found if mv.run_id != run_id and mv.status == "READY"
                         and (mv.tags or {}).get("mlops.dataset_rev") == rev),
                        key=lambda mv: (not getattr(mv, "aliases", None), int(mv.version)))
    data = f"dataset rev {_short(rev)} and training set {_short(ts_hash)}"
    if not candidates:
        return None, f"no version of {model_name} was trained on {data}"
    closest: tuple[int, str] | None = None
    for mv in candidates[:20]:
        try:
            run = hook.get_run(mv.run_id)
        except MlflowException:
            continue  # its run is gone: it proves nothing
        differ = lineage_difference(lineage, run_lineage(run, rev, ts_hash, mv.tags), params, run.data.params)
        if not differ:
            return mv, f"v{mv.version} (run {mv.run_id}) has the same lineage: {data}, code and training config"
        if closest is None or len(differ) < closest[0]:
            closest = (len(differ), f"v{mv.version} has the same data ({data}) but a different " + "; ".join(differ))
    return None, closest[1] if closest else f"the versions trained on {data} have no readable run"


# ------------------------------------------------------------------------------------ outage
# While a task writes to the registry, MLflow's client retries a failing request this often: twice, ~3 s in all
# (its default, 7 retries with backoff factor 2, is ~4 minutes per call, and a task makes dozens). The task fails
# in seconds and Airflow's task retries do the waiting. A value set in the environment wins.
OUTAGE_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_OUTAGE_MARKERS = (
    ("Connection refused", "connection refused"), ("Failed to establish a new connection", "connection refused"),
    ("RemoteDisconnected", "connection dropped"), ("Connection aborted", "connection dropped"),
    ("Connection reset", "connection reset"), ("Read timed out", "timed out"), ("timeout exception", "timed out"),
    ("Name or service not known", "host not found"), ("error responses", "server errors (HTTP 5xx)"),
    ("Max retries exceeded", "no answer"),
)


def outage_cause(err: BaseException) -> str | None:
    """A few words on why the server did not answer, when ``err`` (or its cause) is a connection failure; else None."""
    seen: BaseException | None = err
    for _ in range(6):
        if seen is None:
            break
        text = f"{type(seen).__name__}: {seen}"
        for marker, cause in _OUTAGE_MARKERS:
            if marker in text:
                return cause
        if isinstance(seen, ConnectionError | TimeoutError):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def registry_outage_guard(hook: MlflowHook, task: str, resume: str) -> Iterator[list[str]]:
    """Run a registry-writing task body: MLflow's client retries briefly (:data:`OUTAGE_RETRIES`), and a server
    that stops answering half-way becomes one line: the URI, the cause, what was done, and the next step.

    Yields a list the body appends what it has done to (``"created v3"``), for that line.

    :param task: what runs, for the message (``"register_model of m"``).
    :param resume: why a retry is safe, for the message (``"it reuses v3"``).
    :raises RegistryError: the server stopped answering (other errors pass unchanged).
    """
    set_here = {k: v for k, v in OUTAGE_RETRIES.items() if k not in os.environ}
    os.environ.update(set_here)
    done: list[str] = []
    try:
        yield done
    except RegistryError:
        raise
    except Exception as err:
        cause = outage_cause(err)
        if cause is None:
            raise
        uri = hook.settings.tracking_uri
        so_far = f"done before it stopped: {', '.join(done)}" if done else "no write of this try was confirmed"
        raise RegistryError(
            f"MLflow server {uri} stopped answering during {task} ({cause}); {so_far}. Airflow retries this task: "
            f"once the server is back the retry completes it without a duplicate ({resume}). If the retries keep "
            "failing, check that the MLflow server is up and the connection's tracking URI",
            cause=f"registry unreachable ({cause})", next_step="bring the MLflow server back; Airflow retries the task",
            tracking_uri=uri, done=list(done),
        ) from None
    finally:
        for key in set_here:
            os.environ.pop(key, None)
