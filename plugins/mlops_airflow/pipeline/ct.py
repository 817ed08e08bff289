"""``continuous_training(spec)``: the whole continuous-training loop of one model as a task group.

land -> validate -> guard -> version -> [materialise (mapped windows) -> skew] -> training set -> train ->
register -> drift -> [has challenger -> holdout -> evaluate -> approve -> promote] -> summarize

Stages a spec does not use are left out, never skipped at run time: no ``suite`` = no validation gate (the guard
then needs no data gate); no ``dataset_path`` = no DVC (the batch is versioned in ``<root>/datasets/<model>/`` by md5);
no ``feature_service`` = no Feast (the training set is the versioned rows' ``features``); no ``holdout`` = no
evaluation (a new version stays challenger). Task ids are the reference DAG's; with ``group_id`` they are
prefixed (``<group_id>.land_batch``), so several models fit in one DAG.

DAG params read when present (defaults otherwise): ``day``, ``training_window_days``, ``cooldown_hours`` (24),
``promote_to`` (``champion``). A ``day`` that is not a complete past day, or a bad ``training_window_days``, fails
``land_batch`` at once (``AirflowFailException``, no retries; ``pipeline.days.check_day``), before anything is
landed, versioned or announced. Every artefact (landed batch, quarantine, validation results, dataset version,
training set, holdout, scores, reports, run summary) lives at a URI under the root (``storage.data_root``: ``file://``
or ``s3://``); XCom carries those URIs. Parsing imports no heavy library and reads no connection.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, TaskGroup, task

from mlops_airflow.assets import dvc_asset_uri
from mlops_airflow.pipeline.spec import ModelSpec, source_kind


def _root(path: str | None) -> str | None:
    """``path`` resolved against ``[mlops] project_root`` when relative (a ``module:function`` stays as it is)."""
    if path is None or "://" in path or (":" in path and not path.split(":")[0].endswith(".py")
                                         and "/" not in path.split(":")[0]):
        return path
    if Path(path).is_absolute():
        return path
    from mlops_airflow.config import project_root

    return str(project_root() / path)


def _data_root(data_root: str | None) -> str:
    """The loop's artefact root as a URI: ``data_root``, else ``[mlops] data_root`` (``storage.data_root``)."""
    from mlops_airflow import storage

    return storage.data_root(data_root)


def _feast_kwargs(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.feast_conn_id:
        out["feast_conn_id"] = spec.feast_conn_id
    if spec.feast_repo:
        out["repo_path"] = _root(spec.feast_repo)
    return out


def _dvc_kwargs(spec: ModelSpec) -> dict[str, Any]:
    return {"dvc_conn_id": spec.dvc_conn_id} if spec.dvc_conn_id else {}


def check_feature_service(spec: ModelSpec) -> None:
    """Fail (naming ``ModelSpec.feature_service`` and the known services) when Feast does not know the service."""
    from mlops_airflow.exceptions import FeatureStoreError
    from mlops_airflow.hooks.feast_store import FeastHook

    kwargs = _feast_kwargs(spec)
    hook = FeastHook(feast_conn_id=kwargs.get("feast_conn_id", FeastHook.default_conn_name),
                     repo_path=kwargs.get("repo_path"))
    try:
        hook.get_feature_service(hook.get_store(), spec.feature_service)
    except FeatureStoreError as err:
        raise FeatureStoreError(f"ModelSpec.feature_service: {err}") from None


def continuous_training(spec: ModelSpec, *, group_id: str | None = None, data_root: str | None = None,
                        materialize_overlap: timedelta = timedelta(hours=6),
                        materialize_max_window: timedelta = timedelta(hours=12), skew_sample_size: int = 200,
                        training_timeout: timedelta = timedelta(hours=2)) -> TaskGroup:
    """Build the CT loop of ``spec`` in the current DAG (see the module docstring); returns its task group.

    :param spec: the model.
    :param group_id: task-group id; given, task ids are prefixed with it (default: unprefixed reference ids).
    :param data_root: URI (``s3://bucket/prefix``, ``file:///...``) or local folder of landed batches, training
        sets, reports, scores and the run summary (default ``[mlops] data_root``); every artefact location is
        built from it with ``storage.join``. Give each model its own when several share a deployment.
    :param materialize_overlap: late data re-read before the landed day when materialising (Feast).
    :param materialize_max_window: the longest window one materialisation task reads (Feast).
    :param skew_sample_size: entities compared by the training-serving skew check (Feast).
    :param training_timeout: execution timeout of the training task.
    """
    from mlops_airflow.operators.approval import approval_gate
    from mlops_airflow.operators.drift import DataDriftOperator
    from mlops_airflow.operators.promotion import PromoteModelOperator
    from mlops_airflow.operators.registry import RegisterModelOperator
    from mlops_airflow.operators.retrain_guard import RetrainGuardOperator
    from mlops_airflow.operators.training import train_model_task
    from mlops_airflow.storage import join

    root = _data_root(data_root)
    prefix = f"{group_id}." if group_id else ""

    def pull(task_id: str, expr: str = "") -> str:
        return f"{{{{ ti.xcom_pull(task_ids='{prefix}{task_id}'){expr} }}}}"

    base_dir = _root(".")
    with TaskGroup(group_id=group_id or "continuous_training", prefix_group_id=bool(group_id),
                   tooltip=f"continuous training of {spec.name}") as group:

        @task(task_id="land_batch", retries=2)
        def land_batch(source_params: dict, params: dict | None = None, logical_date: Any = None) -> dict:
            """Land the day's batch from ``ModelSpec.source``; check the spec's columns (and feature service)."""
            from datetime import UTC, datetime

            from mlops_airflow.pipeline.days import land_day
            from mlops_airflow.pipeline.sources import land
            from mlops_airflow.storage import name

            params = params or {}
            day = land_day(params, logical_date)  # a bad day param fails here, before anything is written
            if spec.uses_feast:
                check_feature_service(spec)
            landed = land(spec.source, day, join(root, "landing"), params=source_params, base_dir=base_dir,
                          required=spec.required_columns())
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            end = start + timedelta(days=1)
            window_days = params.get("training_window_days")
            return {**landed, "day": day.isoformat(), "file_name": name(landed["path"]),
                    "start": start.isoformat(), "end": end.isoformat(),
                    "train_from": (end - timedelta(days=int(window_days))).isoformat() if window_days else None}

        landed = land_batch(spec.source_params)
        upstream: Any = landed
        gate = None
        if spec.suite:
            from mlops_airflow.operators.data_validation import DataValidationGateOperator

            gate = DataValidationGateOperator(
                task_id="validate_batch", data_path=pull("land_batch", "['path']"), suite_path=_root(spec.suite),
                quarantine_dir=join(root, "quarantine"), results_dir=join(root, "validation"),
                key_columns=list(spec.entity_columns), timestamp_column=spec.timestamp_column,
            )
            landed >> gate
            upstream = gate

        # Guard rails after the data gate, then the cool-down; its decision goes into the new model's record.
        guard = RetrainGuardOperator(
            task_id="retrain_guard", model_name=spec.name,
            data_gate=pull("validate_batch") if gate is not None else None, require_data_gate=gate is not None,
            cooldown="{{ params.cooldown_hours | default(24) }}",
            as_of="{{ params.day ~ 'T23:59:59+00:00' if params.day else '' }}",
        )
        upstream >> guard

        if spec.uses_dvc:
            from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator

            version = DvcVersionDatasetOperator(
                task_id="version_dataset", source_path=pull("land_batch", "['path']"), dataset_path=spec.dataset_path,
                file_name=pull("land_batch", "['file_name']"), outlets=[Asset(dvc_asset_uri("data_repo",
                                                                                          spec.dataset_path))],
                **_dvc_kwargs(spec),
            )
            dataset = version.output
        else:
            @task(task_id="version_dataset", retries=2)
            def version_locally(batch: dict) -> dict:
                """No DVC: the batch joins the model's dataset folder (a URI), versioned by the md5 of its files."""
                from mlops_airflow.pipeline.datasets import version_locally as version_folder

                return version_folder(batch["path"], join(root, "datasets", spec.name))

            dataset = version_locally(landed)
            version = dataset.operator
        guard >> version

        materialize = None
        if spec.uses_feast:
            training_set, materialize, skew = _feast_stages(spec, pull, root, dataset, version,
                                                            materialize_overlap, materialize_max_window,
                                                            skew_sample_size)
        else:
            @task(task_id="build_training_set", retries=2)
            def build_training_set(version_info: dict, batch: dict) -> dict:
                """No Feast: the training set is the dataset version's keys, features and label."""
                from mlops_airflow.pipeline.datasets import build_training_set as build

                return build(version_info, model_name=spec.name, output_dir=join(root, "training_sets"),
                             features=list(spec.features or ()), label=spec.label,
                             entity_columns=list(spec.entity_columns), timestamp_column=spec.timestamp_column,
                             task_type=spec.task_type, entity_start=batch.get("train_from"),
                             entity_end=batch.get("end"), dvc_conn_id=spec.dvc_conn_id)

            training_set = build_training_set(dataset, landed)
            skew = None

        ts_output = training_set.output if hasattr(training_set, "output") else training_set  # operator | XComArg
        optional = {k: v for k, v in {"entrypoint": _root(spec.entrypoint), "python": spec.python,
                                      "requirements": _root(spec.requirements)}.items() if v}
        # The model's feature repository goes into the record (reproduction rebuilds from the same one).
        feast_tags = {f"mlops.{k}": v for k, v in _feast_kwargs(spec).items() if spec.uses_feast}
        feast_tags = {("mlops.feast_repo" if k == "mlops.repo_path" else k): v for k, v in feast_tags.items()}
        if feast_tags:
            optional["extra_tags"] = feast_tags
        train = train_model_task(
            task_id="train_model", training_set=ts_output, dataset_version=dataset, experiment_name=spec.experiment,
            training_config=dict(spec.training_config), task_type=spec.task_type,
            execution_timeout=training_timeout, **optional,
        )
        min_train, max_train = spec.training_thresholds()
        register = RegisterModelOperator(
            task_id="register_model", model_name=spec.name, training=train.output, training_set=ts_output,
            dataset_version=dataset, materialization=materialize.output if materialize is not None else None,
            min_metrics=min_train or None, max_metrics=max_train or None, retrain=guard.output,
            label_column=spec.label, task_type=spec.task_type,
        )
        train >> register
        if skew is not None:
            skew >> register

        drift = DataDriftOperator(
            task_id="check_drift", reference_path=pull("build_training_set", "['uri']"),
            current_path=pull("land_batch", "['path']"),
            columns=list(spec.monitored_columns or spec.features or ()) or None,
            exclude_columns=spec.keys, label_column=spec.label, report_dir=join(root, "reports"), model_name=spec.name,
            emit_retrain_event=False,  # the batch vs its own training set: retraining is monitoring's call
        )
        register >> drift
        last = [drift]
        if spec.holdout is not None:
            last.append(_evaluation_stages(spec, pull, prefix, root, base_dir, register, dataset, drift,
                                           approval_gate, PromoteModelOperator, ts_output))

        @task(task_id="summarize", retries=2, trigger_rule="none_failed")
        def summarize(ti: Any = None) -> dict:
            """One summary of the run for people and for the scenario runner (also written as JSON)."""
            from mlops_airflow.pipeline.summary import write_ct_summary

            return write_ct_summary(lambda t: ti.xcom_pull(task_ids=f"{prefix}{t}"), ti, root, spec)

        last >> summarize()
    return group


def _feast_stages(spec: ModelSpec, pull: Any, root: str, dataset: Any, version: Any, overlap: timedelta,
                  max_window: timedelta, sample_size: int) -> tuple[Any, Any, Any]:
    """Materialisation (one mapped task per bounded window, then their record), skew check, training set."""
    from mlops_airflow.operators.feast_materialize import (
        FeastMaterializationRecordOperator,
        FeastMaterializationWindowsOperator,
        FeastMaterializeOperator,
    )
    from mlops_airflow.operators.feast_skew import FeatureSkewCheckOperator
    from mlops_airflow.operators.feast_training_set import FeastTrainingSetOperator
    from mlops_airflow.storage import join

    feast = _feast_kwargs(spec)
    plan = FeastMaterializationWindowsOperator(
        task_id="plan_materialization", start=pull("land_batch", "['start']"), end=pull("land_batch", "['end']"),
        overlap=overlap, max_window=max_window,
    )
    version >> plan
    windows = FeastMaterializeOperator.partial(
        task_id="materialize_window", max_active_tis_per_dagrun=2, **feast,
    ).expand(window=plan.output)
    asset = spec.feature_asset or f"feast://{spec.name}/{spec.feature_service}"
    materialize = FeastMaterializationRecordOperator(
        task_id="materialize_features", windows=windows.output, outlets=[Asset(asset)],
    )
    # Training-serving skew on a sample of the landed batch's entities (memory bounded by one day's rows).
    skew = FeatureSkewCheckOperator(
        task_id="check_feature_skew", feature_service=spec.feature_service,
        entity_df_path=pull("land_batch", "['path']"), as_of=pull("land_batch", "['end']"),
        lookback=timedelta(hours=30), sample_size=sample_size, report_dir=join(root, "reports"), **feast,
    )
    training_set = FeastTrainingSetOperator(
        task_id="build_training_set", dataset_version=dataset, feature_service=spec.feature_service,
        output_dir=join(root, "training_sets"), track_with_dvc=spec.uses_dvc, label_column=spec.label,
        entity_columns=list(spec.entity_columns), timestamp_column=spec.timestamp_column,
        entity_start=pull("land_batch", "['train_from']"), entity_end=pull("land_batch", "['end']"),
        **feast, **_dvc_kwargs(spec),
    )
    materialize >> [training_set, skew]
    return training_set, materialize, skew


def _evaluation_stages(spec: ModelSpec, pull: Any, prefix: str, root: str, base_dir: str | None, register: Any,
                       dataset: Any, drift: Any, approval_gate: Any, promote_cls: Any,
                       training_set: Any = None) -> Any:
    """has challenger -> holdout -> evaluate -> approve -> promote; returns the promotion task."""
    from mlops_airflow.operators.evaluation import EvaluateChallengerOperator
    from mlops_airflow.storage import join

    source_kind(spec.holdout, "holdout")
    register_id, land_id = register.task_id, f"{prefix}land_batch"

    @task.short_circuit(task_id="has_challenger", retries=2, ignore_downstream_trigger_rules=False)
    def has_challenger(ti: Any = None) -> bool:
        """Evaluate -> approve -> promote only when a champion existed (the first-model flow is unchanged)."""
        return "challenger" in (ti.xcom_pull(task_ids=register_id) or {}).get("aliases", [])

    @task(task_id="holdout_batch", retries=2)
    def holdout_batch(holdout_params: dict, ti: Any = None) -> dict:
        """A fresh labelled holdout neither model trained on (``ModelSpec.holdout``, ``holdout_day_offset``)."""
        from datetime import date

        from mlops_airflow.pipeline.sources import land

        day = date.fromisoformat(ti.xcom_pull(task_ids=land_id)["day"]) + timedelta(days=spec.holdout_day_offset)
        need = {k: v for k, v in spec.required_columns().items() if k != "monitored_columns"}
        landed = land(spec.holdout, day, join(root, "holdout"), params=holdout_params, base_dir=base_dir,
                      required=need, field_name="holdout")
        return {**landed, "day": day.isoformat()}

    min_holdout, max_holdout = spec.holdout_thresholds()
    evaluate = EvaluateChallengerOperator(
        task_id="evaluate_challenger", model_name=spec.name, challenger=register.output,
        holdout_path=pull("holdout_batch", "['path']"), min_metrics=min_holdout or None,
        max_metrics=max_holdout or None, min_improvement=spec.min_improvement, primary_metric=spec.primary,
        n_boot=spec.n_boot, output_dir=join(root, "scores"), label_column=spec.label, task_type=spec.task_type,
        python=spec.python,  # scores both models where they load (the training environment), default configured
    )
    alias = "{{ params.promote_to | default('champion') }}"
    approve = approval_gate(  # [mlops] approval_policy: hitl (default) | auto (the local demo), or the spec's
        task_id="approve_promotion", model_name=spec.name, version=register.output, verdict=evaluate.output,
        dataset_version=dataset, drift=drift.output, training_set=training_set, alias=alias,
        policy=spec.approval_policy,  # the training set: its window, rows and hash are shown to the approver
    )
    promote = promote_cls(
        task_id="promote_model", model_name=spec.name, version=register.output, approval=approve.output,
        verdict=evaluate.output, alias=alias,  # champion, or canary (monitoring decides on labelled traffic)
    )
    drift >> has_challenger() >> holdout_batch(dict(spec.holdout_params)) >> evaluate >> approve >> promote
    return promote
