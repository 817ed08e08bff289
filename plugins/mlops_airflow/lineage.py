"""OpenLineage for the pack: dataset names, ML facets, hook-level lineage and operator lineage.

Names (namespace / name): a DVC version ``dvc://<repo>`` / ``<path>@<rev>`` (``<repo>``: the git URL's host and path
without credentials or ``.git``, or the working copy's path); a Feast feature view ``feast://<project>`` / ``<view>``;
a training set ``feast://<project>`` / ``training_sets/<service>/<hash[:16]>`` (without Feast: ``file`` / its path);
an MLflow model version ``mlflow://<tracking host>`` / ``models/<name>/<version>``.

Custom facets are attrs classes on OpenLineage's ``RunFacet`` / ``DatasetFacet`` (as the provider's own), built on
first use (``lineage.TrainingRunFacet``): importing this module imports neither OpenLineage nor Airflow, so nothing
changes where ``[openlineage] transport`` is not configured. Hooks report what they read and write to Airflow's hook
lineage collector (``report_lineage``), which the provider translates with ``asset_to_openlineage`` (the pack's
``to_openlineage_converter``); operators mix in ``DvcVersionLineageMixin`` / ``RegisterModelLineageMixin``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from typing import Any, TypeAlias
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LineageAsset: TypeAlias = tuple[str, dict[str, Any]]  # (Airflow asset URI, extra) as the hooks report them

FACET_SCHEMA = "urn:airflow-provider-mlops:openlineage:facets:{name}:1"
FACET_KEYS = {
    "TrainingRunFacet": "mlops_trainingRun",
    "HyperParametersRunFacet": "mlops_hyperParameters",
    "MetricsRunFacet": "mlops_metrics",
    "ModelVersionDatasetFacet": "mlops_modelVersion",
    "TrainingSetDatasetFacet": "mlops_trainingSet",
    "DvcVersionDatasetFacet": "mlops_dvcVersion",
}


# -- dataset names (pure) -------------------------------------------------------------------------------------------
def _need(facts: dict[str, Any], field: str, what: str) -> Any:
    value = facts.get(field)
    if value in (None, ""):
        raise ValueError(f"{what} lacks {field!r} (it has {sorted(facts)}); pass the XCom of the task that made it")
    return value


def dvc_namespace(repo: str) -> str:
    """``dvc://<repo>``: a git URL without scheme, credentials or ``.git`` (``git@host:org/x`` too), else a path."""
    repo = str(repo).strip().rstrip("/").removesuffix(".git")
    if "://" in repo:
        parts = urlsplit(repo)
        location = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
    elif "@" in repo.split("/")[0] and ":" in repo:  # scp-like: git@host:org/repo
        host, _, path = repo.partition("@")[2].partition(":")
        location = f"{host}/{path.lstrip('/')}"
    else:  # a local working copy: dvc:///abs/path, as file:/// URIs spell it
        location = repo
    return f"dvc://{location}"


def dvc_name(path: str, rev: str) -> str:
    return f"{str(path).strip('/')}@{rev}"


def dvc_dataset(version: dict[str, Any]) -> tuple[str, str]:
    """``(dvc://<repo>, <path>@<rev>)`` of a DVC version ``{repo, path, rev}``."""
    repo, path, rev = (_need(version, k, "DVC dataset version") for k in ("repo", "path", "rev"))
    return dvc_namespace(repo), dvc_name(path, rev)


def feature_view_dataset(project: str, view: str) -> tuple[str, str]:
    return f"feast://{project}", view


def training_set_dataset(training_set: dict[str, Any]) -> tuple[str, str]:
    """``(feast://<project>, training_sets/<service>/<hash[:16]>)``; without a Feast project ``(file, <uri>)``."""
    digest = str(_need(training_set, "hash", "training set"))
    if training_set.get("project") and training_set.get("feature_service"):
        return f"feast://{training_set['project']}", f"training_sets/{training_set['feature_service']}/{digest[:16]}"
    return "file", str(_need(training_set, "uri", "training set")).removeprefix("file://")


def mlflow_namespace(tracking_uri: str) -> str:
    """``mlflow://<host[:port]>`` of a tracking URI (credentials dropped); a URI without a host: its scheme."""
    parts = urlsplit(str(tracking_uri))
    host = parts.hostname and f"{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    return f"mlflow://{host or parts.scheme or 'local'}"


def model_version_dataset(tracking_uri: str, name: str, version: str | int) -> tuple[str, str]:
    return mlflow_namespace(tracking_uri), f"models/{name}/{version}"


# -- facets (OpenLineage classes, built on first use) ----------------------------------------------------------------
@functools.cache
def facet_classes() -> dict[str, type]:
    """The pack's facet classes; importing them needs ``openlineage-python`` (the OpenLineage provider's)."""
    import attr
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet

    def facet(cls: type) -> type:
        cls = attr.define(cls)
        cls._get_schema = staticmethod(lambda: FACET_SCHEMA.format(name=cls.__name__))
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        return cls

    @facet
    class TrainingRunFacet(RunFacet):
        """The MLflow run that trained the model and what it ran."""
        mlflowRunId: str  # OpenLineage facets are camelCase
        experimentId: str | None = None
        experimentName: str | None = None
        runUrl: str | None = None
        entrypoint: str | None = None
        entrypointSha256: str | None = None
        requirementsSha256: str | None = None
        taskType: str | None = None
        label: str | None = None
        backend: str | None = None

    @facet
    class HyperParametersRunFacet(RunFacet):
        """The training config (the MLflow run's parameters)."""
        parameters: dict[str, str] = attr.field(factory=dict)

    @facet
    class MetricsRunFacet(RunFacet):
        """The metrics the training run logged (``val_*``)."""
        metrics: dict[str, float] = attr.field(factory=dict)

    @facet
    class ModelVersionDatasetFacet(DatasetFacet):
        """A registered model version and the data it was trained on."""
        name: str
        version: str
        aliases: list[str] = attr.field(factory=list)
        datasetRev: str | None = None
        trainingSetHash: str | None = None
        modelUri: str | None = None
        runId: str | None = None
        taskType: str | None = None
        label: str | None = None
        recordSha256: str | None = None
        url: str | None = None

    @facet
    class TrainingSetDatasetFacet(DatasetFacet):
        """A point-in-time training set: its content hash and the dataset version it was built from."""
        hash: str
        rows: int | None = None
        featureService: str | None = None
        features: list[str] = attr.field(factory=list)
        label: str | None = None
        definitionsHash: str | None = None
        sourceNamespace: str | None = None
        sourceName: str | None = None

    @facet
    class DvcVersionDatasetFacet(DatasetFacet):
        """A DVC dataset version: git revision, DVC hash and the batch that made it."""
        rev: str
        path: str
        md5: str | None = None
        nfiles: int | None = None
        batch: str | None = None
        newCommit: bool | None = None

    return {c.__name__: c for c in (TrainingRunFacet, HyperParametersRunFacet, MetricsRunFacet,
                                      ModelVersionDatasetFacet, TrainingSetDatasetFacet, DvcVersionDatasetFacet)}


def __getattr__(name: str) -> Any:
    if name in FACET_KEYS:
        return facet_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _facet(kind: str, /, **fields: Any) -> tuple[str, Any]:
    return FACET_KEYS[kind], facet_classes()[kind](**fields)


# -- operator lineage (pure: XCom dicts in, OperatorLineage out) -----------------------------------------------------
def dvc_version_dataset(version: dict[str, Any], *, output: bool = True) -> Any:
    """The OpenLineage dataset of a DVC version, with its ``version`` facet and the DVC facts."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset, output_statistics_output_dataset

    namespace, name = dvc_dataset(version)
    facets = dict([_facet("DvcVersionDatasetFacet", rev=str(version["rev"]), path=str(version["path"]),
                          md5=version.get("md5"), nfiles=version.get("nfiles"), batch=version.get("batch"),
                          newCommit=version.get("new_commit"))])
    facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version["rev"]))
    if not output:
        return InputDataset(namespace=namespace, name=name, facets=facets)
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=version.get("rows"), size=version.get("size"), fileCount=version.get("nfiles"))
    return OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets={"outputStatistics": stats})


def training_set_input(training_set: dict[str, Any], *, output: bool = False) -> Any:
    """The OpenLineage dataset of a training set; its facet names the DVC version it was built from."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    namespace, name = training_set_dataset(training_set)
    source = training_set.get("dataset") or {}
    source_ns, source_name = dvc_dataset(source) if source.get("repo") and source.get("rev") else (None, None)
    facets = dict([_facet(
        "TrainingSetDatasetFacet", hash=str(training_set["hash"]), rows=training_set.get("rows"),
        featureService=training_set.get("feature_service"), features=list(training_set.get("features") or []),
        label=training_set.get("label"), definitionsHash=training_set.get("definitions_hash"),
        sourceNamespace=source_ns, sourceName=source_name,
    )])
    cls = OutputDataset if output else InputDataset
    return cls(namespace=namespace, name=name, facets=facets)


def _lineage(inputs: list[Any], outputs: list[Any], run_facets: dict[str, Any] | None = None) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets or {})


def dvc_version_lineage(version: dict[str, Any]) -> Any:
    """``DvcVersionDatasetOperator``: the dataset version it made is the output."""
    return _lineage([], [dvc_version_dataset(version)])


def training_set_lineage(training_set: dict[str, Any]) -> Any:
    """A training-set task: the DVC version it read -> the training set it wrote."""
    source = training_set.get("dataset") or {}
    inputs = [dvc_version_dataset(source, output=False)] if source else []
    return _lineage(inputs, [training_set_input(training_set, output=True)])


def register_model_lineage(
    result: dict[str, Any], *, training: dict[str, Any], training_set: dict[str, Any], dataset: dict[str, Any],
    tracking_uri: str, params: dict[str, Any] | None = None, experiment_name: str | None = None,
) -> Any:
    """``RegisterModelOperator``: DVC version + training set -> the model version, with the ML facets.

    :param result: the operator's XCom ``{model_name, version, run_id, aliases, model_uri, ...}``.
    :param training: the training task's XCom ``{run_id, experiment_id, metrics, entrypoint, ...}``.
    :param training_set: the training-set task's XCom ``{uri, hash, feature_service, project, dataset, ...}``.
    :param dataset: the DVC version the training set was built from ``{repo, path, rev, md5}``.
    :param tracking_uri: the MLflow tracking URI (its host names the namespace).
    :param params: the training run's parameters (the training config), when known.
    :param experiment_name: the MLflow experiment's name, when known.
    """
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset

    name, version = _need(result, "model_name", "model version"), str(_need(result, "version", "model version"))
    namespace, ds_name = model_version_dataset(tracking_uri, name, version)
    run_id = str(result.get("run_id") or _need(training, "run_id", "training result"))
    model = dict([_facet(
        "ModelVersionDatasetFacet", name=name, version=version, aliases=sorted(result.get("aliases") or []),
        datasetRev=dataset.get("rev"), trainingSetHash=training_set.get("hash"), modelUri=result.get("model_uri"),
        runId=run_id, taskType=result.get("task_type"), label=result.get("label"),
        recordSha256=result.get("record_sha256"), url=result.get("url"),
    )])
    model["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)
    run_facets = dict([
        _facet("TrainingRunFacet", mlflowRunId=run_id, experimentId=str(training.get("experiment_id") or "") or None,
               experimentName=experiment_name, runUrl=training.get("run_url"), entrypoint=training.get("entrypoint"),
               entrypointSha256=training.get("entrypoint_sha256"),
               requirementsSha256=training.get("requirements_sha256"),
               taskType=result.get("task_type") or training.get("task_type"),
               label=result.get("label") or training.get("label"), backend=training.get("backend")),
        _facet("HyperParametersRunFacet", parameters={str(k): str(v) for k, v in (params or {}).items()}),
        _facet("MetricsRunFacet", metrics={str(k): float(v) for k, v in (training.get("metrics") or {}).items()}),
    ])
    inputs = [dvc_version_dataset(dataset, output=False), training_set_input(training_set)]
    return _lineage(inputs, [OutputDataset(namespace=namespace, name=ds_name, facets=model)], run_facets)


def _as_dict(value: Any, field: str) -> dict[str, Any]:
    """A rendered template field: a dict, or its JSON text; None/empty = ``{}``."""
    if value in (None, "", "None"):
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"{field} is a {type(value).__name__}, not a dict: pass the upstream task's XCom")
    return value


def _keeping_result(execute: Any) -> Any:
    @functools.wraps(execute)
    def execute_keeping_result(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = execute(self, *args, **kwargs)
        self._openlineage_result = result
        return result

    execute_keeping_result.keeps_openlineage_result = True
    return execute_keeping_result


class OpenLineageMixin:
    """Operator lineage from the task's result (its XCom): mix in front of ``BaseOperator``.

    The OpenLineage provider calls ``get_openlineage_facets_on_complete`` after a successful run (only when it is
    enabled), in a forked child of the task process; subclasses turn the result into an ``OperatorLineage`` in
    ``openlineage_from_result``. The result is kept on the operator when ``execute`` returns (the subclass's
    ``execute`` is wrapped once, at class creation): pulling the XCom back from the forked child would be one more
    round trip to the supervisor, in a process that must not block.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        execute = getattr(cls, "execute", None)
        if callable(execute) and not getattr(execute, "keeps_openlineage_result", False):
            cls.execute = _keeping_result(execute)

    def openlineage_from_result(self, result: dict[str, Any]) -> Any:
        raise NotImplementedError

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        result = getattr(self, "_openlineage_result", None)
        if not isinstance(result, dict):
            log.warning("OpenLineage: task %s returned no dict result (%s); its lineage has no datasets",
                        getattr(task_instance, "task_id", "?"), type(result).__name__)
            return _lineage([], [])
        return self.openlineage_from_result(result)


class DvcVersionLineageMixin(OpenLineageMixin):
    """``DvcVersionDatasetOperator``: the dataset version as the output."""

    def openlineage_from_result(self, result: dict[str, Any]) -> Any:
        return dvc_version_lineage(result)


class RegisterModelLineageMixin(OpenLineageMixin):
    """``RegisterModelOperator``: DVC version + training set -> model version, with training run facets."""

    def openlineage_from_result(self, result: dict[str, Any]) -> Any:
        training = _as_dict(getattr(self, "training", None), "training")
        training_set = _as_dict(getattr(self, "training_set", None), "training_set")
        dataset = _as_dict(getattr(self, "dataset_version", None), "dataset_version") or training_set.get("dataset")
        hook = self.hook  # type: ignore[attr-defined] - RegisterModelOperator.hook (an MlflowHook)
        facts: dict[str, Any] = {}
        try:
            facts = hook.run_facts(result.get("run_id") or training["run_id"])
        except Exception as err:  # noqa: BLE001 - lineage never fails a registered model; say what is missing
            log.warning("OpenLineage: the parameters of run %s are not in the lineage (%s); check connection %r",
                        result.get("run_id"), err, hook.mlflow_conn_id)
        return register_model_lineage(
            result, training=training, training_set=training_set, dataset=dataset or {},
            tracking_uri=hook.settings.tracking_uri, params=facts.get("params"),
            experiment_name=facts.get("experiment_name"),
        )


# -- hook-level lineage (Airflow assets in the hook lineage collector) -----------------------------------------------
def dvc_asset(version: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(dvc://<repo name>/<path>, {namespace, path, rev, md5})``: the pack's DVC asset URI with the version (and
    the OpenLineage namespace, credentials dropped) in the extra."""
    from mlops_airflow.assets import dvc_asset_uri

    repo, path = _need(version, "repo", "DVC version"), _need(version, "path", "DVC version")
    extra = {"namespace": dvc_namespace(repo), "path": path, "rev": version.get("rev"), "md5": version.get("md5")}
    return dvc_asset_uri(repo, path), extra


def model_asset(tracking_uri: str, name: str, version: str | int) -> tuple[str, dict[str, Any]]:
    from mlops_airflow.assets import model_asset_uri

    return model_asset_uri(name), {"tracking_namespace": mlflow_namespace(tracking_uri), "version": str(version)}


def feature_view_asset(project: str, view: str) -> tuple[str, dict[str, Any]]:
    from mlops_airflow.assets import feature_asset_uri

    return feature_asset_uri(project, view), {}


def training_set_asset(training_set: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``feast://<project>/training_sets/<service>`` (or ``file://<path>``) with the hash in the extra."""
    namespace, name = training_set_dataset(training_set)
    uri = f"{namespace}/{name.rsplit('/', 1)[0]}" if namespace != "file" else f"file://{name}"
    return uri, {"hash": str(training_set["hash"])}


def report_lineage(hook: Any, *, inputs: Iterable[LineageAsset] = (), outputs: Iterable[LineageAsset] = ()) -> None:
    """Hand ``(uri, extra)`` inputs/outputs of ``hook`` to Airflow's hook lineage collector.

    A no-op collector when no lineage reader (the OpenLineage provider, with a transport) is enabled. A failure is
    logged as a warning and never fails the hook's work.
    """
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector

        collector = get_hook_lineage_collector()
        for uri, extra in inputs:
            collector.add_input_asset(context=hook, uri=uri, asset_extra=extra or None)
        for uri, extra in outputs:
            collector.add_output_asset(context=hook, uri=uri, asset_extra=extra or None)
    except Exception as err:  # noqa: BLE001 - lineage is reported, never at the cost of the data work
        log.warning("hook lineage of %s not reported (%s: %s); the task's OpenLineage events lack these datasets",
                    type(hook).__name__, type(err).__name__, err)


def asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """OpenLineage dataset of a pack asset (``dvc``, ``mlflow``, ``feast``, ``mlops`` URIs); the provider's converter.

    The version in the asset's extra (what the hooks report) makes it a versioned name; an asset without it (a
    task's declared outlet) keeps the unversioned name.
    """
    from openlineage.client.event_v2 import Dataset

    parts, extra = urlsplit(asset.uri), dict(asset.extra or {})
    path = parts.path.strip("/")
    if parts.scheme == "dvc":
        if extra.get("namespace") and extra.get("rev"):
            return Dataset(namespace=extra["namespace"], name=dvc_name(extra.get("path") or path, extra["rev"]))
        return Dataset(namespace=f"dvc://{parts.netloc}", name=path)
    if parts.scheme == "mlflow":
        name = path.removeprefix("models/") if parts.netloc == "models" else path
        namespace = extra.get("tracking_namespace")
        if namespace is None and getattr(lineage_context, "settings", None) is not None:
            namespace = mlflow_namespace(lineage_context.settings.tracking_uri)
        suffix = f"/{extra['version']}" if extra.get("version") else ""
        return Dataset(namespace=namespace or "mlflow://default", name=f"models/{name}{suffix}")
    if parts.scheme == "feast":
        if path.startswith("training_sets/") and extra.get("hash"):
            path = f"{path}/{str(extra['hash'])[:16]}"
        return Dataset(namespace=f"feast://{parts.netloc}", name=path or parts.netloc)
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=path)
