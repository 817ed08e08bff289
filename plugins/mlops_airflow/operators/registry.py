"""Model registry: register a trained model version with its lineage and reproducibility record.

Promotion uses MLflow aliases (``champion``, ``challenger``, ``canary``, ``shadow``), never the
deprecated stages. This operator gives ``champion`` only to a *first* model, and only when it passes
the absolute thresholds (no thresholds configured = no champion: the safe default).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from mlops_airflow.assets import model_asset_uri
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.links.mlflow import MlflowModelVersionLink, MlflowRunLink
from mlops_airflow.operators._common import as_dict, run_identity
from mlops_airflow.record import build_record, record_tags

if TYPE_CHECKING:
    from airflow.sdk import Context


def check_thresholds(metrics: dict[str, float], min_metrics: dict[str, float] | None) -> tuple[bool, list[str]]:
    """Absolute thresholds (``metric >= minimum``). None/empty thresholds never pass (safe default)."""
    if not min_metrics:
        return False, ["no absolute thresholds configured: a model is never made champion without them"]
    reasons = []
    for name, minimum in sorted(min_metrics.items()):
        value = metrics.get(name)
        if value is None:
            reasons.append(f"metric {name} missing from the training run")
        elif value < minimum:
            reasons.append(f"{name}={value:.4f} < minimum {minimum}")
    return not reasons, reasons


class RegisterModelOperator(BaseOperator):
    """Register the model of a training run as a new version of ``model_name`` (idempotent).

    Writes the reproducibility record (``reproducibility/record.json`` on the run) and lineage tags
    on the version. A retry finds the version it already created for the run instead of creating
    another. With no ``champion`` yet, the version becomes champion if it passes ``min_metrics``.

    :param model_name: registered model name (templated).
    :param training: upstream training result ``{run_id, model_uri, metrics}`` (templated / XCom).
    :param training_set: upstream training set ``{uri, hash, feature_service, ...}`` (templated / XCom).
    :param dataset_version: upstream DVC version (templated / XCom).
    :param materialization: upstream materialisation window (templated / XCom), optional.
    :param min_metrics: absolute thresholds for a first champion, e.g. ``{"val_auc": 0.7}`` (templated).
    """

    template_fields: Sequence[str] = (
        "model_name", "training", "training_set", "dataset_version", "materialization", "min_metrics",
    )
    operator_extra_links = (MlflowModelVersionLink(), MlflowRunLink())
    ui_color = "#0194e2"

    def __init__(
        self,
        *,
        model_name: str,
        training: dict[str, Any] | str,
        training_set: dict[str, Any] | str,
        dataset_version: dict[str, Any] | str,
        materialization: dict[str, Any] | str | None = None,
        min_metrics: dict[str, float] | None = None,
        champion_alias: str = "champion",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [Asset(model_asset_uri(model_name))] if "{{" not in model_name else [])
        super().__init__(**kwargs)
        self.model_name = model_name
        self.training = training
        self.training_set = training_set
        self.dataset_version = dataset_version
        self.materialization = materialization
        self.min_metrics = min_metrics
        self.champion_alias = champion_alias
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        training = as_dict(self.training, "training")
        training_set = as_dict(self.training_set, "training_set")
        dataset = as_dict(self.dataset_version, "dataset_version")
        window = as_dict(self.materialization, "materialization") if self.materialization else None
        client = self.hook.get_client()
        run_id = training["run_id"]
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            raise RegistryError(f"training run {run_id} not found in MLflow ({self.hook.settings.tracking_uri}): {err}")

        self._ensure_registered_model(client)
        version = self._find_version(client, run_id)
        if version is None:
            lineage = {
                "mlops.dataset_md5": dataset.get("md5", ""),
                "mlops.dataset_rev": dataset.get("rev", ""),
                "mlops.dataset_path": dataset.get("path", ""),
                "mlops.training_set_hash": training_set.get("hash", ""),
                "mlops.feature_service": training_set.get("feature_service", ""),
                **{f"mlops.{k}": v for k, v in run_identity(context).items()},
            }
            version = client.create_model_version(
                name=self.model_name, source=training["model_uri"], run_id=run_id, tags=lineage,
                model_id=training["model_uri"].removeprefix("models:/") if training["model_uri"].startswith(
                    "models:/m-") else None,
            )
            self.log.info("Registered %s version %s from run %s", self.model_name, version.version, run_id)
        else:
            self.log.info("Version %s of %s already exists for run %s (retry): reusing it",
                          version.version, self.model_name, run_id)
        version = self._wait_ready(client, version.version)

        record = build_record(
            context=context, run=run, dataset=dataset, training_set=training_set, materialization=window,
            model_name=self.model_name, model_version=str(version.version),
        )
        self._log_record(client, run_id, record)
        for key, value in record_tags(record).items():
            client.set_model_version_tag(self.model_name, version.version, key, value)

        aliases = self._assign_first_champion(client, str(version.version), training.get("metrics", {}), context)
        url = self.hook.model_version_url(self.model_name, version.version)
        MlflowModelVersionLink.persist(context, url)
        MlflowRunLink.persist(context, training.get("run_url"))
        result = {
            "model_name": self.model_name,
            "version": str(version.version),
            "run_id": run_id,
            "model_uri": f"models:/{self.model_name}/{version.version}",
            "aliases": aliases,
            "url": url,
            "record_uri": f"runs:/{run_id}/reproducibility/record.json",
        }
        self.log.info("SUMMARY register model=%s version=%s aliases=%s run=%s url=%s",
                      self.model_name, version.version, aliases, run_id, url)
        return result

    def _ensure_registered_model(self, client: Any) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(self.model_name, tags={"mlops.managed_by": "airflow-provider-mlops"})
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _find_version(self, client: Any, run_id: str) -> Any | None:
        found = client.search_model_versions(f"name = '{self.model_name}' and run_id = '{run_id}'")
        return min(found, key=lambda v: int(v.version)) if found else None

    def _wait_ready(self, client: Any, version: str, timeout_s: float = 300) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            mv = client.get_model_version(self.model_name, version)
            if mv.status == "READY":
                return mv
            if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise RegistryError(
                    f"{self.model_name} version {version} is {mv.status} ({mv.status_message}); the model "
                    "artifact may be missing or unreadable by the registry"
                )
            time.sleep(1)

    def _log_record(self, client: Any, run_id: str, record: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="mlops-record-") as tmp:
            path = Path(tmp) / "record.json"
            path.write_text(json.dumps(record, indent=2, sort_keys=True))
            client.log_artifact(run_id, str(path), artifact_path="reproducibility")

    def _assign_first_champion(self, client: Any, version: str, metrics: dict[str, float], context: Any) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            current = client.get_model_version_by_alias(self.model_name, self.champion_alias)
        except MlflowException:
            current = None
        if current is not None:
            aliases = list(client.get_model_version(self.model_name, version).aliases)
            self.log.info("%s already has %s=v%s; v%s waits for evaluation and approval",
                          self.model_name, self.champion_alias, current.version, version)
            return aliases
        minimums = {k: float(v) for k, v in (self.min_metrics or {}).items()}
        passed, reasons = check_thresholds(metrics, minimums)
        if not passed:
            self.log.warning("No %s yet, and v%s does not qualify: %s", self.champion_alias, version, "; ".join(reasons))
            return []
        now = datetime.now(UTC).isoformat()
        ident = run_identity(context)
        ledger = {
            "mlops.promotion.alias": self.champion_alias,
            "mlops.promotion.at": now,
            "mlops.promotion.approved_by": "policy:first-champion (absolute thresholds, no previous champion)",
            "mlops.promotion.previous": "none",
            "mlops.promotion.evidence": json.dumps({"metrics": metrics, "min_metrics": minimums}),
            "mlops.promotion.dag_run": f"{ident['dag_id']}/{ident['run_id']}",
        }
        for key, value in ledger.items():
            client.set_model_version_tag(self.model_name, version, key, value)
        client.set_registered_model_alias(self.model_name, self.champion_alias, version)
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset) and outlet.uri == model_asset_uri(self.model_name):
                context["outlet_events"][outlet].extra = {
                    "alias": self.champion_alias, "version": version, "previous": None, "at": now,
                    "approved_by": ledger["mlops.promotion.approved_by"],
                }
        self.log.info("%s -> v%s (first champion; %s)", self.champion_alias, version, metrics)
        return [self.champion_alias]
