"""The reproducibility record: one JSON per model version naming everything that produced it.

Fields (see DESIGN.md), schema 3:

- ``model``: registered name and version; ``mlflow``: run id, experiment id, logged-model URI;
- ``dataset``: the DVC version ``{repo, rev, path, md5, rows}`` the entity rows come from;
- ``features``: Feast project, feature service, definitions hash, materialisation window and, when the training
  run names them (tags ``mlops.feast_conn_id`` / ``mlops.feast_repo``), the model's feature repository: the
  Airflow connection and/or the repository folder a rebuild must use;
- ``training_set``: uri, content hash, rows, columns, features, label (what the rebuild must match);
- ``training``: the training config (hyper-parameters) and seed;
- ``task``: the model's task type and label (what evaluation and monitoring chose their metrics by);
- ``code``: git revision, image digest, sha256 of the Airflow lock (``uv.lock``), and the entrypoint that
  actually ran (``entrypoint``: a project-relative file or ``module:function``), its sha256 and the sha256 of
  its requirements, as the training job tagged its run (``mlops.entrypoint*``, ``mlops.requirements_sha256``);
  None where the run does not say (never the bundled example's files);
- ``runtime``: device, GPU name/count, driver, CUDA, cuDNN, framework versions, determinism flags
  (the run's ``runtime/runtime.json``; its ``mlops.runtime.*`` tags when the artifact is absent);
- ``airflow``: dag_id, run_id, task_id, try number of the registering task;
- ``trigger``: why this model was trained: the retraining guard's ``{reason, triggered_by, decided_at,
  asset_extra}`` (a monitoring verdict's asset event, or a manual run); None when no guard ran;
- ``created_at`` and ``record_sha256`` (sha256 of the canonical JSON without this field).

Written to ``runs:/<run_id>/reproducibility/record.json`` and summarised in model-version tags
(``record_tags``). ``load_record`` reads it back for the reproduce DAG and checks its integrity.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_airflow.exceptions import RegistryError
from mlops_airflow.operators._common import run_identity
from mlops_airflow.task_types import DEFAULT_TASK_TYPE

RECORD_SCHEMA_VERSION = 3
RECORD_ARTIFACT = "reproducibility/record.json"
# The model's feature repository, as the training run's tags name it (``mlops.<key>``), recorded in ``features``.
FEAST_SOURCE_KEYS = ("feast_conn_id", "feast_repo")


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def project_root() -> Path:
    """The deployed project, where the locks and include/ live (``config.project_root``)."""
    from mlops_airflow.config import project_root as configured_root

    return configured_root()


def code_revision(root: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return proc.stdout.strip() + ("-dirty" if dirty else "")


# Training parameters that describe the data, not the training config (they live in other sections).
_DATA_PARAMS = ("dataset.", "training_set_", "n_rows", "n_train", "n_val", "split_digest")


def record_digest(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON, ``record_sha256`` itself excluded."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def build_record(
    *,
    context: Any,
    run: Any,
    dataset: dict[str, Any],
    training_set: dict[str, Any],
    materialization: dict[str, Any] | None,
    model_name: str,
    model_version: str,
    runtime: dict[str, Any] | None = None,
    model_uri: str | None = None,
    trigger: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the record from the upstream tasks' XCom and the MLflow run (params, tags, runtime.json).

    :param training: the training task's XCom; its ``entrypoint``/``entrypoint_sha256``/``requirements_sha256``/
        ``task_type``/``label`` stand in for run tags the run lacks.
    """
    root = project_root()
    params = dict(run.data.params)
    tags = dict(run.data.tags)
    training = training or {}

    def lineage(key: str) -> str | None:
        return tags.get(f"mlops.{key}") or training.get(key) or None
    if not runtime:
        runtime = {k.removeprefix("mlops.runtime."): v for k, v in tags.items() if k.startswith("mlops.runtime.")}
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"name": model_name, "version": model_version},
        "dataset": {k: dataset.get(k) for k in ("repo", "rev", "path", "md5", "rows")},
        "features": {
            "project": training_set.get("project"),
            "feature_service": training_set.get("feature_service"),
            "definitions_hash": training_set.get("definitions_hash"),
            "materialization": materialization,
            **{key: tags[f"mlops.{key}"] for key in FEAST_SOURCE_KEYS if tags.get(f"mlops.{key}")},
        },
        "training_set": {k: training_set.get(k) for k in ("uri", "hash", "rows", "columns", "features", "label",
                                                          "entity_window")},
        "task": {
            "task_type": lineage("task_type") or training_set.get("task_type") or DEFAULT_TASK_TYPE,
            "label": lineage("label") or training_set.get("label"),
            "entity_columns": training_set.get("entity_columns"),
        },
        "training": {
            "config": {k: v for k, v in params.items() if not k.startswith(_DATA_PARAMS)},
            "seed": params.get("seed"),
            "split": {k: params.get(k) for k in ("n_rows", "n_train", "n_val", "split_digest") if k in params},
        },
        "code": {
            "revision": code_revision(root),
            "image_digest": tags.get("mlops.image_digest") or runtime.get("image_digest") or "local",
            "airflow_lock_sha256": _sha256(root / "uv.lock"),
            "entrypoint": lineage("entrypoint"),
            "training_entrypoint_sha256": lineage("entrypoint_sha256"),
            "requirements": tags.get("mlops.requirements") or None,
            "training_lock_sha256": lineage("requirements_sha256"),
        },
        "runtime": runtime,
        "airflow": run_identity(context),
        "mlflow": {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "model_uri": model_uri or tags.get("mlops.model_uri"),
        },
    }
    if trigger:
        record["trigger"] = trigger_section(trigger)
    record["record_sha256"] = record_digest(record)
    return record


def trigger_section(decision: dict[str, Any]) -> dict[str, Any]:
    """The record's ``trigger`` from a ``RetrainGuardOperator`` decision (small: no event list)."""
    extra = dict(decision.get("asset_extra") or {})
    return {
        "reason": decision.get("reason"),
        "triggered_by": decision.get("triggered_by"),
        "decided_at": decision.get("decided_at"),
        "kind": extra.get("kind"),
        "drifted_columns": extra.get("drifted_columns"),
        "drift_share": extra.get("drift_share"),
        "quality_drop": extra.get("quality_drop"),
        "verdict_uri": extra.get("verdict_uri"),
    }


def load_record(hook: Any, *args: Any) -> dict[str, Any]:
    """The record of a registered version: its ``reproducibility/record.json``, integrity-checked.

    Called ``load_record(hook, model_name, version)``; the former ``load_record(hook, client, model_name,
    version)`` still works for one release (the client is not used: the hook makes every call).

    :param hook: the ``MlflowHook``.
    :raises RegistryError: naming the version and the next step when the version, its run or its record is
        missing, or when the record was altered after it was written.
    """
    from mlflow.exceptions import MlflowException

    model_name, version = args[-2], args[-1]
    try:
        mv = hook.get_model_version(model_name, str(version))
    except MlflowException as err:
        raise RegistryError(
            f"{model_name} version {version} does not exist in the registry ({err.error_code}); check the "
            "model name and version in the DAG run's params"
        ) from None
    if not mv.run_id:
        raise RegistryError(
            f"{model_name} version {version} has no MLflow run: it was not registered by RegisterModelOperator, "
            "so it has no reproducibility record"
        )
    try:
        record = hook.read_json_artifact(mv.run_id, RECORD_ARTIFACT)
    except (MlflowException, OSError) as err:
        raise RegistryError(
            f"{model_name} version {version}: run {mv.run_id} has no {RECORD_ARTIFACT} ({type(err).__name__}); "
            "the version was registered without a record (re-run its register_model task to write one)"
        ) from None
    stored = record.get("record_sha256")
    if stored and stored != record_digest(record):
        raise RegistryError(
            f"{model_name} version {version}: {RECORD_ARTIFACT} of run {mv.run_id} does not match its "
            f"record_sha256 ({stored[:12]}...): it was modified after registration; do not trust it"
        )
    tagged = mv.tags.get("mlops.training_set_hash")
    if tagged and tagged != (record.get("training_set") or {}).get("hash"):
        raise RegistryError(
            f"{model_name} version {version}: tag mlops.training_set_hash={tagged[:16]} disagrees with the "
            f"record's training_set.hash; one of them was edited by hand"
        )
    return record


def dataset_version_of(record: dict[str, Any]) -> dict[str, Any]:
    """The DVC version ``{repo, rev, path, md5}`` the record names (the input of a rebuild)."""
    dataset = record.get("dataset") or {}
    missing = [k for k in ("rev", "path") if not dataset.get(k)]
    if missing:
        model = record.get("model", {})
        raise RegistryError(
            f"the record of {model.get('name')} v{model.get('version')} names no dataset {missing}: it cannot be "
            "rebuilt"
        )
    return {k: dataset.get(k) for k in ("repo", "rev", "path", "md5")}


def record_tags(record: dict[str, Any]) -> dict[str, str]:
    """The record summarised as model-version tags (what the registry UI and searches show)."""
    flat = {
        "mlops.record.schema": str(record["schema_version"]),
        "mlops.record_sha256": record.get("record_sha256"),
        "mlops.dataset_rev": record["dataset"]["rev"],
        "mlops.dataset_md5": record["dataset"]["md5"],
        "mlops.feature_service": record["features"]["feature_service"],
        "mlops.feature_definitions_hash": record["features"]["definitions_hash"],
        "mlops.training_set_hash": record["training_set"]["hash"],
        "mlops.code_revision": record["code"]["revision"],
        "mlops.image_digest": record["code"]["image_digest"],
        "mlops.airflow_lock_sha256": record["code"]["airflow_lock_sha256"],
        "mlops.training_lock_sha256": record["code"].get("training_lock_sha256"),
        "mlops.entrypoint": record["code"].get("entrypoint"),
        "mlops.entrypoint_sha256": record["code"].get("training_entrypoint_sha256"),
        "mlops.device": record["runtime"].get("device"),
        "mlops.device_name": record["runtime"].get("device_name"),
        "mlops.torch_version": record["runtime"].get("torch_version"),
        "mlops.framework": record["runtime"].get("framework"),
        "mlops.cuda_version": record["runtime"].get("cuda_version"),
        "mlops.seed": record["training"].get("seed"),
        "mlops.record_uri": f"runs:/{record['mlflow']['run_id']}/{RECORD_ARTIFACT}",
        "mlops.retrain.reason": ((record.get("trigger") or {}).get("reason") or "")[:4000],
        "mlops.retrain.triggered_by": (record.get("trigger") or {}).get("triggered_by"),
        "mlops.retrain.kind": (record.get("trigger") or {}).get("kind"),
    }
    return {k: str(v) for k, v in flat.items() if v not in (None, "")}


# ------------------------------------------------------------------------------- reproduction
def _coerce(value: Any) -> Any:
    """MLflow params are strings; give train.py back numbers and booleans."""
    if not isinstance(value, str):
        return value
    if value in ("True", "False", "true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def reproduction_inputs(record: dict[str, Any]) -> dict[str, Any]:
    """What a rebuild and a retrain need, from a record (small JSON, fit for XCom)."""
    config = {k: _coerce(v) for k, v in (record.get("training") or {}).get("config", {}).items()}
    training_set = record.get("training_set") or {}
    features = record.get("features") or {}
    if not features.get("feature_service") or not training_set.get("hash"):
        model = record.get("model", {})
        raise RegistryError(
            f"the record of {model.get('name')} v{model.get('version')} names no feature service or training-set "
            "hash: it cannot be reproduced (registered before schema 1?)"
        )
    task, code = record.get("task") or {}, record.get("code") or {}
    label = task.get("label") or training_set.get("label")
    if not label:
        model = record.get("model", {})
        raise RegistryError(
            f"the record of {model.get('name')} v{model.get('version')} names no label column (task.label, "
            "training_set.label): the training set cannot be rebuilt; re-register the version from a training set "
            "that names its label"
        )
    return {
        "model": record.get("model"),
        "dataset_version": dataset_version_of(record),
        "feature_service": features["feature_service"],
        "project": features.get("project"),
        "feast_conn_id": features.get("feast_conn_id"),
        "feast_repo": features.get("feast_repo"),
        "definitions_hash": features.get("definitions_hash"),
        "materialization": features.get("materialization"),
        "expected_hash": training_set["hash"],
        "expected_rows": training_set.get("rows"),
        "entity_window": training_set.get("entity_window") or {"start": None, "end": None},
        "label": label,
        "task_type": task.get("task_type") or DEFAULT_TASK_TYPE,
        "entity_columns": task.get("entity_columns") or None,
        "entrypoint": code.get("entrypoint"),
        "entrypoint_sha256": code.get("training_entrypoint_sha256"),
        "requirements": code.get("requirements"),
        "requirements_sha256": code.get("training_lock_sha256"),
        "training_config": config,
        "mlflow_run_id": (record.get("mlflow") or {}).get("run_id"),
        "record_sha256": record.get("record_sha256"),
    }


def verify_rebuild(inputs: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, Any]:
    """Compare a rebuilt training set with the record; ``RegistryError`` naming the cause when they differ."""
    model = inputs.get("model") or {}
    dataset = inputs["dataset_version"]
    if inputs.get("project") and rebuilt.get("project") and inputs["project"] != rebuilt["project"]:
        raise RegistryError(
            f"{model.get('name')} v{model.get('version')} was trained on Feast project {inputs['project']!r}, the "
            f"rebuild read project {rebuilt['project']!r} (connection {inputs.get('feast_conn_id') or 'feast_default'}"
            "): the wrong feature repository. Pass the model's connection as the reproduce DAG's feast_conn_id param"
        )
    expected, actual = inputs["expected_hash"], rebuilt.get("hash")
    defs_same = not inputs.get("definitions_hash") or inputs["definitions_hash"] == rebuilt.get("definitions_hash")
    result = {"match": expected == actual, "expected_hash": expected, "rebuilt_hash": actual,
              "expected_rows": inputs.get("expected_rows"), "rebuilt_rows": rebuilt.get("rows"),
              "definitions_match": defs_same, "rebuilt_uri": rebuilt.get("uri"),
              "dataset": f"{dataset['path']}@{str(dataset['rev'])[:12]}"}
    if expected != actual:
        cause = ("the Feast feature definitions changed since training (definitions hash "
                 f"{str(inputs.get('definitions_hash'))[:12]} -> {str(rebuilt.get('definitions_hash'))[:12]})"
                 if not defs_same else
                 "same data revision and feature definitions, so the offline source rows changed (late or "
                 "rewritten data inside the feature TTL window) or the join is non-deterministic")
        raise RegistryError(
            f"{model.get('name')} v{model.get('version')} is NOT reproducible: the training set rebuilt from "
            f"{result['dataset']} with service {inputs['feature_service']} has hash {str(actual)[:16]} "
            f"({rebuilt.get('rows')} rows), the record says {str(expected)[:16]} ({inputs.get('expected_rows')} rows). "
            f"Likely cause: {cause}. Compare {rebuilt.get('uri')} with the original training set"
        )
    return result


def verify_code(inputs: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """The recorded entrypoint as it is now: ``{entrypoint, sha256, match}``; ``RegistryError`` when it changed.

    A file outside the project (a path inside the training image) cannot be read here: ``match`` is None and
    the image digest stands for it.
    """
    from mlops_airflow.training.entrypoints import file_sha256, module_source, package_parent, parse_entrypoint

    model = inputs.get("model") or {}
    spec, expected = inputs.get("entrypoint"), inputs.get("entrypoint_sha256")
    if not spec or not expected:
        raise RegistryError(
            f"the record of {model.get('name')} v{model.get('version')} names no training entrypoint and hash "
            "(registered before schema 3): it cannot be retrained with the same code; rebuild the training set "
            "only (retrain=false) or retrain it through the CT DAG"
        )
    root = root or project_root()
    entry = parse_entrypoint(spec)
    if entry.kind == "module":
        source = module_source(entry.module or "", [package_parent(), root])
    else:
        source = Path(spec) if Path(spec).is_absolute() else root / spec
    if source is None or not source.is_file():
        if entry.kind == "file" and Path(spec).is_absolute():
            return {"entrypoint": spec, "sha256": None, "match": None, "path": str(spec)}
        raise RegistryError(f"{model.get('name')} v{model.get('version')} was trained by {spec}, which is not in "
                            f"the project at {root} any more; check out the record's code revision and retry")
    actual = file_sha256(source)
    if actual != expected:
        raise RegistryError(
            f"{model.get('name')} v{model.get('version')} was trained by {spec} with sha256 {expected[:12]}, the "
            f"project's copy has {actual[:12]}: the code changed since. Check out the record's code revision "
            "(code.revision) and retry, or rebuild the training set only (retrain=false)"
        )
    return {"entrypoint": spec, "sha256": actual, "match": True, "path": str(source)}


def metric_differences(original: dict[str, float], retrained: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{metric: {original, retrained, diff}}`` for the metrics both runs have."""
    out = {}
    for name in sorted(set(original) & set(retrained)):
        a, b = float(original[name]), float(retrained[name])
        out[name] = {"original": round(a, 6), "retrained": round(b, 6), "diff": round(b - a, 6) + 0.0}
    return out
