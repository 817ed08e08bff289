"""The reproducibility record: one JSON per model version naming everything that produced it.

Fields (see DESIGN.md): dataset version; Feast project, feature service, definitions hash and
materialisation window; training set uri/hash; training config and seed; code revision, image
digest and dependency lock hashes; GPU runtime; Airflow dag_id/run_id/try; MLflow run and version.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from mlops_airflow.operators._common import run_identity

RECORD_SCHEMA_VERSION = 1


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def project_root() -> Path:
    """The deployed project (parent of the DAGs folder), where the locks and include/ live."""
    from airflow.configuration import conf

    configured = conf.get("mlops", "project_root", fallback=None)
    return Path(configured or Path(conf.get("core", "dags_folder")).resolve().parent)


def code_revision(root: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return proc.stdout.strip() + ("-dirty" if dirty else "")


def build_record(
    *,
    context: Any,
    run: Any,
    dataset: dict[str, Any],
    training_set: dict[str, Any],
    materialization: dict[str, Any] | None,
    model_name: str,
    model_version: str,
) -> dict[str, Any]:
    root = project_root()
    params = dict(run.data.params)
    tags = dict(run.data.tags)
    runtime = {k.removeprefix("mlops.runtime."): v for k, v in tags.items() if k.startswith("mlops.runtime.")}
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "model": {"name": model_name, "version": model_version},
        "dataset": {k: dataset.get(k) for k in ("repo", "rev", "path", "md5", "rows")},
        "features": {
            "project": training_set.get("project"),
            "feature_service": training_set.get("feature_service"),
            "definitions_hash": training_set.get("definitions_hash"),
            "materialization": materialization,
        },
        "training_set": {k: training_set.get(k) for k in ("uri", "hash", "rows", "features", "label")},
        "training": {
            "config": {k: v for k, v in params.items() if not k.startswith("dataset.")},
            "seed": params.get("seed"),
        },
        "code": {
            "revision": code_revision(root),
            "image_digest": tags.get("mlops.image_digest", "local"),
            "airflow_lock_sha256": _sha256(root / "uv.lock"),
            "training_lock_sha256": _sha256(root / "include" / "training" / "requirements.txt"),
        },
        "runtime": runtime,
        "airflow": run_identity(context),
        "mlflow": {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id},
    }


def record_tags(record: dict[str, Any]) -> dict[str, str]:
    """The record summarised as model-version tags (what the registry UI and searches show)."""
    flat = {
        "mlops.record.schema": str(record["schema_version"]),
        "mlops.dataset_rev": record["dataset"]["rev"],
        "mlops.dataset_md5": record["dataset"]["md5"],
        "mlops.feature_service": record["features"]["feature_service"],
        "mlops.feature_definitions_hash": record["features"]["definitions_hash"],
        "mlops.training_set_hash": record["training_set"]["hash"],
        "mlops.code_revision": record["code"]["revision"],
        "mlops.image_digest": record["code"]["image_digest"],
        "mlops.airflow_lock_sha256": record["code"]["airflow_lock_sha256"],
        "mlops.training_lock_sha256": record["code"]["training_lock_sha256"],
        "mlops.device": record["runtime"].get("device"),
        "mlops.record_uri": f"runs:/{record['mlflow']['run_id']}/reproducibility/record.json",
    }
    return {k: str(v) for k, v in flat.items() if v not in (None, "")}
