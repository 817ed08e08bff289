"""Model registry: register a trained model version with its lineage and reproducibility record.

Promotion uses MLflow aliases (``champion``, ``challenger``, ``canary``, ``shadow``), never the
deprecated stages. This operator gives ``champion`` only to a *first* model, and only when it passes
the absolute thresholds (no thresholds configured = no champion: the safe default). When a champion
exists, the new version becomes ``challenger`` (a candidate: no traffic) and waits for evaluation,
approval and ``PromoteModelOperator``. Both moves go through the promotion lock and ledger
(``registry/aliases.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.assets import model_asset_uri
from mlops_airflow.exceptions import RegistryError
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.lineage import RegisterModelLineageMixin
from mlops_airflow.links.mlflow import MlflowModelVersionLink, MlflowRunLink
from mlops_airflow.operators._common import as_dict, run_identity
from mlops_airflow.operators.promotion import emit_model_event
from mlops_airflow.record import RECORD_ARTIFACT, build_record, record_tags
from mlops_airflow.registry.aliases import move_alias
from mlops_airflow.registry.ledger import event_extra
from mlops_airflow.registry.tags import task_tags
from mlops_airflow.registry.versions import (
    CONFIG_TAG,
    model_artifact_present,
    now_iso,
    outage_cause,
    registry_outage_guard,
    run_lineage,
    same_lineage_version,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


def check_thresholds(metrics: dict[str, float], min_metrics: dict[str, float] | None,
                     max_metrics: dict[str, float] | None = None) -> tuple[bool, list[str]]:
    """Absolute thresholds of a first model (``stats.check_thresholds``): ``metric >= minimum`` for ``min_metrics``
    (e.g. ``val_auc``), ``metric <= maximum`` for ``max_metrics`` (e.g. ``val_rmse``). None/empty thresholds never
    pass (safe default)."""
    from mlops_airflow.stats import check_thresholds as _check

    return _check(
        metrics,
        min_metrics,
        max_metrics,
        unconfigured="no absolute thresholds configured (min_metrics/max_metrics): a model is never made champion "
        "without them",
        missing="metric {name} missing from the training run (it logged {known})",
    )


def task_of(training: dict[str, Any], training_set: dict[str, Any], task_type: str | None,
            label_column: str | None) -> tuple[str, str | None]:
    """``(task_type, label)`` of a trained model: the parameters, else the training XCom, else the training set;
    the task type defaults to binary classification. A parameter that contradicts the training run is an error."""
    from mlops_airflow.task_types import validate_task_type

    trained_task = training.get("task_type") or training_set.get("task_type")
    if task_type and trained_task and validate_task_type(task_type) != validate_task_type(trained_task):
        raise RegistryError(
            f"task_type={task_type!r} but the training run says {trained_task!r}: nothing registered. Fix task_type "
            "(or leave it unset to take the training run's)"
        )
    trained_label = training.get("label") or training_set.get("label")
    if label_column and trained_label and str(label_column) != str(trained_label):
        raise RegistryError(
            f"label_column={label_column!r} but the model was trained on label {trained_label!r}: nothing "
            "registered. Fix label_column (or leave it unset to take the training run's)"
        )
    return validate_task_type(task_type or trained_task), (label_column or trained_label or None)


def as_thresholds(value: Any, field: str) -> dict[str, Any]:
    """Thresholds given as a dict, or rendered from a template as JSON text; None/empty = none."""
    if value in (None, "", "None"):
        return {}
    return as_dict(value, field) if isinstance(value, str) else dict(value)


class RegisterModelOperator(RegisterModelLineageMixin, BaseOperator):
    """Register the model of a training run as a new version of ``model_name`` (idempotent).

    Writes the reproducibility record (``reproducibility/record.json`` on the run) and lineage tags
    on the version. A retry finds the version it already created for the run instead of creating
    another. Idempotent on data too: a training with the same lineage as an existing version (dataset rev,
    training-set hash, entrypoint and requirements sha256, training config sha256 = version tag
    ``mlops.training_config_sha256``), e.g. the CT DAG run twice for one day, *adopts* that version: XCom
    ``adopted_existing: true`` with its ``version`` and ``run_id`` (this training's run is ``trained_run_id``,
    tagged ``mlops.registered_as``). Otherwise XCom ``lineage`` says which field differs from the closest
    version, or that none has this data. The MLflow server going away mid-task fails the task in seconds with
    one line (cause, what was done, next step); the retry completes it without a duplicate version, alias move
    or ledger entry. With no ``champion`` yet, the version becomes champion if it passes ``min_metrics`` and
    ``max_metrics``. The version is tagged with what it predicts (``mlops.task_type``, ``mlops.label``), which
    the evaluation, rollback, quality and canary operators read back.

    :param model_name: registered model name (templated).
    :param training: upstream training result ``{run_id, model_uri, metrics}`` (templated / XCom).
    :param training_set: upstream training set ``{uri, hash, feature_service, ...}`` (templated / XCom).
    :param dataset_version: upstream DVC version (templated / XCom).
    :param materialization: upstream materialisation window (templated / XCom), optional.
    :param min_metrics: absolute minimums for a first champion, e.g. ``{"val_auc": 0.7}`` (templated).
    :param max_metrics: absolute maximums (lower is better) for a first champion, e.g. ``{"val_rmse": 70}``
        (templated).
    :param task_type: ``binary_classification`` or ``regression`` (templated); None = the training XCom's
        ``task_type`` (else the training set's, else binary classification).
    :param label_column: the label the model predicts (templated); None = the training XCom's ``label`` (else the
        training set's).
    :param challenger_alias: alias the new version gets when a champion exists (None = none).
    :param retrain: the ``RetrainGuardOperator`` decision of this run (templated / XCom), optional: its reason and
        trigger go into the record (``trigger``) and the version's ``mlops.retrain.*`` tags, and its ``decided_at``
        into the registered model's ``mlops.last_retrain_at`` tag (the guard's cool-down clock).
    """

    template_fields: Sequence[str] = (
        "model_name", "training", "training_set", "dataset_version", "materialization", "min_metrics", "max_metrics",
        "retrain", "model_task_type", "label_column",
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
        max_metrics: dict[str, float] | None = None,
        task_type: str | None = None,
        label_column: str | None = None,
        champion_alias: str = "champion",
        challenger_alias: str | None = "challenger",
        retrain: dict[str, Any] | str | None = None,
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
        self.max_metrics = max_metrics
        self.model_task_type = task_type
        self.label_column = label_column
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self.retrain = retrain
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        self.hook.ensure_reachable()
        with registry_outage_guard(
            self.hook, f"register_model of {self.model_name}",
            "it finds the version this training already created, or the one with the same lineage, and completes "
            "or drops a half-done alias move from the ledger's pending intent",
        ) as done:
            return self._register(context, done)

    def _register(self, context: Context, done: list[str]) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        training = as_dict(self.training, "training")
        training_set = as_dict(self.training_set, "training_set")
        dataset = as_dict(self.dataset_version, "dataset_version")
        window = as_dict(self.materialization, "materialization") if self.materialization else None
        retrain = as_dict(self.retrain, "retrain") if self.retrain not in (None, "", "None") else None
        run_id, model_uri = training["run_id"], training.get("model_uri") or ""
        task_type, label = task_of(training, training_set, self.model_task_type, self.label_column)
        try:
            run = self.hook.get_run(run_id)
        except MlflowException as err:
            if outage_cause(err):
                raise
            raise RegistryError(
                f"training run {run_id} not found in MLflow ({self.hook.settings.tracking_uri}, {err.error_code}): "
                f"nothing registered for {self.model_name}; check the train task's XCom"
            ) from None
        self._check_model_logged(run_id, model_uri)

        self._ensure_registered_model()
        lineage = run_lineage(run, dataset.get("rev"), training_set.get("hash"), training)
        adopted, why = False, "a retry: the version of this training run"
        version = self._find_version(run_id)
        if version is None:
            version, why = same_lineage_version(self.hook, self.model_name, lineage, run_id, run.data.params)
            adopted = version is not None
        if adopted:
            self.log.info("Adopting %s version %s instead of registering run %s again: %s", self.model_name,
                          version.version, run_id, why)
            self.hook.set_run_tags(run_id, {"mlops.registered_as": f"models:/{self.model_name}/{version.version} "
                                            "(adopted: same lineage)"})
        elif version is None:
            tags = {
                "mlops.dataset_md5": dataset.get("md5", ""),
                "mlops.dataset_rev": dataset.get("rev", ""),
                "mlops.dataset_path": dataset.get("path", ""),
                "mlops.training_set_hash": training_set.get("hash", ""),
                "mlops.feature_service": training_set.get("feature_service", ""),
                CONFIG_TAG: lineage[CONFIG_TAG],
                **{f"mlops.{k}": v for k, v in run_identity(context).items()},
                **task_tags(task_type, label),
            }
            version = self.hook.create_model_version(
                name=self.model_name, source=model_uri, run_id=run_id, tags=tags,
                model_id=model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None,
            )
            self.log.info("Registered %s version %s from run %s (a new version: %s)", self.model_name,
                          version.version, run_id, why)
        else:
            self.log.info("Version %s of %s already exists for run %s (retry): reusing it",
                          version.version, self.model_name, run_id)
        done.append(f"{'adopted' if adopted else 'created'} v{version.version}")
        version = self._wait_ready(version.version)
        source_run = self.hook.get_run(version.run_id) if adopted else run

        if not adopted or not (version.tags or {}).get("mlops.record_sha256"):
            record = build_record(
                context=context, run=source_run, dataset=dataset, training_set=training_set, materialization=window,
                model_name=self.model_name, model_version=str(version.version),
                runtime=self._runtime(source_run.info.run_id),
                model_uri=(source_run.data.tags.get("mlops.model_uri") or version.source) if adopted else model_uri,
                trigger=retrain, training=training,
            )
            self.hook.write_json_artifact(source_run.info.run_id, record, RECORD_ARTIFACT)
            for key, value in {**record_tags(record), **task_tags(task_type, label),
                               CONFIG_TAG: lineage[CONFIG_TAG]}.items():
                self.hook.set_model_version_tag(self.model_name, version.version, key, value)
            record_sha = record["record_sha256"]
            done.append("record written")
        else:  # the adopted version's record describes it already (its run, its registration)
            record_sha = version.tags["mlops.record_sha256"]
        if retrain and retrain.get("decided_at"):
            from mlops_airflow.monitoring.retrain import LAST_RETRAIN_TAG

            self.hook.set_registered_model_tag(self.model_name, LAST_RETRAIN_TAG, str(retrain["decided_at"]))

        metrics = ({k: v for k, v in source_run.data.metrics.items() if k.startswith("val_")} if adopted
                   else training.get("metrics", {}))
        aliases = self._assign_alias(str(version.version), source_run.info.run_id, metrics, context)
        url = self.hook.model_version_url(self.model_name, version.version)
        MlflowModelVersionLink.persist(context, url)
        MlflowRunLink.persist(context, training.get("run_url"))
        result = {
            "model_name": self.model_name,
            "version": str(version.version),
            "run_id": source_run.info.run_id,
            "trained_run_id": run_id,
            "model_uri": f"models:/{self.model_name}/{version.version}",
            "aliases": aliases,
            "url": url,
            "record_uri": f"runs:/{source_run.info.run_id}/{RECORD_ARTIFACT}",
            "record_sha256": record_sha,
            "task_type": task_type,
            "label": label,
            "adopted_existing": adopted,
            "lineage": why,
        }
        result["retrain_reason"] = (retrain or {}).get("reason")
        log_summary(self.log, "register", model=self.model_name, version=version.version, adopted_existing=adopted,
                    task_type=task_type, label=label, aliases=aliases, run=run_id, record=result["record_uri"],
                    reason=repr(result["retrain_reason"]), lineage=repr(why), url=url)
        return result

    def _check_model_logged(self, run_id: str, model_uri: str) -> None:
        """The run must have logged the model it claims; registering a missing artifact would fail later."""
        from mlflow.exceptions import MlflowException

        ok = False
        try:
            if model_uri.startswith("models:/m-"):
                logged = self.hook.get_logged_model(model_uri.removeprefix("models:/"))
                ok = logged.source_run_id == run_id and model_artifact_present(
                    self.hook, type("MV", (), {"source": model_uri, "model_id": logged.model_id})())
            elif model_uri.startswith("runs:/"):
                ok = model_artifact_present(self.hook, type("MV", (), {"source": model_uri, "model_id": None})())
            else:
                ok = bool(model_uri)
        except MlflowException:
            ok = False
        if not ok:
            raise RegistryError(
                f"run {run_id} has no logged model at {model_uri or '(no model_uri)'}: nothing registered for "
                f"{self.model_name}. Check the training job log for its log_model step (ctx.log_model), then retrain"
            )

    def _runtime(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``runtime/runtime.json`` (GPU, driver, CUDA, determinism); None if the job wrote none."""
        try:
            return self.hook.read_json_artifact(run_id, "runtime/runtime.json")
        except Exception:  # noqa: BLE001 - older jobs: the record falls back to the mlops.runtime.* tags
            self.log.info("run %s has no runtime/runtime.json; the record uses its mlops.runtime.* tags", run_id)
            return None

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.hook.create_registered_model(self.model_name, tags={"mlops.managed_by": "airflow-provider-mlops"})
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _find_version(self, run_id: str) -> Any | None:
        found = self.hook.search_model_versions(f"name = '{self.model_name}' and run_id = '{run_id}'")
        return min(found, key=lambda v: int(v.version)) if found else None

    def _wait_ready(self, version: str, timeout_s: float = 300) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            mv = self.hook.get_model_version(self.model_name, version)
            if mv.status == "READY":
                return mv
            if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise RegistryError(
                    f"{self.model_name} version {version} is {mv.status} after {timeout_s:.0f} s "
                    f"({mv.status_message}); the model artifact may be missing or unreadable by the registry. Check "
                    "the run's artifacts in MLflow and the server's artifact store, then clear this task (the retry "
                    "reuses this version, it does not register a duplicate)"
                )
            time.sleep(1)

    def _assign_alias(self, version: str, run_id: str, metrics: dict[str, float],
                      context: Any) -> list[str]:
        """First model: champion if it passes ``min_metrics``/``max_metrics``. Later models: challenger."""
        aliases = self.hook.get_registered_model(self.model_name).aliases
        current = aliases.get(self.champion_alias)
        first = {"approved_by": "policy:first-champion (absolute thresholds, no previous champion)",
                 "approved_at": now_iso(), "policy": "first-champion"}
        if current is not None:
            if str(current) == version:
                # A retry of the task that made this version champion (or an adopted champion): nothing moves, but
                # a try that stopped after the move and before its ledger append (server or worker gone) left a
                # pending intent, which move_alias completes under the lock (one entry, announced once).
                entry, changed = move_alias(
                    self.hook, model_name=self.model_name, alias=self.champion_alias, version=version, approval=first,
                    context=context, action="first-champion", log=self.log, only_if_unset=True,
                )
                emit_model_event(self, context, self.model_name, event_extra(entry, changed))
            elif self.challenger_alias:
                approval = {"approved_by": "policy:register (challenger = candidate awaiting evaluation; no traffic)",
                            "approved_at": now_iso(), "policy": "register"}
                entry, changed = move_alias(
                    self.hook, model_name=self.model_name, alias=self.challenger_alias, version=version,
                    approval=approval, context=context, action="candidate", log=self.log,
                )
                emit_model_event(self, context, self.model_name, event_extra(entry, changed))
            if str(current) != version:
                self.log.info("%s already has %s=v%s; v%s waits for evaluation and approval",
                              self.model_name, self.champion_alias, current, version)
            return sorted(self.hook.get_model_version(self.model_name, version).aliases)
        minimums = {k: float(v) for k, v in (as_thresholds(self.min_metrics, "min_metrics")).items()}
        maximums = {k: float(v) for k, v in (as_thresholds(self.max_metrics, "max_metrics")).items()}
        passed, reasons = check_thresholds(metrics, minimums, maximums)
        if not passed:
            self.log.warning("No %s yet, and v%s does not qualify: %s", self.champion_alias, version,
                             "; ".join(reasons))
            return sorted(self.hook.get_model_version(self.model_name, version).aliases)
        verdict = {"passed": True, "reasons": ["first champion: no previous champion; absolute thresholds met"],
                   "metrics": {"challenger": metrics, "champion": None}, "min_metrics": minimums,
                   "max_metrics": maximums}
        evidence_uri = self.hook.write_json_artifact(run_id, {**verdict, "at": now_iso()},
                                                   "evaluation/first-champion.json")
        entry, changed = move_alias(
            self.hook, model_name=self.model_name, alias=self.champion_alias, version=version, approval=first,
            context=context, evidence_uri=evidence_uri, verdict={**verdict, "evidence_uri": evidence_uri},
            action="first-champion", log=self.log, only_if_unset=True,
        )
        emit_model_event(self, context, self.model_name, event_extra(entry, changed))
        self.log.info("%s -> v%s (first champion; %s)", self.champion_alias, version, metrics)
        return sorted(self.hook.get_model_version(self.model_name, version).aliases)
