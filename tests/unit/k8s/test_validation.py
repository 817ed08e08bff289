"""Strict validation of training pods: unknown fields, the Kubernetes schema (strict), the GPU rules.

Real inputs: the project's pod templates, the Kubernetes client's own models and ``kubernetes-validate``'s
bundled schemas. Runtime: a few seconds (the schema is loaded once per Kubernetes version).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.k8s.validation import (
    GPU_RESOURCE,
    PodSpecError,
    gpu_rule_violations,
    is_template,
    load_pod_template,
    parse_gpu_count,
    pod_problems,
    pod_to_dict,
    schema_errors,
    unknown_fields,
    validate_pod_template,
)

pytestmark = pytest.mark.unit

TEMPLATES = Path(__file__).resolve().parents[3] / "include" / "pod_templates"


def _pod(limits=None, requests=None, init=None, **container) -> dict:
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v is not None}
    spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "base", "image": "mlops-training:0.1.0", "resources": resources, **container}],
    }
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "train"}, "spec": spec}


# ----------------------------------------------------------------------------------------- gpu_count
@pytest.mark.parametrize(("value", "count"), [(1, 1), (8, 8), (2.0, 2), ("4", 4), (" 3 ", 3), ("+2", 2)])
def test_parse_gpu_count_accepts_whole_numbers(value, count):
    assert parse_gpu_count(value) == count


@pytest.mark.parametrize("value", [0, -1, 0.5, 1.5, "0", "1.5", "500m", "one", "", None, True, False, [1]])
def test_parse_gpu_count_rejects_anything_else_with_the_next_step(value):
    with pytest.raises(
        ValueError, match=rf"gpu_count must be a whole number of GPUs >= 1 .*got {re.escape(repr(value))};"
    ):
        parse_gpu_count(value)
    with pytest.raises(ValueError, match=r"training_backend=local"):
        parse_gpu_count(value)


def test_is_template():
    assert is_template("{{ params.gpus }}") and is_template("x{{y}}")
    assert not is_template("2") and not is_template(2) and not is_template(None) and not is_template("{ x }")


# ----------------------------------------------------------------------------------------- GPU rules
def test_gpu_rules_apply_to_extended_resources_only():
    assert gpu_rule_violations(_pod({GPU_RESOURCE: "1", "memory": "32Gi"}, {GPU_RESOURCE: 1, "cpu": "500m"})) == []
    # Native resources may be fractional, overcommitted and requested without a limit.
    assert gpu_rule_violations(_pod({"cpu": "2"}, {"cpu": "500m", "memory": "1Gi", "hugepages-2Mi": "1Gi"})) == []
    assert gpu_rule_violations({}) == [] and gpu_rule_violations({"spec": {}}) == []


def test_gpu_rule_violations_name_the_field():
    assert gpu_rule_violations(_pod({GPU_RESOURCE: "0.5"}, None)) == [
        "spec.containers[0].resources.limits[nvidia.com/gpu]: '0.5' must be a whole number"
    ]
    assert gpu_rule_violations(_pod({GPU_RESOURCE: "2"}, {GPU_RESOURCE: "1"})) == [
        "spec.containers[0].resources.requests[nvidia.com/gpu]: '1' must equal the limit '2'"
    ]
    (problem,) = gpu_rule_violations(_pod(None, {"example.com/fpga": "1"}))
    assert problem.startswith(
        "spec.containers[0].resources.limits[example.com/fpga]: a request of '1' needs an equal limit"
    )
    init = [
        {"name": "warm", "image": "x", "resources": {"limits": {GPU_RESOURCE: "1"}, "requests": {GPU_RESOURCE: "1.0"}}}
    ]
    assert gpu_rule_violations(_pod({GPU_RESOURCE: "1"}, None, init=init)) == [
        "spec.initContainers[0].resources.requests[nvidia.com/gpu]: '1.0' must be a whole number",
        "spec.initContainers[0].resources.requests[nvidia.com/gpu]: '1.0' must equal the limit '1'",
    ]


# ----------------------------------------------------------------------------------------- unknown fields
def test_unknown_fields_walks_objects_lists_and_mappings():
    pod = {
        "metadata": {"labels": {"any-key": "v"}, "annotations": {"a/b": "c"}},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"},
            "containers": [
                {
                    "name": "base",
                    "image": "x",
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optinal": True}}}],
                    "resources": {"limits": {GPU_RESOURCE: 1}},
                }
            ],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimt": "8Gi"}}],
        },
    }
    assert unknown_fields(pod) == [
        "spec.containers[0].env[0].valueFrom.secretKeyRef.optinal (did you mean 'optional'?)",
        "spec.volumes[0].emptyDir.sizeLimt (did you mean 'sizeLimit'?)",
    ]
    assert unknown_fields({"spec": {"zzzqqq": 1}}) == ["spec.zzzqqq"]  # nothing close: no suggestion
    assert unknown_fields({"spec": "x"}) == ["spec (expected an object, got str)"]
    assert unknown_fields({"metadata": {"labels": ["a"]}}) == ["metadata.labels (expected a mapping, got list)"]
    assert unknown_fields(["not a pod"]) == [". (expected an object, got list)"]
    assert unknown_fields({"containers": [{"nme": "b"}]}, model="V1PodSpec", path="spec") == [
        "spec.containers[0].nme (did you mean 'name'?)"
    ]


# ----------------------------------------------------------------------------------------- schema
def test_schema_errors_in_strict_mode():
    assert schema_errors(_pod({GPU_RESOURCE: "1"}, None)) == []
    (extra,) = schema_errors(_pod(None, None, bogus=1))
    assert extra.startswith("spec.containers[0]: Additional properties are not allowed ('bogus' was unexpected)")
    assert extra.endswith("schema, strict)")
    (typed,) = schema_errors(_pod(None, None, ports=[{"containerPort": "http"}]))
    assert typed.startswith("spec.containers[0].ports[0].containerPort: 'http' is not of type 'integer'")
    assert schema_errors(_pod(None, None), kubernetes_version="1.33") == []


def test_an_unsupported_kubernetes_version_cannot_validate():
    assert schema_errors(_pod(None, None), kubernetes_version="9.99") == [
        "cannot validate: kubernetes-validate does not support version 9.99"
    ]


def test_pod_problems_collects_every_check_once():
    pod = _pod({GPU_RESOURCE: "0.5"}, None, resource={})
    problems = pod_problems(pod)
    assert (
        "unknown field spec.containers[0].resource (did you mean 'resources'?) (Kubernetes would drop it "
        "silently)" in problems
    )
    assert any(p.startswith("spec.containers[0]: Additional properties are not allowed") for p in problems)
    assert "spec.containers[0].resources.limits[nvidia.com/gpu]: '0.5' must be a whole number" in problems
    assert len(problems) == len(set(problems)) == 3


# ----------------------------------------------------------------------------------------- templates
def test_the_project_s_gpu_template_is_valid_and_the_typo_one_is_not():
    template = TEMPLATES / "gpu_training.yaml"
    data = validate_pod_template(template)
    assert data == load_pod_template(template) and data["kind"] == "Pod"
    assert data["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] == 1
    assert validate_pod_template(str(template)) == data
    assert validate_pod_template(data) is data
    with pytest.raises(
        PodSpecError,
        match=r"pod template .*invalid_gpu_typo.yaml is invalid \(\d problem\(s\)\): "
        r"unknown field spec.containers\[0\].resource \(did you mean 'resources'",
    ) as err:
        validate_pod_template(TEMPLATES / "invalid_gpu_typo.yaml")
    assert "which can start the job without its GPU limit" in str(err.value)
    assert isinstance(err.value, TrainingError)


def test_a_dict_template_is_named_as_such():
    with pytest.raises(
        PodSpecError,
        match=r"pod template pod_template_dict is invalid \(1 problem\(s\)\): "
        r"spec.containers\[0\].resources.requests\[nvidia.com/gpu\]: '2' must "
        r"equal the limit '1'",
    ):
        validate_pod_template(_pod({GPU_RESOURCE: "1"}, {GPU_RESOURCE: "2"}))


def test_a_template_of_another_known_kind_is_refused():
    template = {**_pod(None, None), "apiVersion": "apps/v1", "kind": "Deployment"}
    with pytest.raises(PodSpecError, match=r"apiVersion/kind must be v1/Pod, got apps/v1/Deployment"):
        validate_pod_template(template)


def test_a_template_with_an_unknown_api_version_is_refused():
    template = {**_pod(None, None), "apiVersion": "v2"}
    with pytest.raises(PodSpecError, match=r"apiVersion/kind must be v1/Pod, got v2/Pod"):
        validate_pod_template(template)


def test_template_files_that_cannot_be_read(tmp_path):
    with pytest.raises(PodSpecError, match=r"pod template .*missing.yaml does not exist; fix pod_template_file"):
        load_pod_template(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: [Pod\n")
    with pytest.raises(PodSpecError, match=r"(?s)pod template .*bad.yaml is not valid YAML \(.*\); fix the file"):
        load_pod_template(bad)
    two = tmp_path / "two.yaml"
    two.write_text("apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\n")
    with pytest.raises(PodSpecError, match=r"must hold exactly one Pod mapping, found 2 document\(s\)"):
        load_pod_template(two)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(PodSpecError, match=r"found 1 document\(s\)"):
        validate_pod_template(scalar)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(PodSpecError, match=r"found 0 document\(s\)"):
        load_pod_template(empty)


def test_pod_to_dict_gives_the_api_server_s_camel_case_json():
    from kubernetes.client import models as k8s

    pod = k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(name="train"),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            node_selector={"nvidia.com/gpu.product": "NVIDIA-H200"},
            containers=[
                k8s.V1Container(
                    name="base",
                    image="x",
                    resources=k8s.V1ResourceRequirements(limits={GPU_RESOURCE: "1"}, requests={GPU_RESOURCE: "1"}),
                )
            ],
        ),
    )
    data = pod_to_dict(pod)
    assert data == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "train"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"},
            "containers": [
                {
                    "name": "base",
                    "image": "x",
                    "resources": {"limits": {GPU_RESOURCE: "1"}, "requests": {GPU_RESOURCE: "1"}},
                }
            ],
        },
    }
    assert pod_problems(data) == []
    already = {"apiVersion": "v1"}
    assert pod_to_dict(already) is already
