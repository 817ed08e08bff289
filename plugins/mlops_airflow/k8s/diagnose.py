"""Turn a failed training pod into one sentence an on-call engineer can act on.

Input is plain JSON as the API server returns it (camelCase): the pod, its events and, when the
worker's service account may list them, the nodes. The nodes say *which* scheduling constraint
failed (label, taint, GPU count, GPUs busy); the scheduler's ``FailedScheduling`` event is the
fallback when nodes cannot be read, and is quoted in every Pending message.

Every message names the pod, the cause, the training job (experiment, dataset) and the next step.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GPU = "nvidia.com/gpu"
_NO_SCHEDULE = {"NoSchedule", "NoExecute"}
_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_EXIT_HINTS = {
    2: "the job rejected its input, so a retry will not help: fix the training set or training_config, "
       "then clear the task",
    137: "the container was SIGKILLed (node out of memory or killed after the grace period): check the node's "
         "memory pressure or raise memory=",
    143: "the container got SIGTERM (pod deleted, node drained or preempted): the task retries",
}
_DEFAULT_EXIT_HINT = ("see the container log above (the traceback ends with the cause); a retry helps only "
                      "for infrastructure errors such as an unreachable MLflow server")


@dataclass(frozen=True)
class Diagnosis:
    """``cause`` is a short code (tests, metrics); ``message`` is what the task log ends with."""

    cause: str
    message: str


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _gpus_requested(pod: dict[str, Any]) -> int:
    spec = pod.get("spec") or {}
    total = 0
    for c in spec.get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        try:
            total += int(str(limits.get(GPU, 0)))
        except ValueError:
            continue
    return total


def _tolerates(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        op = tol.get("operator") or "Equal"
        if not tol.get("key") and op == "Exists":
            return True
        if tol.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def untolerated_taints(node: dict[str, Any], tolerations: list[dict[str, Any]]) -> list[str]:
    """``key=value:Effect`` of the node's scheduling taints the pod does not tolerate."""
    out = []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in _NO_SCHEDULE and not _tolerates(taint, tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            out.append(f"{taint.get('key')}{value}:{taint.get('effect')}")
    return out


def _labels(node: dict[str, Any]) -> dict[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _allocatable_gpus(node: dict[str, Any]) -> int:
    try:
        return int(str(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0)))
    except ValueError:
        return 0


def _scheduler_message(events: list[dict[str, Any]]) -> str | None:
    failed = [e for e in events if e.get("reason") == "FailedScheduling" and e.get("message")]
    return failed[-1]["message"].strip() if failed else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _nodes(n: int, selector: dict[str, str]) -> str:
    where = f" with {_selector_text(selector)}" if selector else ""
    return f"the only node{where}" if n == 1 else f"all {n} nodes{where}"


def _selector_text(selector: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selector.items()) or "no node selector"


def diagnose_unscheduled(
    pod: dict[str, Any], events: list[dict[str, Any]], nodes: list[dict[str, Any]] | None
) -> tuple[str, str, str]:
    """(cause, what, next step) for a pod the scheduler could not place."""
    spec = pod.get("spec") or {}
    selector: dict[str, str] = spec.get("nodeSelector") or {}
    tolerations = spec.get("tolerations") or []
    gpus = _gpus_requested(pod)
    scheduler = _scheduler_message(events)
    insufficient = set(re.findall(r"Insufficient ([\w./-]*\w)", scheduler or ""))

    if nodes is not None:
        if not nodes:
            return ("no_nodes", "the cluster has no nodes", "check the cluster and its node pools")
        matching = [n for n in nodes if all(_labels(n).get(k) == v for k, v in selector.items())]
        if not matching:
            for key, value in selector.items():
                if any(_labels(n).get(key) == value for n in nodes):
                    continue
                offered = Counter(_labels(n)[key] for n in nodes if key in _labels(n))
                have = (f"nodes offer {key}: " + ", ".join(f"{v} ({_plural(c, 'node')})" for v, c in offered.items())
                        if offered else f"no node carries the label {key} at all")
                return ("node_selector", f"no node has the label {key}={value} ({have})",
                        f"set gpu_type to a value your GPU node pool carries, or add {value} nodes to the pool "
                        f"(kubectl get nodes -L {key})")
            return ("node_selector", f"no single node has all of the labels {_selector_text(selector)}",
                    "fix the node selector (gpu_type / node_selector) to match one node pool")
        ready = [n for n in matching if not (n.get("spec") or {}).get("unschedulable")]
        if not ready:
            return ("cordoned", f"{_nodes(len(matching), selector)} {'is' if len(matching) == 1 else 'are'} cordoned",
                    "uncordon them or wait for the node maintenance to finish")
        tolerated = [n for n in ready if not untolerated_taints(n, tolerations)]
        if not tolerated:
            taints = sorted({t for n in ready for t in untolerated_taints(n, tolerations)})
            return ("toleration",
                    f"{_nodes(len(ready), selector)} {'has' if len(ready) == 1 else 'have'} taints the pod does not "
                    f"tolerate: {', '.join(taints)}",
                    f"add a toleration for {taints[0].split(':')[0].split('=')[0]} (tolerations=[...]) or remove the "
                    "taint from the node pool")
        if gpus:
            best = max(tolerated, key=_allocatable_gpus)
            most = _allocatable_gpus(best)
            if most == 0:
                return ("no_gpu_capacity",
                        f"none of the {_plural(len(tolerated), 'node')} with {_selector_text(selector)} advertise "
                        f"{GPU} (allocatable 0): the NVIDIA device plugin is not running there",
                        "check the nvidia-device-plugin / GPU operator DaemonSet on that node pool")
            if most < gpus:
                return ("gpu_too_many",
                        f"no node has {gpus} {GPU} (largest: {most} on {best['metadata']['name']})",
                        f"lower gpu_count to {most} or use a node pool with {gpus}-GPU nodes")
            if not insufficient or GPU in insufficient:
                return ("gpu_busy",
                        f"no node has {gpus} {GPU} free ({_plural(len(tolerated), 'matching node')} with enough GPUs, "
                        "all requested by other pods)",
                        "wait for running GPU jobs to finish, raise the GPU node pool's maximum size (cluster "
                        "autoscaler), or lower gpu_count")
        if insufficient:
            res = ", ".join(sorted(insufficient))
            return (f"insufficient_{sorted(insufficient)[0]}",
                    f"no node with {_selector_text(selector)} has the requested {res} free",
                    "lower the cpu/memory requests or grow the node pool")

    if scheduler:
        if GPU in insufficient:
            return ("gpu_busy", f"no node has {gpus or 'the requested'} {GPU} free",
                    "wait for running GPU jobs to finish, check the GPU node pool, or lower gpu_count")
        if "didn't match Pod's node affinity/selector" in scheduler:
            return ("node_selector", f"no node matches the node selector {_selector_text(selector)}",
                    "set gpu_type to a label value your GPU node pool carries")
        if "untolerated taint" in scheduler:
            return ("toleration", "the candidate nodes have taints the pod does not tolerate",
                    "add the matching toleration or remove the taint")
        return ("unschedulable", "the scheduler cannot place the pod", "read the scheduler message and fix that")
    return ("unschedulable", "the pod was never scheduled and no scheduler event explains why",
            "check that a scheduler runs for this namespace (kubectl get events)")


def _container_status(pod: dict[str, Any], container: str) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return status
    return None


def _container_spec(pod: dict[str, Any], container: str) -> dict[str, Any]:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return c
    return {}


def _failure_line(text: str | None) -> str | None:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    marked = [ln for ln in lines if "TRAINING FAILED" in ln]
    if marked:
        return marked[-1][marked[-1].index("TRAINING FAILED"):]
    return lines[-1] if lines else None


def diagnose(
    pod: dict[str, Any] | None,
    events: list[dict[str, Any]] | None = None,
    nodes: list[dict[str, Any]] | None = None,
    *,
    container: str = "base",
    job: str = "",
    log_tail: str | None = None,
    now: datetime | None = None,
    pod_ref: str | None = None,
) -> Diagnosis:
    """The on-call diagnosis of a training pod that did not succeed.

    :param pod: the pod as JSON (None when it is gone).
    :param events: the pod's events as JSON.
    :param nodes: the cluster's nodes as JSON, or None when they cannot be listed.
    :param job: what was being trained, e.g. ``experiment 'my_model', dataset rev abc md5 123``.
    :param log_tail: the last lines of the container log, when the termination message is empty.
    """
    events = events or []
    suffix = f" [{job}]" if job else ""
    if pod is None:
        return Diagnosis("pod_gone", f"pod {pod_ref or '?'} disappeared before it finished (deleted by someone or "
                                     f"garbage-collected); the task retries and starts a new pod{suffix}")
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ref = pod_ref or f"{meta.get('namespace')}/{meta.get('name')}"
    now = now or datetime.now(UTC)
    created = _parse_time(meta.get("creationTimestamp"))
    age = int((now - created).total_seconds()) if created else 0
    phase = status.get("phase") or "Unknown"

    if status.get("reason") == "Evicted":
        return Diagnosis("evicted", f"pod {ref} was evicted by the kubelet: {status.get('message', '')}; the node was "
                                    f"under memory or disk pressure: retry, or raise memory= so the pod is not the "
                                    f"first to go{suffix}")
    if status.get("reason") == "DeadlineExceeded":
        return Diagnosis("deadline", f"pod {ref} ran past active_deadline_seconds and was stopped; raise "
                                     f"active_deadline_seconds or make training faster{suffix}")

    cs = _container_status(pod, container)
    state = (cs or {}).get("state") or {}
    waiting, terminated = state.get("waiting"), state.get("terminated")
    if waiting and waiting.get("reason") in _IMAGE_PULL:
        image = (cs or {}).get("image") or _container_spec(pod, container).get("image")
        return Diagnosis("image_pull", f"pod {ref}: image {image} cannot be pulled ({waiting['reason']}: "
                                       f"{waiting.get('message') or 'no detail'}); check the image name and tag "
                                       f"(image= / [mlops] training_image), that it was pushed, and the pod's "
                                       f"imagePullSecrets{suffix}")
    if waiting and waiting.get("reason") == "CreateContainerConfigError":
        return Diagnosis("container_config", f"pod {ref}: the container cannot be configured "
                                             f"({waiting.get('message')}); create the missing secret or config map "
                                             f"in namespace {meta.get('namespace')} (the MLflow credentials secret "
                                             f"is set by mlflow_secret_name / [mlops] training_mlflow_secret){suffix}")
    if terminated:
        code = terminated.get("exitCode")
        if terminated.get("reason") == "OOMKilled":
            limit = ((_container_spec(pod, container).get("resources") or {}).get("limits") or {}).get("memory")
            return Diagnosis("oom_killed", f"container {container} of pod {ref} was OOMKilled (exit {code}, memory "
                                           f"limit {limit or 'none'}); raise memory= (a memory-backed /dev/shm "
                                           f"counts against it) or lower training_config batch_size{suffix}")
        if code not in (None, 0):
            line = _failure_line(terminated.get("message")) or _failure_line(log_tail) or "no output"
            return Diagnosis("exit_code", f"training container {container} of pod {ref} exited with code {code}: "
                                          f"{line}; {_EXIT_HINTS.get(code, _DEFAULT_EXIT_HINT)}{suffix}")

    if phase == "Pending":
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        scheduled = (conditions.get("PodScheduled") or {}).get("status") == "True"
        if not scheduled:
            cause, what, step = diagnose_unscheduled(pod, events, nodes)
            scheduler = _scheduler_message(events)
            quoted = f" (scheduler: {scheduler})" if scheduler else ""
            return Diagnosis(cause, f"pod {ref} Pending {age} s: {what}{quoted}; {step}{suffix}")
        reason = (waiting or {}).get("reason") or "ContainerCreating"
        warnings = [e for e in events if e.get("type") == "Warning"]
        last = f"; last warning: {warnings[-1].get('reason')}: {warnings[-1].get('message')}" if warnings else ""
        return Diagnosis("not_started", f"pod {ref} was scheduled on {pod.get('spec', {}).get('nodeName')} but its "
                                        f"container did not start in {age} s ({reason}{last}); check the pod events "
                                        f"above (a multi-GB CUDA image pull, volume mounts) or raise "
                                        f"startup_timeout_seconds{suffix}")
    if phase in ("Running", "Unknown"):
        return Diagnosis("interrupted", f"pod {ref} is still {phase} but the task stopped waiting for it (timeout or "
                                        f"lost connection to the API server); check execution_timeout and the pod's "
                                        f"state{suffix}")
    if phase == "Failed":
        return Diagnosis("failed", f"pod {ref} failed ({status.get('reason') or 'no reason'}: "
                                   f"{status.get('message') or 'no message'}); see the pod events above{suffix}")
    return Diagnosis("unknown", f"pod {ref} ended in phase {phase} without a successful training run; see the "
                                f"pod events above{suffix}")
