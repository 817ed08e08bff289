"""Strict validation of training pods and pod templates, before anything reaches the API server.

Why: the Kubernetes Python client silently drops fields it does not know when it loads a pod
template, so ``resource:`` (for ``resources:``) in a template makes a GPU pod without a GPU limit,
and nothing complains. Three checks run before a pod is created:

1. unknown fields, found by walking the template against the client's own models (always
   available: the cncf.kubernetes provider depends on ``kubernetes``);
2. the OpenAPI schema in strict mode (no additional properties, types) with ``kubernetes-validate``
   when it is installed;
3. the API server's rules for extended resources such as ``nvidia.com/gpu``, which no schema
   carries: whole numbers only, a request must equal the limit, a request needs a limit.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from mlops_airflow.exceptions import TrainingError

GPU_RESOURCE = "nvidia.com/gpu"
# Resources Kubernetes lets a container overcommit; every other (extended) resource follows the
# integer / request == limit rules (k8s.io/kubernetes pkg/apis/core/validation).
_NATIVE_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage"}
_WHOLE = re.compile(r"^\+?[0-9]+$")


class PodSpecError(TrainingError, AirflowFailException):
    """The pod spec or template is invalid: retrying cannot help, so the task fails without retries."""


def parse_gpu_count(value: Any) -> int:
    """``gpu_count`` as an int >= 1; anything else (fractional, zero, negative, text) is an error."""
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str) and _WHOLE.match(value.strip()):
        count = int(value.strip())
    if count is None or count < 1:
        raise ValueError(
            f"gpu_count must be a whole number of GPUs >= 1 ({GPU_RESOURCE} is scheduled in whole devices; "
            f"request == limit), got {value!r}; use gpu_count=1 for one GPU, or [mlops] training_backend=local "
            "to train on CPU"
        )
    return count


def is_template(value: Any) -> bool:
    """A Jinja template string, rendered only when the task runs (validate it then)."""
    return isinstance(value, str) and "{{" in value


def _is_extended(resource: str) -> bool:
    return resource not in _NATIVE_RESOURCES and not resource.startswith("hugepages-") and "/" in resource


def gpu_rule_violations(pod: dict[str, Any]) -> list[str]:
    """The API server's extended-resource rules, as ``field: problem`` lines (empty when valid)."""
    spec = pod.get("spec") or {}
    problems: list[str] = []
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            resources = container.get("resources") or {}
            limits = resources.get("limits") or {}
            requests = resources.get("requests") or {}
            base = f"spec.{kind}[{i}].resources"
            for section, values in (("limits", limits), ("requests", requests)):
                for name, qty in values.items():
                    if _is_extended(name) and not _WHOLE.match(str(qty).strip()):
                        problems.append(f"{base}.{section}[{name}]: {qty!r} must be a whole number")
            for name, qty in requests.items():
                if not _is_extended(name):
                    continue
                if name not in limits:
                    problems.append(f"{base}.limits[{name}]: a request of {qty!r} needs an equal limit "
                                    "(extended resources cannot be overcommitted)")
                elif str(qty).strip() != str(limits[name]).strip():
                    problems.append(f"{base}.requests[{name}]: {qty!r} must equal the limit {limits[name]!r}")
    return problems


def unknown_fields(data: Any, model: str = "V1Pod", path: str = "") -> list[str]:
    """Paths of fields the Kubernetes client would silently drop when loading ``data`` as ``model``."""
    from kubernetes.client import models

    found: list[str] = []

    def walk(value: Any, type_name: str, where: str) -> None:
        if value is None:
            return
        inner = re.fullmatch(r"list\[(.+)\]", type_name)
        if inner:
            if isinstance(value, list):
                for i, item in enumerate(value):
                    walk(item, inner.group(1), f"{where}[{i}]")
            else:
                found.append(f"{where or '.'} (expected a list, got {type(value).__name__})")
            return
        mapping = re.fullmatch(r"dict[\[(]str, (.+)[\])]", type_name)
        if mapping:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(item, mapping.group(1), f"{where}.{key}" if where else key)
            else:
                found.append(f"{where or '.'} (expected a mapping, got {type(value).__name__})")
            return
        cls = getattr(models, type_name, None)
        if cls is None or not hasattr(cls, "attribute_map"):
            return  # a primitive (str, int, bool, datetime, object): the schema check covers types
        if not isinstance(value, dict):
            found.append(f"{where or '.'} (expected an object, got {type(value).__name__})")
            return
        by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        for key, item in value.items():
            child = f"{where}.{key}" if where else key
            if key not in by_json:
                close = difflib.get_close_matches(str(key), list(by_json), n=1)
                found.append(f"{child} (did you mean {close[0]!r}?)" if close else child)
            else:
                walk(item, cls.openapi_types[by_json[key]], child)

    walk(data, model, path)
    return found


def schema_errors(data: dict[str, Any], kubernetes_version: str | None = None) -> list[str] | None:
    """Strict OpenAPI-schema errors from ``kubernetes-validate``; None when it is not installed."""
    try:
        import kubernetes_validate
    except ImportError:
        return None
    version = kubernetes_version or kubernetes_validate.utils.latest_version()
    try:
        kubernetes_validate.validate(data, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path).lstrip(".") or "."
        return [f"{where}: {err.message} (Kubernetes {err.version} schema, strict)"]
    except (
        kubernetes_validate.SchemaNotFoundError,
        kubernetes_validate.utils.VersionNotSupportedError,  # only in .utils (kubernetes-validate 1.x)
        kubernetes_validate.utils.InvalidSchemaError,
    ) as err:
        return [f"cannot validate: {getattr(err, 'message', err)}"]
    return []


def pod_problems(pod: dict[str, Any], kubernetes_version: str | None = None) -> list[str]:
    """Every problem of a pod manifest (camelCase JSON as the API server sees it)."""
    problems = [f"unknown field {p} (Kubernetes would drop it silently)" for p in unknown_fields(pod)]
    problems += schema_errors(pod, kubernetes_version) or []
    problems += gpu_rule_violations(pod)
    return list(dict.fromkeys(problems))


def load_pod_template(path: str | Path) -> dict[str, Any]:
    """Read a pod template file as one YAML mapping (errors name the file)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise PodSpecError(
            f"pod template {file} does not exist; fix pod_template_file (or [mlops] training_pod_template)"
        )
    try:
        docs = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    except yaml.YAMLError as err:
        raise PodSpecError(f"pod template {file} is not valid YAML ({err}); fix the file") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise PodSpecError(f"pod template {file} must hold exactly one Pod mapping, found {len(docs)} document(s)")
    return docs[0]


def validate_pod_template(
    template: str | Path | dict[str, Any], kubernetes_version: str | None = None
) -> dict[str, Any]:
    """Validate a pod template (file path or dict) strictly; return it, or raise ``PodSpecError``."""
    data = template if isinstance(template, dict) else load_pod_template(template)
    name = "pod_template_dict" if isinstance(template, dict) else str(template)
    problems: list[str] = []
    if data.get("apiVersion") != "v1" or data.get("kind") != "Pod":
        problems.append(f"apiVersion/kind must be v1/Pod, got {data.get('apiVersion')}/{data.get('kind')}")
    problems += pod_problems(data, kubernetes_version)
    if problems:
        raise PodSpecError(
            f"pod template {name} is invalid ({len(problems)} problem(s)): " + "; ".join(problems)
            + ". Fix the template before the task runs again: a misspelt field is dropped silently by "
            "Kubernetes, which can start the job without its GPU limit"
        )
    return data


def pod_to_dict(pod: Any) -> dict[str, Any]:
    """A ``V1Pod`` (or a dict) as the camelCase JSON the API server receives."""
    if isinstance(pod, dict):
        return pod
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(pod)
