"""The on-call diagnosis of failed training pods, from API JSON (no cluster, no Airflow). Runtime: < 1 s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlops_airflow.k8s.diagnose import diagnose
from mlops_airflow.k8s.validation import parse_gpu_count, unknown_fields

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
JOB = "experiment 'churn_classifier', dataset rev abc123 md5 m1"
H200 = {"nvidia.com/gpu.product": "NVIDIA-H200"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod(*, gpus: int = 1, phase: str = "Pending", scheduled: bool = False, statuses=None, reason=None, message=None,
        memory: str | None = None, age_s: int = 600) -> dict:
    limits = {"nvidia.com/gpu": str(gpus), **({"memory": memory} if memory else {})}
    status = {"phase": phase, "conditions": [{"type": "PodScheduled", "status": "True" if scheduled else "False"}]}
    if statuses:
        status["containerStatuses"] = statuses
    if reason:
        status.update(reason=reason, message=message)
    return {
        "metadata": {"name": "train-model-x1", "namespace": "ml", "creationTimestamp":
                     (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"nodeSelector": H200, "tolerations": [GPU_TOLERATION], "nodeName": "gpu-1" if scheduled else None,
                 "containers": [{"name": "base", "image": "reg/mlops-training:1", "resources": {"limits": limits}}]},
        "status": status,
    }


def node(name: str, *, labels=None, gpus: int = 8, taints=None, unschedulable=False) -> dict:
    return {"metadata": {"name": name, "labels": labels if labels is not None else H200},
            "spec": {"taints": taints if taints is not None else [GPU_TAINT], "unschedulable": unschedulable},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "64"}}}


def scheduling_event(message: str) -> list[dict]:
    return [{"type": "Warning", "reason": "FailedScheduling", "message": message}]


def run(p, events=None, nodes=None, **kw):
    return diagnose(p, events or [], nodes, job=JOB, now=NOW, **kw)


def test_all_gpus_busy_is_the_headline_message():
    events = scheduling_event("0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
                              "available: 2 No preemption victims found for incoming pod.")
    d = run(pod(gpus=2), events, [node("gpu-1"), node("gpu-2")])
    assert d.cause == "gpu_busy"
    assert d.message == (
        "pod ml/train-model-x1 Pending 600 s: no node has 2 nvidia.com/gpu free (2 matching nodes with enough GPUs, "
        "all requested by other pods) (scheduler: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: "
        "0/2 nodes are available: 2 No preemption victims found for incoming pod.); wait for running GPU jobs to "
        "finish, raise the GPU node pool's maximum size (cluster autoscaler), or lower gpu_count "
        "[experiment 'churn_classifier', dataset rev abc123 md5 m1]")


@pytest.mark.parametrize(("nodes", "cause", "text"), [
    ([node("cpu-1", labels={}, taints=[])], "node_selector",
     "no node has the label nvidia.com/gpu.product=NVIDIA-H200 (no node carries the label nvidia.com/gpu.product"),
    ([node("gpu-1", gpus=0)], "no_gpu_capacity", "the NVIDIA device plugin is not running there"),
    ([node("gpu-1", unschedulable=True)], "cordoned",
     "the only node with nvidia.com/gpu.product=NVIDIA-H200 is cordoned"),
    ([node("gpu-1", taints=[GPU_TAINT, {"key": "dedicated", "effect": "NoExecute"}])], "toleration",
     "taints the pod does not tolerate: dedicated:NoExecute; add a toleration for dedicated"),
    ([node("gpu-1", gpus=4), node("gpu-2", gpus=2)], "gpu_too_many",
     "no node has 8 nvidia.com/gpu (largest: 4 on gpu-1); lower gpu_count to 4"),
    ([], "no_nodes", "the cluster has no nodes"),
])
def test_node_inspection_names_the_failed_constraint(nodes, cause, text):
    d = run(pod(gpus=8), [], nodes)
    assert d.cause == cause and text in d.message and d.message.startswith("pod ml/train-model-x1 Pending 600 s:")


def test_other_resource_shortage_is_not_blamed_on_gpus():
    events = scheduling_event("0/1 nodes are available: 1 Insufficient memory.")
    d = run(pod(), events, [node("gpu-1")])
    assert d.cause == "insufficient_memory" and "has the requested memory free" in d.message


@pytest.mark.parametrize(("event", "cause", "text"), [
    ("0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector.", "node_selector",
     "no node matches the node selector nvidia.com/gpu.product=NVIDIA-H200"),
    ("0/5 nodes are available: 5 Insufficient nvidia.com/gpu.", "gpu_busy", "no node has 1 nvidia.com/gpu free"),
    ("0/5 nodes are available: 5 node(s) had untolerated taint {dedicated: ml}.", "toleration", "does not tolerate"),
])
def test_without_node_access_the_scheduler_event_decides(event, cause, text):
    d = run(pod(), scheduling_event(event), None)
    assert d.cause == cause and text in d.message and f"(scheduler: {event})" in d.message


def test_no_event_and_no_nodes_still_says_what_to_check():
    assert "no scheduler event explains why" in run(pod(), [], None).message


def test_container_failures():
    backoff = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg/x:1"'}
    waiting = [{"name": "base", "image": "reg/x:1", "state": {"waiting": backoff}}]
    assert run(pod(scheduled=True, statuses=waiting)).cause == "image_pull"
    oom = [{"name": "base", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    d = run(pod(phase="Failed", scheduled=True, statuses=oom, memory="16Gi"))
    assert d.cause == "oom_killed" and "memory limit 16Gi" in d.message
    term = [{"name": "base", "state": {"terminated": {"exitCode": 143, "reason": "Error"}}}]
    d = run(pod(phase="Failed", scheduled=True, statuses=term), log_tail="epoch 3\nterminated")
    assert d.cause == "exit_code" and "exited with code 143: terminated; the container got SIGTERM" in d.message
    term = [{"name": "base", "state": {"terminated": {"exitCode": 1, "reason": "Error", "message":
                                                      "x\nTRAINING FAILED: cannot create the MLflow run; retry\n"}}}]
    d = run(pod(phase="Failed", scheduled=True, statuses=term))
    assert "exited with code 1: TRAINING FAILED: cannot create the MLflow run; retry; see the container" in d.message


def test_pod_level_failures():
    assert run(pod(phase="Failed", scheduled=True, reason="Evicted", message="low on memory")).cause == "evicted"
    assert run(None, pod_ref="ml/train-model-x1").cause == "pod_gone"
    creating = [{"name": "base", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    events = [{"type": "Warning", "reason": "FailedMount", "message": 'secret "ca" not found'}]
    d = run(pod(scheduled=True, statuses=creating), events)
    assert d.cause == "not_started" and "last warning: FailedMount" in d.message
    assert "startup_timeout_seconds" in d.message


def test_unknown_fields_and_gpu_count_parsing():
    assert unknown_fields({"spec": {"containers": [{"name": "b", "resource": {}}], "nodeSelecter": {}}}) == [
        "spec.containers[0].resource (did you mean 'resources'?)", "spec.nodeSelecter (did you mean 'nodeSelector'?)"]
    assert unknown_fields({"spec": {"containers": {"name": "b"}}}) == ["spec.containers (expected a list, got dict)"]
    assert [parse_gpu_count(v) for v in (1, 2.0, "4", " 8 ")] == [1, 2, 4, 8]
