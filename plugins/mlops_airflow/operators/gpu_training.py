"""GPU training on Kubernetes: ``GpuTrainingPodOperator``, a small preset of the provider's KubernetesPodOperator.

It takes the same arguments as ``LocalTrainingOperator`` (so ``train_model_task`` switches backends
by configuration, ``[mlops] training_backend=kubernetes``) plus a GPU count and type, and adds to
the provider's pod:

- ``nvidia.com/gpu`` limit = request (whole numbers only), a node selector for the GPU type
  (``nvidia.com/gpu.product=<gpu_type>`` by default) and the NVIDIA toleration;
- a memory-backed ``/dev/shm`` (PyTorch data loaders need more than the runtime's 64 MiB);
- a non-root, no-privilege-escalation, all-capabilities-dropped security context;
- the training env contract (``mlops_airflow.training.context``, DESIGN.md), with the MLflow
  credentials of the Airflow connection as references to a Kubernetes secret, never as values;
- for an object-store training set (``s3://``): the store's endpoint and region as values, its
  credentials as references to the secret ``[mlops] training_storage_secret`` (``_training_storage.py``);
- strict validation of pod templates and of the built pod (``mlops_airflow.k8s.validation``);
- all container logs, pod events on failure, and one on-call sentence when the pod fails
  (``mlops_airflow.k8s.diagnose``): Pending because of a label, taint or GPU shortage,
  ImagePullBackOff, OOMKilled, non-zero exit.

The result comes from MLflow, not from the XCom sidecar: the job tags its run with the task's
identity; after the pod succeeds the operator reads that run back, and a retry first adopts a
FINISHED run with those tags instead of starting another pod.

A normal class (the provider's KubernetesPodOperator is imported at the top: the one per-file opt-out of the
heavy-import ban; ``kubernetes.client`` itself is imported where it is used). DAG files never import this module
while parsing. The pod helpers are in ``operators/_gpu_pod.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_env_vars_or_raise_error
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from airflow.sdk.exceptions import AirflowNotFoundException

from mlops_airflow._summary import log_summary
from mlops_airflow.config import mlops_conf
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.k8s.validation import (
    PodSpecError,
    is_template,
    parse_gpu_count,
    validate_pod_template,
)
from mlops_airflow.links.mlflow import MlflowRunLink
from mlops_airflow.operators._common import as_dict
from mlops_airflow.operators._gpu_pod import (
    CREDENTIAL_ENV,
    DEFAULT_GPU_NODE_LABEL,
    DEFAULT_IMAGE,
    DEFAULT_SECRET_KEYS,
    IMAGE_ENTRYPOINT,
    POD_DEFAULTS,
    SHM_VOLUME,
    api_error_message,
    apply_gpu_preset,
    check_built_pod,
    check_gpu_type,
    explain_failure,
    image_reference_digest,
    inspect_pod,
    pod_command,
    pod_env,
    pod_lineage_env,
    termination_message,
)
from mlops_airflow.operators._training_job import TrainingJobMixin, pop_job_arguments, with_job_arguments
from mlops_airflow.operators._training_storage import DEFAULT_STORAGE_SECRET_KEYS
from mlops_airflow.storage import StorageError

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s
    from kubernetes.client.exceptions import ApiException

    from mlops_airflow.k8s.diagnose import Diagnosis

# The pod helpers live in operators/_gpu_pod.py; their constants stay importable from here.
__all__ = [
    "CREDENTIAL_ENV",
    "DEFAULT_GPU_NODE_LABEL",
    "DEFAULT_IMAGE",
    "DEFAULT_SECRET_KEYS",
    "IMAGE_ENTRYPOINT",
    "SHM_VOLUME",
    "GpuTrainingPodOperator",
    "image_reference_digest",
]


class GpuTrainingPodOperator(TrainingJobMixin, KubernetesPodOperator):
    """Train an entrypoint (default: the image's) in a GPU pod; the result is read back from MLflow.

    Same arguments as :class:`~mlops_airflow.operators.training.LocalTrainingOperator`:

    :param training_set: upstream training set ``{uri, hash, features, label}`` (templated / XCom).
        The pod reads ``uri`` itself (an object-store URI in production; see ``storage_secret_name``).
    :param dataset_version: upstream DVC version ``{repo, rev, path, md5}`` (templated / XCom).
    :param experiment_name: MLflow experiment (templated).
    :param training_config: hyper-parameters, merged over the defaults (templated).
    :param python: interpreter *inside the image* (default: the image's ENTRYPOINT).
    :param entrypoint: a training file *inside the image* (``python <file>``) or ``package.module:function``
        (``python -m mlops_airflow.training.run ...``; the image has the pack on PYTHONPATH) (templated; default:
        the image's ENTRYPOINT, ``/opt/training/train.py``). The job hashes the code it runs into its run tags.
    :param requirements: the requirements file the image was built from, on the worker (templated): its sha256
        goes into the record (the image is not rebuilt; pin ``image`` by digest).
    :param task_type: ``binary_classification`` (default) or ``regression`` (templated).
    :param extra_tags: more MLflow run tags.
    :param mlflow_conn_id: MLflow connection; its credentials reach the pod only as secret references.

    GPU preset (defaults from ``[mlops]``; every other KubernetesPodOperator argument passes through):

    :param gpu_count: whole GPUs, limit = request (templated; ``training_gpu_count``, default 1).
    :param gpu_type: node label value of the GPU type, e.g. ``NVIDIA-H200`` (templated;
        ``training_gpu_type``); None schedules on any node with free GPUs.
    :param gpu_node_label: node label carrying the GPU type (``training_gpu_node_label``,
        default ``nvidia.com/gpu.product`` from NVIDIA GPU feature discovery).
    :param image: training image (``training_image``, default ``mlops-training:0.1.0``);
        pin it by digest in production.
    :param namespace: namespace of the pod (``training_namespace``, else the connection's).
    :param shm_size: size of the memory-backed ``/dev/shm`` (None: no shm volume).
    :param cpu: CPU request, e.g. ``"8"``.
    :param memory: memory request = limit, e.g. ``"64Gi"`` (a memory-backed /dev/shm counts against it).
    :param mlflow_secret_name: Kubernetes secret holding the MLflow credentials
        (``training_mlflow_secret``); required when the MLflow connection has credentials.
    :param mlflow_secret_keys: env var -> key in that secret (default username/password/token).
    :param mlflow_tracking_uri: tracking URI as the pod reaches it, when it differs from the
        worker's (``training_mlflow_tracking_uri``, e.g. an in-cluster service).
    :param storage_secret_name: Kubernetes secret holding the object store's credentials
        (``training_storage_secret``); required when the training set is on an object store and the
        connection ``[mlops] storage_conn_id`` has credentials. The pod gets the store's endpoint and
        region as plain values (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``), its credentials only as
        references to this secret.
    :param storage_secret_keys: env var -> key in that secret (default ``AWS_ACCESS_KEY_ID`` and
        ``AWS_SECRET_ACCESS_KEY``, same names).
    :param pod_template_file: base pod template (templated; ``training_pod_template``), validated
        strictly before use.
    :param kubernetes_version: Kubernetes version whose schema validates pods (``kubernetes_version``).
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "training_set",
        "dataset_version",
        "training_config",
        "experiment_name",
        "entrypoint",
        "requirements",
        "model_task_type",
        "gpu_count",
        "gpu_type",
    )
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#76b900"

    @with_job_arguments
    def __init__(
        self,
        *,
        gpu_count: int | str | None = None,
        gpu_type: str | None = None,
        gpu_node_label: str | None = None,
        image: str | None = None,
        namespace: str | None = None,
        shm_size: str | None = "8Gi",
        cpu: str | None = None,
        memory: str | None = None,
        mlflow_secret_name: str | None = None,
        mlflow_secret_keys: dict[str, str] | None = None,
        mlflow_tracking_uri: str | None = None,
        storage_secret_name: str | None = None,
        storage_secret_keys: dict[str, str] | None = None,
        pod_template_file: str | None = None,
        kubernetes_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        job = pop_job_arguments(kwargs)
        if kwargs.get("do_xcom_push"):
            raise ValueError(
                f"{kwargs.get('task_id')}: do_xcom_push=True would add the XCom sidecar; GpuTrainingPodOperator "
                "reads its result from MLflow instead. Remove do_xcom_push"
            )
        # The provider reuses do_xcom_push for its sidecar; it stays False and this operator pushes
        # the MLflow result itself (see _complete).
        kwargs["do_xcom_push"] = False
        self._command_from_entrypoint = "cmds" not in kwargs  # an explicit cmds= wins over entrypoint=
        if self._command_from_entrypoint and pod_command(job["python"], job["entrypoint"]):
            kwargs["cmds"] = pod_command(job["python"], job["entrypoint"])
        kwargs["labels"] = {
            "app.kubernetes.io/component": "training",
            "app.kubernetes.io/part-of": "airflow-provider-mlops",
            **(kwargs.get("labels") or {}),
        }
        schedule_timeout = int(mlops_conf("training_schedule_timeout", "600") or 600)
        kwargs = {**POD_DEFAULTS, "schedule_timeout_seconds": schedule_timeout, **kwargs}
        super().__init__(
            image=image or mlops_conf("training_image") or DEFAULT_IMAGE,
            namespace=namespace or mlops_conf("training_namespace"),
            pod_template_file=pod_template_file or mlops_conf("training_pod_template"),
            **kwargs,
        )
        self.set_job(job)
        self.gpu_count = gpu_count if gpu_count is not None else mlops_conf("training_gpu_count", "1")
        self.gpu_type = gpu_type if gpu_type is not None else mlops_conf("training_gpu_type")
        self.gpu_node_label = gpu_node_label or mlops_conf("training_gpu_node_label") or DEFAULT_GPU_NODE_LABEL
        self.shm_size = shm_size
        self.cpu = cpu
        self.memory = memory
        self.mlflow_secret_name = mlflow_secret_name or mlops_conf("training_mlflow_secret")
        self.mlflow_secret_keys = {**DEFAULT_SECRET_KEYS, **(mlflow_secret_keys or {})}
        self.mlflow_tracking_uri = mlflow_tracking_uri or mlops_conf("training_mlflow_tracking_uri")
        self.storage_secret_name = storage_secret_name or mlops_conf("training_storage_secret")
        self.storage_secret_keys = {**DEFAULT_STORAGE_SECRET_KEYS, **(storage_secret_keys or {})}
        self.kubernetes_version = kubernetes_version or mlops_conf("kubernetes_version")
        # Literal values are checked at parse time; templated ones when the task runs.
        if not is_template(self.gpu_count):
            parse_gpu_count(self.gpu_count)
        if self.gpu_type and not is_template(self.gpu_type):
            self._check_gpu_type(self.gpu_type)
        self._diagnosis: Diagnosis | None = None
        self._image_id: str | None = None
        self._result: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the pod
    _check_gpu_type = staticmethod(check_gpu_type)

    def lineage_env(self) -> dict[str, str]:
        """What the worker knows of the code: its name; the job hashes the file inside the image itself."""
        return pod_lineage_env(self.entrypoint, self.requirements)

    def _job_description(self) -> str:
        try:
            dataset = as_dict(self.dataset_version, "dataset_version")
        except (ValueError, SyntaxError):
            dataset = {}
        return (
            f"experiment {self.experiment_name!r}, dataset rev {dataset.get('rev', '?')} md5 {dataset.get('md5', '?')}"
        )

    def _pod_env(self, context: Context | None, *, dry_run: bool) -> list[k8s.V1EnvVar]:
        """The env contract and the store's settings as plain values, credentials as secret refs, then the user's
        own env vars."""
        try:
            contract = self.job_env(context)
            settings = self.mlflow_hook.settings
            access = self.storage_access()
        except (ValueError, SyntaxError, AirflowNotFoundException, StorageError):
            if not dry_run:
                raise
            return convert_env_vars_or_raise_error(self.env_vars) if self.env_vars else []
        user = convert_env_vars_or_raise_error(self.env_vars) if self.env_vars else []
        if access is not None and not dry_run:
            self.log.info("Training set %s; the pod gets its credentials from Kubernetes secret %s", access.describe(),
                          self.storage_secret_name or "(none: the pod's own identity)")
        return pod_env(self, contract, settings, user, access)

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        try:
            gpus = parse_gpu_count(self.gpu_count)
        except ValueError as err:
            raise PodSpecError(f"{self.task_id}: {err}") from None
        template = None
        if self.pod_template_file or self.pod_template_dict:
            data = validate_pod_template(self.pod_template_file or self.pod_template_dict, self.kubernetes_version)
            template = PodGenerator.deserialize_model_dict(data)
        apply_gpu_preset(self, gpus, template)  # folded into the provider's own arguments (idempotent)
        if self._command_from_entrypoint and pod_command(self.python, self.entrypoint):
            self.cmds = pod_command(self.python, self.entrypoint)  # entrypoint= is templated: render first
        self.env_vars = self._pod_env(context, dry_run=dry_run)
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        self._check_built_pod(pod, gpus)
        return pod

    def _check_built_pod(self, pod: k8s.V1Pod, gpus: int) -> None:
        check_built_pod(pod, gpus, self.base_container_name, self.kubernetes_version)

    # ------------------------------------------------------------------ running it
    def execute(self, context: Context) -> dict[str, Any] | None:
        self._diagnosis, self._image_id, self._result = None, None, None
        run = self.find_job_run(context)
        if run is not None:
            self.log.info(
                "Adopting MLflow run %s: this task already trained (earlier try); no pod is started", run.info.run_id
            )
            return self._complete(context, run, adopted=True)
        try:
            super().execute(context)  # sync: runs the pod; deferrable: raises TaskDeferred (a BaseException)
        except Exception as exc:  # noqa: BLE001 - always re-raised, explained
            self._reraise_explained(exc)
        if self._result is not None:  # the pod was already done: the provider skipped deferral
            return self._result
        return self._after_pod(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        try:
            super().trigger_reentry(context, event)
        except Exception as exc:  # noqa: BLE001 - always re-raised, explained
            self._reraise_explained(exc)
        self._result = self._after_pod(context)
        return self._result

    def cleanup(
        self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, xcom_result: dict | None = None, context: Context | None = None
    ) -> None:
        # Runs before the provider deletes the pod: the last chance to read its state and events.
        if not self._killed and remote_pod is not None:
            self._inspect(pod, remote_pod)
        super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)

    def _inspect(self, pod: k8s.V1Pod, last_seen: k8s.V1Pod) -> None:
        """Record the image digest of a succeeded pod, or diagnose a failed one (never raises)."""
        inspect_pod(self, pod, last_seen)

    def _termination_message(self, data: dict[str, Any]) -> str | None:
        return termination_message(data, self.base_container_name)

    def _reraise_explained(self, exc: Exception) -> None:
        explained = self._explain(exc)
        if explained is exc:
            raise exc
        # With a diagnosis the provider's own traceback adds nothing for on-call: keep the log short.
        raise explained from (None if self._diagnosis is not None else exc)

    def _explain(self, exc: Exception) -> BaseException:
        """The exception the task fails with: the diagnosis when there is one, else the cause named."""
        return explain_failure(self, exc)

    def _api_error(self, exc: ApiException, ref: str) -> str:
        return api_error_message(exc, ref, self._job_description())

    # ------------------------------------------------------------------ the result
    def _after_pod(self, context: Context) -> dict[str, Any]:
        run = self.find_job_run(context)
        if run is None:
            pod = self.pod or self.pod_request_obj
            raise TrainingError(
                f"training pod {pod.metadata.namespace if pod else '?'}/{pod.metadata.name if pod else '?'} "
                f"succeeded but no FINISHED MLflow run tagged with this task exists in experiment "
                f"{self.experiment_name!r} at {self.mlflow_hook.settings.tracking_uri}; the pod must reach the "
                "same MLflow server as Airflow (set [mlops] training_mlflow_tracking_uri to an address the pod "
                "can resolve) and its entrypoint must start its run with mlops_airflow.training.context()"
            )
        if (
            self._image_id
            and "sha256:" in self._image_id
            and not str(run.data.tags.get("mlops.image_digest", "")).startswith("sha256:")
        ):
            digest = self._image_id.split("://", 1)[-1]
            self.mlflow_hook.set_run_tags(run.info.run_id, {"mlops.image_digest": digest})
            run.data.tags["mlops.image_digest"] = digest
        return self._complete(context, run, adopted=False)

    def _complete(self, context: Context, run: Any, *, adopted: bool) -> dict[str, Any]:
        result = self.result_from_run(run, backend="kubernetes", adopted=adopted)
        MlflowRunLink.persist(context, result["run_url"])
        # do_xcom_push stays False (it means "sidecar" to the provider), so push the return value here.
        context["ti"].xcom_push(key="return_value", value=result)
        pod = self.pod or self.pod_request_obj
        log_summary(
            self.log, "train", backend="kubernetes", run_id=result["run_id"], model=result["model_uri"],
            metrics=result["metrics"], adopted=adopted,
            pod=f"{pod.metadata.namespace}/{pod.metadata.name}" if pod is not None and not adopted else "-",
            gpus=self.gpu_count, gpu_type=self.gpu_type or "any",
            image=run.data.tags.get("mlops.image_digest", self.image), url=result["run_url"],
        )
        return result


GpuTrainingPodOperator.__module__ = __name__
GpuTrainingPodOperator.__qualname__ = "GpuTrainingPodOperator"
