"""The pod that ``GpuTrainingPodOperator`` asks for: GPU preset, env contract with secret references, API errors.

Helpers of ``operators/gpu_training.py``, apart so the operator reads as its lifecycle (build, run, diagnose,
result). ``kubernetes`` is imported inside the functions: importing this module stays cheap, like every module
of the pack (tests/dags/test_parse_imports.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from mlops_airflow import __version__
from mlops_airflow.k8s.validation import GPU_RESOURCE, PodSpecError, pod_problems, pod_to_dict
from mlops_airflow.operators._training_storage import check_no_plain_credentials, storage_env_vars

if TYPE_CHECKING:
    from kubernetes.client import models as k8s
    from kubernetes.client.exceptions import ApiException

    from mlops_airflow.operators._training_storage import StorageAccess
    from mlops_airflow.training.entrypoints import EntryPoint

DEFAULT_IMAGE = f"mlops-training:{__version__}"
DEFAULT_GPU_NODE_LABEL = "nvidia.com/gpu.product"
IMAGE_ENTRYPOINT = "/opt/training/train.py"
SHM_VOLUME = "dshm"
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
DEFAULT_SECRET_KEYS = {
    "MLFLOW_TRACKING_USERNAME": "username",
    "MLFLOW_TRACKING_PASSWORD": "password",
    "MLFLOW_TRACKING_TOKEN": "token",
}
#: What the provider's pod gets unless the task says otherwise (all logs, events on failure, no spec dump).
POD_DEFAULTS: dict[str, Any] = {
    "get_logs": True,
    "container_logs": True,
    "log_events_on_failure": True,
    "log_pod_spec_on_failure": False,  # the diagnosis says what matters
    "termination_message_policy": "FallbackToLogsOnError",
    "image_pull_policy": "IfNotPresent",
    "startup_timeout_seconds": 900,  # multi-GB CUDA images take minutes to pull
}
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def pod_entrypoint(entrypoint: str | None) -> EntryPoint | None:
    """The entrypoint the pod runs: a file *inside the image* or ``module:function`` (None: the image's ENTRYPOINT)."""
    from mlops_airflow.training.entrypoints import parse_entrypoint

    if not entrypoint:
        return None
    return parse_entrypoint(entrypoint)


def pod_command(python: str | None, entrypoint: str | None) -> list[str] | None:
    """The container command: ``python <file>`` or ``python -m mlops_airflow.training.run module:function``."""
    entry = pod_entrypoint(entrypoint)
    if entry is None:
        return [python, IMAGE_ENTRYPOINT] if python else None
    return entry.argv(python or "python")


def pod_lineage_env(entrypoint: str | None, requirements: str | None) -> dict[str, str]:
    """MLOPS_ENTRYPOINT (and the requirements' sha256 when the file is on the worker) for the pod's env."""
    from mlops_airflow.training.env import requirements_sha256

    env = {"MLOPS_ENTRYPOINT": entrypoint or IMAGE_ENTRYPOINT}
    if requirements:
        try:
            env["MLOPS_REQUIREMENTS_SHA256"] = requirements_sha256(requirements)
        except RuntimeError as err:
            raise PodSpecError(str(err)) from None
    return env


def image_reference_digest(image: str) -> str:
    """What the job records as its image before the pod runs: the digest when pinned, else the reference."""
    return image.split("@", 1)[1] if "@sha256:" in image else image


def check_gpu_type(gpu_type: str) -> None:
    if not _LABEL_VALUE.match(gpu_type):
        raise ValueError(
            f"gpu_type {gpu_type!r} is not a valid Kubernetes label value (<= 63 of A-Z a-z 0-9 - _ .); use "
            "the value of the GPU node label as `kubectl get nodes -L nvidia.com/gpu.product` shows it, "
            "e.g. NVIDIA-H200"
        )


def apply_gpu_preset(op: Any, gpus: int, template: k8s.V1Pod | None) -> None:
    """Put the GPU preset into the operator's (the provider's) own arguments; idempotent: build may run twice.

    The provider merges a template with the operator's pod field by field, and a non-empty operator field
    replaces the template's (tolerations, node selector, security context), so the template's values are
    folded in here rather than lost.
    """
    from kubernetes.client import models as k8s

    tspec = template.spec if template is not None and template.spec else k8s.V1PodSpec(containers=[])
    tbase = (tspec.containers or [None])[0]
    resources = op.container_resources or k8s.V1ResourceRequirements()
    if isinstance(resources, dict):
        resources = k8s.V1ResourceRequirements(**resources)
    limits, requests = dict(resources.limits or {}), dict(resources.requests or {})
    if tbase is not None and tbase.resources is not None and op.container_resources is None:
        limits = {**(tbase.resources.limits or {}), **limits}
        requests = {**(tbase.resources.requests or {}), **requests}
    limits[GPU_RESOURCE] = requests[GPU_RESOURCE] = str(gpus)
    if op.cpu:
        requests["cpu"] = str(op.cpu)
    if op.memory:
        requests["memory"] = limits["memory"] = str(op.memory)
    op.container_resources = k8s.V1ResourceRequirements(
        limits={k: str(v) for k, v in limits.items()},
        requests={k: str(v) for k, v in requests.items()},
        claims=resources.claims,
    )
    selector = {**(tspec.node_selector or {}), **(op.node_selector or {})}
    if op.gpu_type:
        check_gpu_type(str(op.gpu_type))
        selector[op.gpu_node_label] = str(op.gpu_type)
    op.node_selector = selector
    tolerations: dict[tuple, k8s.V1Toleration] = {}
    for tol in [*(tspec.tolerations or []), *op.tolerations]:
        tolerations.setdefault((tol.key, tol.operator, tol.value, tol.effect), tol)
    if not any(key == GPU_RESOURCE for key, *_ in tolerations):
        tolerations[(GPU_RESOURCE, "Exists", None, "NoSchedule")] = k8s.V1Toleration(
            key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"
        )
    op.tolerations = list(tolerations.values())
    names = {
        v.get("name") if isinstance(v, dict) else getattr(v, "name", None)
        for v in [*op.volumes, *(tspec.volumes or [])]
    }
    mounts = {m.mount_path for m in (tbase.volume_mounts or [])} if tbase is not None else set()
    if op.shm_size and SHM_VOLUME not in names and "/dev/shm" not in mounts:
        op.volumes = [
            *op.volumes,
            k8s.V1Volume(
                name=SHM_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=op.shm_size)
            ),
        ]
        op.volume_mounts = [*op.volume_mounts, k8s.V1VolumeMount(name=SHM_VOLUME, mount_path="/dev/shm")]
    if not op.security_context and tspec.security_context is None:
        op.security_context = k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            run_as_group=1000,
            fs_group=1000,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        )
    if op.container_security_context is None and (tbase is None or tbase.security_context is None):
        op.container_security_context = k8s.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        )


def credential_refs(op: Any, settings: Any) -> list[k8s.V1EnvVar]:
    """The MLflow credentials of the connection as references to the Kubernetes secret, never as values."""
    from kubernetes.client import models as k8s

    wanted = ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] if settings.username else []
    wanted += ["MLFLOW_TRACKING_TOKEN"] if settings.token else []
    if not wanted:
        return []
    if not op.mlflow_secret_name:
        raise PodSpecError(
            f"MLflow connection {op.mlflow_conn_id!r} has credentials, but no Kubernetes secret holds them "
            f"for the training pod: create one (kubectl -n {op.namespace or '<namespace>'} create secret "
            "generic mlflow-credentials --from-literal=username=... --from-literal=password=... or "
            "--from-literal=token=...) and set mlflow_secret_name= or [mlops] training_mlflow_secret. "
            "Credentials never go into a pod as plain env values"
        )
    return [
        k8s.V1EnvVar(
            name=name,
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=op.mlflow_secret_name, key=op.mlflow_secret_keys[name])
            ),
        )
        for name in wanted
    ]


def pod_env(op: Any, contract: dict[str, str], settings: Any, user: list[k8s.V1EnvVar],
            access: StorageAccess | None = None) -> list[k8s.V1EnvVar]:
    """The env contract and the store's settings as plain values, the MLflow and store credentials as secret refs,
    then the user's own env vars."""
    from kubernetes.client import models as k8s

    from mlops_airflow.training.data import CREDENTIAL_ENV as STORE_CREDENTIALS

    uri = op.mlflow_tracking_uri or settings.tracking_uri
    registry = settings.registry_uri if settings.registry_uri != settings.tracking_uri else uri
    contract = {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": registry,
        **contract,
        "MLOPS_IMAGE_DIGEST": image_reference_digest(str(op.image)),
        "PYTHONUNBUFFERED": "1",
    }
    check_no_plain_credentials(user, CREDENTIAL_ENV, "the Kubernetes secret named by mlflow_secret_name")
    check_no_plain_credentials(user, STORE_CREDENTIALS, "the Kubernetes secret named by storage_secret_name")
    store = storage_env_vars(access, op.storage_secret_name, op.storage_secret_keys, op.namespace)
    managed = {*contract, *CREDENTIAL_ENV, *(v.name for v in store)}
    return [
        *(k8s.V1EnvVar(name=k, value=str(v)) for k, v in contract.items()),
        *credential_refs(op, settings),
        *store,
        *(v for v in user if v.name not in managed),
    ]


def termination_message(data: dict[str, Any], container: str) -> str | None:
    for status in (data.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return ((status.get("state") or {}).get("terminated") or {}).get("message")
    return None


def api_error_message(exc: ApiException, ref: str, job: str) -> str:
    """One on-call sentence for a Kubernetes API error about training pod ``ref`` (``namespace/name``)."""
    try:
        detail = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        detail = exc.reason
    namespace = ref.split("/", 1)[0]
    step = {
        403: f"grant the worker's Kubernetes identity the pod-launcher role in namespace {namespace}, or set "
        "namespace= / [mlops] training_namespace",
        404: f"create namespace {namespace} or set namespace= / [mlops] training_namespace",
        409: "a pod with that name exists; delete it or keep random_name_suffix=True",
        422: "fix the pod spec (gpu_count, container_resources, pod template) and clear the task",
    }.get(exc.status or 0, "check the cluster connection (kubernetes_conn_id) and retry")
    return f"the Kubernetes API rejected training pod {ref} ({exc.status} {exc.reason}: {detail}) [{job}]; {step}"


def inspect_pod(op: Any, pod: k8s.V1Pod, last_seen: k8s.V1Pod) -> None:
    """Record the image digest of a succeeded pod (``op._image_id``), or diagnose a failed one (``op._diagnosis``);
    never raises."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from mlops_airflow.k8s.diagnose import diagnose

    name, namespace = pod.metadata.name, pod.metadata.namespace
    try:
        try:
            remote = op.client.read_namespaced_pod(name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            remote = None
        data = pod_to_dict(remote) if remote is not None else None
        if (pod_to_dict(last_seen).get("status") or {}).get("phase") == "Succeeded" and data is None:
            return  # gone already (garbage-collected), but it had succeeded
        if data and (data.get("status") or {}).get("phase") == "Succeeded":
            for status in data["status"].get("containerStatuses") or []:
                if status.get("name") == op.base_container_name:
                    op._image_id = status.get("imageID")
            return
        events = pod_to_dict(op.pod_manager.read_pod_events(pod)).get("items") or []
        try:
            nodes = pod_to_dict(op.client.list_node()).get("items") or []
        except ApiException as err:  # a namespaced service account may not list nodes
            op.log.info("Cannot list nodes (%s %s); diagnosing from the pod events only", err.status, err.reason)
            nodes = None
        log_tail = None
        if data and not termination_message(data, op.base_container_name):
            try:
                log_tail = op.client.read_namespaced_pod_log(
                    name, namespace, container=op.base_container_name, tail_lines=40
                )
            except ApiException:
                log_tail = None
        op._diagnosis = diagnose(
            data,
            events,
            nodes,
            container=op.base_container_name,
            job=op._job_description(),
            log_tail=log_tail,
            pod_ref=f"{namespace}/{name}",
        )
        op.log.error("%s", op._diagnosis.message)
    except (ApiException, HTTPError) as err:
        op.log.warning("Could not inspect pod %s/%s after its failure: %s", namespace, name, err)


def check_built_pod(pod: k8s.V1Pod, gpus: int, container: str, kubernetes_version: str | None) -> None:
    """The built pod passes the strict schema and its base container has ``gpus`` GPUs.

    :raises PodSpecError: every problem named, with the arguments to fix.
    """
    data = pod_to_dict(pod)
    problems = pod_problems(data, kubernetes_version)
    base = [c for c in data["spec"]["containers"] if c.get("name") == container]
    limit = ((base[0].get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE) if base else None
    if str(limit) != str(gpus):
        problems.append(f"container {container} has {GPU_RESOURCE} limit {limit!r}, expected {gpus}")
    if problems:
        raise PodSpecError(
            f"training pod {pod.metadata.name} would be invalid: "
            + "; ".join(problems)
            + ". Fix the pod template or the operator arguments (gpu_count, container_resources)"
        )


def explain_failure(op: Any, exc: Exception) -> BaseException:
    """The exception a training pod's task fails with: the diagnosis when there is one, else the cause named."""
    from airflow.sdk.exceptions import AirflowSkipException
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from mlops_airflow._summary import log_summary
    from mlops_airflow.exceptions import MLOpsError, TrainingError

    if isinstance(exc, AirflowSkipException):
        return exc
    pod = op.pod or op.pod_request_obj
    ref = f"{pod.metadata.namespace}/{pod.metadata.name}" if pod is not None else op.task_id
    if isinstance(exc, MLOpsError):  # already says what to do (invalid spec, missing secret ...)
        if not getattr(exc, "_mlops_summary_logged", False):
            log_summary(op.log, "train", logging.ERROR, backend="kubernetes", status="failed",
                        cause=type(exc).__name__, pod=ref, gpus=op.gpu_count)
            exc._mlops_summary_logged = True  # type: ignore[attr-defined]
        return exc
    if op._diagnosis is not None:
        message, cause = op._diagnosis.message, op._diagnosis.cause
        op.log.info("Provider error behind it: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
    elif isinstance(exc, ApiException):
        message, cause = op._api_error(exc, ref), f"api_{exc.status}"
    elif isinstance(exc, HTTPError):
        host = op.hook.api_client.configuration.host
        message = (
            f"cannot reach the Kubernetes API at {host} for pod {ref} ({exc}); check "
            f"kubernetes_conn_id={op.kubernetes_conn_id!r} (kubeconfig / in-cluster) and retry"
        )
        cause = "api_unreachable"
    else:
        return exc
    log_summary(op.log, "train", logging.ERROR, backend="kubernetes", status="failed", cause=cause, pod=ref,
                gpus=op.gpu_count)
    error = TrainingError(message)
    error._mlops_summary_logged = True  # type: ignore[attr-defined]  # trigger_reentry may run in execute
    return error
