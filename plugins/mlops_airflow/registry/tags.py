"""Tags on a model version: promotion tags (``mlops.promotion.*``) and what the model predicts (``mlops.task_type``,
``mlops.label``).

Promotion tags are written with every alias move and read back.
A move writes them on the version after the move and its ledger append (``mlops.promotion.<alias>`` = the entry
as JSON, plus flat tags a person reads in the MLflow UI: who approved, when, the evidence URI, the previous
holder); the durable intent written *before* the move is ``mlops.ledger.pending`` on the registered model (see
``registry/aliases.py``). Older first-champion promotions left only the flat tags;
:func:`promotion_from_version_tags` reads them for the history.

What a version predicts: ``RegisterModelOperator`` tags every version with its task type and label
(:func:`task_tags`); the operators that score a version read them back with :func:`model_task`, which falls back
to the model's MLmodel ``metadata`` (``task_type``, ``label``, ``entity_columns``, ``features``, written by the
training helper) for versions registered before the tags existed. No Airflow operator here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

PREFIX = "mlops.promotion."
TASK_TYPE_TAG = "mlops.task_type"
LABEL_TAG = "mlops.label"


def write_intent(hook: MlflowHook, model_name: str, version: str, entry: dict[str, Any]) -> None:
    """The move about to be made, on the version (before the alias moves)."""
    airflow = entry["airflow"]
    tags = {
        f"{PREFIX}{entry['alias']}": json.dumps(entry, sort_keys=True, default=str),
        f"{PREFIX}alias": entry["alias"],
        f"{PREFIX}action": entry["action"],
        f"{PREFIX}at": entry["at"],
        f"{PREFIX}approved_by": str(entry["approved_by"]),
        f"{PREFIX}approved_at": str(entry["approved_at"]),
        f"{PREFIX}previous": entry["previous_version"] or "none",
        f"{PREFIX}evidence_uri": entry["evidence_uri"] or "none",
        f"{PREFIX}dag_run": f"{airflow['dag_id']}/{airflow['run_id']}",
    }
    for key, value in tags.items():
        hook.set_model_version_tag(model_name, version, key, value)


def write_recorded(hook: MlflowHook, model_name: str, version: str, entry: dict[str, Any]) -> None:
    """The move as recorded in the ledger (with its ``seq``), on the version (after the append)."""
    hook.set_model_version_tag(
        model_name, version, f"{PREFIX}{entry['alias']}", json.dumps(entry, sort_keys=True, default=str)
    )
    hook.set_model_version_tag(model_name, version, f"{PREFIX}ledger_seq", str(entry["seq"]))


def write_rolled_back(
    hook: MlflowHook, model_name: str, version: str, alias: str, entry: dict[str, Any], reason: str
) -> None:
    """``alias`` was taken away from the version (ledger entry ``entry``)."""
    hook.set_model_version_tag(
        model_name,
        version,
        f"{PREFIX}{alias}.rolled_back",
        json.dumps({"seq": entry["seq"], "at": entry["at"], "reason": reason}),
    )


def read_intent(hook: MlflowHook, model_name: str, version: str, alias: str) -> dict[str, Any] | None:
    """The ``mlops.promotion.<alias>`` entry on the version, or None (absent, unreadable, no such version)."""
    try:
        raw = hook.get_model_version(model_name, version).tags.get(f"{PREFIX}{alias}")
        return json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001 - a missing/garbled intent only means "unknown mover"
        return None


def promotion_from_version_tags(version: str, tags: dict[str, str]) -> dict[str, Any] | None:
    """The last move recorded in a version's flat tags, as a history row (no ``seq``); None when there is none."""
    alias = tags.get(f"{PREFIX}alias")
    if not alias:
        return None
    previous = tags.get(f"{PREFIX}previous")
    evidence = tags.get(f"{PREFIX}evidence_uri") or tags.get(f"{PREFIX}evidence")
    return {
        "at": tags.get(f"{PREFIX}at"),
        "alias": alias,
        "version": str(version),
        "previous_version": None if previous in (None, "", "none") else previous,
        "action": tags.get(f"{PREFIX}action") or "promote",
        "approved_by": tags.get(f"{PREFIX}approved_by"),
        "evidence_uri": None if evidence in (None, "", "none") else evidence,
        "dag_run": tags.get(f"{PREFIX}dag_run"),
    }


# ------------------------------------------------------------------------------ what a version predicts
def task_tags(task_type: str | None, label: str | None) -> dict[str, str]:
    """The version tags naming what the model predicts (``mlops.task_type``; ``mlops.label`` when known)."""
    from mlops_airflow.task_types import validate_task_type

    out = {TASK_TYPE_TAG: validate_task_type(task_type)}
    if label:
        out[LABEL_TAG] = str(label)
    return out


def model_metadata(tracking_uri: str, model_uri: str, registry_uri: str | None = None) -> dict[str, Any]:
    """The ``metadata`` of a model's MLmodel file (``{}`` when it has none); MLflow errors propagate."""
    import mlflow
    from mlflow.models import get_model_info

    previous, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri or tracking_uri)
        return dict(get_model_info(model_uri).metadata or {})
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)


def model_task(hook: MlflowHook, model_name: str, version: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """What version ``version`` of ``model_name`` predicts: ``{task_type, label, entity_columns, features, source}``.

    The version's tags first (``mlops.task_type``, ``mlops.label``); what they lack comes from the model's MLmodel
    metadata when ``tracking_uri`` is given (one download of the MLmodel file). Values stay None when neither
    names them: the caller decides the default (binary classification) or the error (the label).
    ``source`` says where each value came from (``tags``, ``metadata``), for the evidence.

    :param hook: the ``MlflowHook`` (an ``MlflowClient`` still works, for one release).
    :param tracking_uri: the tracking server, to read the MLmodel metadata; None = tags only.
    """
    tags = hook.get_model_version(model_name, str(version)).tags or {}
    out: dict[str, Any] = {"task_type": tags.get(TASK_TYPE_TAG) or None, "label": tags.get(LABEL_TAG) or None,
                           "entity_columns": None, "features": None, "source": {}}
    for key in ("task_type", "label"):
        if out[key]:
            out["source"][key] = "tags"
    if tracking_uri:
        meta = model_metadata(tracking_uri, f"models:/{model_name}/{version}")
        for key in ("task_type", "label", "entity_columns", "features"):
            if out[key] is None and meta.get(key):
                out[key] = list(meta[key]) if isinstance(meta[key], list | tuple) else meta[key]
                out["source"][key] = "metadata"
    return out
