"""A loopback fake of the Kubernetes API server, scheduler and kubelet, for tests only.

No kube-apiserver, k3s or kwok can be installed here and kind/minikube need Docker, so this serves
exactly what the cncf.kubernetes provider calls, with the API's JSON shapes and error messages:

- pods: create (with the API server's extended-resource validation: 422 for a fractional GPU count
  or request != limit), read, list by label selector, patch (merge / JSON patch), delete;
- events: list with a field selector, and watch (``?watch=true``, JSON lines);
- logs: plain and follow mode, ``timestamps``, ``sinceSeconds``, ``tailLines``;
- exec over WebSocket (``v4.channel.k8s.io``; the Python client sends stdin as text frames),
  emulating the shell commands the provider sends to its XCom sidecar;
- nodes with labels, taints and ``nvidia.com/gpu`` capacity: a pod whose selector, tolerations or
  GPU count fits no node stays Pending with the scheduler's ``FailedScheduling`` event, as a real
  scheduler would leave it.

A scheduled pod "runs": each container image maps to a ``Program`` (``FakeKubernetes.images``):
canned log lines and exit code (OOMKilled included), a Python callable, or a real subprocess such as
``include/training/train.py`` run like a container: its own working directory and HOME, and only the image's
and the pod spec's env (secret references resolved from ``FakeKubernetes.secrets``, a missing one gives
``CreateContainerConfigError``). An image that is not in ``images`` fails to pull (``ErrImagePull`` then
``ImagePullBackOff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

GPU = "nvidia.com/gpu"
XCOM_EMPTY = "__airflow_xcom_result_empty__"
_NATIVE = {"cpu", "memory", "ephemeral-storage", "storage"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


# ----------------------------------------------------------------------------------- programs
class Program:
    """What a container does once started. ``run`` returns (exit code, termination reason or None)."""

    async def run(self, ctx: ContainerRun) -> tuple[int, str | None]:
        raise NotImplementedError


@dataclass
class Canned(Program):
    """Print ``lines`` (``line_delay`` apart), wait ``hold`` seconds, exit with ``exit_code``.

    ``reason="OOMKilled"`` ends like the kernel's OOM killer (exit 137). ``xcom`` is what the
    container would write to ``/airflow/xcom/return.json``.
    """

    lines: list[str] = field(default_factory=list)
    exit_code: int = 0
    reason: str | None = None
    line_delay: float = 0.01
    hold: float = 0.0
    xcom: Any = None

    async def run(self, ctx: ContainerRun) -> tuple[int, str | None]:
        for line in self.lines:
            ctx.write(line)
            await asyncio.sleep(self.line_delay)
        if self.hold:
            await asyncio.sleep(self.hold)
        if self.xcom is not None:
            ctx.pod.xcom = json.dumps(self.xcom)
        return (137, "OOMKilled") if self.reason == "OOMKilled" else (self.exit_code, self.reason)


@dataclass
class PythonJob(Program):
    """Run ``fn(env, write) -> exit code`` in a thread (e.g. a fake training job that logs to MLflow)."""

    fn: Callable[[dict[str, str], Callable[[str], None]], int]

    async def run(self, ctx: ContainerRun) -> tuple[int, str | None]:
        loop = asyncio.get_running_loop()

        def write(line: str) -> None:
            loop.call_soon_threadsafe(ctx.write, line)

        code = await loop.run_in_executor(None, self.fn, dict(ctx.env), write)
        await asyncio.sleep(0)  # let queued writes land before the container terminates
        return code, None


@dataclass
class Subprocess(Program):
    """Run the container's command like a container runtime: a child process in a fresh working directory with
    its own ``HOME`` (both a new temp dir, removed afterwards) and an environment built only from the image's
    ``ENV`` (``image_env``) and the pod spec (secret references resolved): nothing of the worker's environment.

    ``argv`` is the image's ENTRYPOINT (used when the container has no ``command``); ``image_files`` maps paths
    inside the image to where they are here (``{"/opt/training/": ".../include/training/", "python": ...}``, an
    exact word or a prefix), for a ``command`` that names them.
    """

    argv: list[str]
    image_env: dict[str, str] = field(default_factory=dict)
    image_files: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # per run: {"env", "cwd", "argv"} (for assertions)

    def _map(self, word: str) -> str:
        for inside, here in self.image_files.items():
            if word == inside or (inside.endswith("/") and word.startswith(inside)):
                return here + word[len(inside):]
        return word

    async def run(self, ctx: ContainerRun) -> tuple[int, str | None]:
        import shutil
        import tempfile

        workdir = tempfile.mkdtemp(prefix="fake-container-")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **self.image_env, "HOME": workdir, **ctx.env}
        argv = [self._map(w) for w in (ctx.command or self.argv)] + [self._map(a) for a in ctx.args]
        self.runs.append({"env": dict(env), "cwd": workdir, "argv": argv})
        try:
            return await self._run(argv, env, workdir, ctx)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _run(self, argv: list[str], env: dict[str, str], cwd: str, ctx: ContainerRun) -> tuple[int, str | None]:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                ctx.write(raw.decode("utf-8", "replace").rstrip("\n"))
            code = await proc.wait()
        except asyncio.CancelledError:  # pod deleted: SIGTERM, then SIGKILL after the grace period
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            raise
        return (128 - code if code < 0 else code), None


@dataclass
class Sidecar(Program):
    """Runs until an exec ``kill`` stops it (the provider's XCom sidecar)."""

    async def run(self, ctx: ContainerRun) -> tuple[int, str | None]:
        await ctx.stopped.wait()
        return 0, None


# ----------------------------------------------------------------------------------- state
@dataclass
class ContainerRun:
    pod: PodRecord
    name: str
    env: dict[str, str]
    args: list[str]
    command: list[str] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, line: str) -> None:
        self.pod.append_log(self.name, line)


@dataclass
class PodRecord:
    obj: dict[str, Any]
    logs: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task | None = None
    runs: dict[str, ContainerRun] = field(default_factory=dict)
    xcom: str | None = None
    scheduled: bool = False

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    def append_log(self, container: str, line: str) -> None:
        self.logs.setdefault(container, []).append((datetime.now(UTC), line))
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def container_status(self, name: str) -> dict[str, Any] | None:
        for status in self.obj["status"].get("containerStatuses") or []:
            if status["name"] == name:
                return status
        return None


def _match_labels(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def _match_fields(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        path, value = term.split("=", 1)
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if str(current) != value:
            return False
    return True


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        op = tol.get("operator") or "Equal"
        if not tol.get("key") and op == "Exists":
            return True
        if tol.get("key") == taint.get("key") and (op == "Exists" or tol.get("value", "") == taint.get("value", "")):
            return True
    return False


def _gpus(pod: dict[str, Any]) -> int:
    return sum(int(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0) or 0)
               for c in pod["spec"].get("containers") or [])


def validate_pod(pod: dict[str, Any]) -> list[dict[str, str]]:
    """The API server's validation this fake enforces (k8s.io/kubernetes pkg/apis/core/validation)."""
    causes = []
    name = (pod.get("metadata") or {}).get("name") or ""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
        causes.append({"field": "metadata.name", "message": f'Invalid value: "{name}": a lowercase RFC 1123 subdomain'
                                                             " must consist of lower case alphanumeric characters"})
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append({"field": "spec.containers", "message": "Required value"})
    for i, c in enumerate(containers):
        if not c.get("image"):
            causes.append({"field": f"spec.containers[{i}].image", "message": "Required value"})
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        path = f"spec.containers[{i}].resources"
        for section, values in (("limits", limits), ("requests", requests)):
            for key, qty in values.items():
                if key not in _NATIVE and "/" in key and not re.fullmatch(r"\+?\d+", str(qty)):
                    causes.append({"field": f"{path}.{section}[{key}]",
                                   "message": f'Invalid value: "{qty}": must be an integer'})
        for key, qty in requests.items():
            if key in _NATIVE or "/" not in key:
                continue
            if key not in limits:
                causes.append({"field": f"{path}.limits", "message": "Required value: Limit must be set for non "
                                                                      "overcommitable resources"})
            elif str(qty) != str(limits[key]):
                causes.append({"field": f"{path}.requests[{key}]",
                               "message": f'Invalid value: "{qty}": must be equal to {key} limit of {limits[key]}'})
    return causes


# ----------------------------------------------------------------------------------- the fake
class FakeKubernetes:
    """API server + scheduler + kubelet on 127.0.0.1, run in a background thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.nodes: list[dict[str, Any]] = []
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.events: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.images: dict[str, Program] = {}
        self.created: list[str] = []  # pod names, in creation order
        self.specs: dict[str, dict[str, Any]] = {}  # pod name -> the body the client sent
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.forbid_nodes = False  # emulate a namespaced service account that may not list nodes
        self.forbid_namespaces: set[str] = set()  # namespaces where creating pods is forbidden (RBAC)
        self._rv = 0
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._events_changed: asyncio.Condition | None = None

    # -- set-up from tests -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_node(self, name: str, *, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
                 gpus: int = 0, unschedulable: bool = False) -> None:
        capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", **({GPU: str(gpus)} if gpus else {})}
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "1", "creationTimestamp": now_iso(),
                         "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"capacity": capacity, "allocatable": dict(capacity),
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }
        with self._lock:
            self.nodes.append(node)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def pod(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            for (ns, n), rec in self.pods.items():
                if n == name and namespace in (None, ns):
                    return json.loads(json.dumps(rec.obj))
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeKubernetes:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-kubernetes", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("fake Kubernetes API did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    async def _serve(self) -> None:
        self._events_changed = asyncio.Condition()
        app = web.Application(middlewares=[self._record])
        ns = "/api/v1/namespaces/{ns}"
        app.router.add_get(f"{ns}/pods", self.list_pods)
        app.router.add_post(f"{ns}/pods", self.create_pod)
        app.router.add_get(f"{ns}/pods/{{name}}", self.read_pod)
        app.router.add_patch(f"{ns}/pods/{{name}}", self.patch_pod)
        app.router.add_delete(f"{ns}/pods/{{name}}", self.delete_pod)
        app.router.add_get(f"{ns}/pods/{{name}}/log", self.pod_log)
        app.router.add_route("*", f"{ns}/pods/{{name}}/exec", self.pod_exec)
        app.router.add_get(f"{ns}/events", self.list_events)
        app.router.add_get("/api/v1/nodes", self.list_nodes)
        app.router.add_get("/version", self.version)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        asyncio.get_running_loop().create_task(self._scheduler_loop())

    async def _shutdown(self) -> None:
        for rec in list(self.pods.values()):
            if rec.task and not rec.task.done():
                rec.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await rec.task
        if self._runner:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    # -- helpers -----------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _find(self, request: web.Request) -> PodRecord | None:
        return self.pods.get((request.match_info["ns"], request.match_info["name"]))

    def _not_found(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")

    def _touch(self, rec: PodRecord) -> None:
        rec.obj["metadata"]["resourceVersion"] = self._next_rv()
        asyncio.get_running_loop().create_task(rec._notify())

    def emit(self, rec: PodRecord, reason: str, message: str, *, type_: str = "Normal",
             component: str = "kubelet", container: str | None = None) -> None:
        meta = rec.obj["metadata"]
        rv = self._next_rv()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"],
                         "uid": str(uuid.uuid4()), "resourceVersion": rv, "creationTimestamp": now_iso()},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta["uid"], **({"fieldPath": f"spec.containers{{{container}}}"}
                                                      if container else {})},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now_iso(), "lastTimestamp": now_iso(),
            "source": {"component": component}, "reportingComponent": component,
        }
        with self._lock:
            self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify_events())

    async def _notify_events(self) -> None:
        assert self._events_changed is not None
        async with self._events_changed:
            self._events_changed.notify_all()

    # -- scheduler ---------------------------------------------------------------------------
    def _node_problem(self, node: dict[str, Any], pod: dict[str, Any]) -> str | None:
        spec = pod["spec"]
        if node["spec"].get("unschedulable"):
            return "node(s) were unschedulable"
        for taint in node["spec"].get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint,
                                                                                      spec.get("tolerations") or []):
                return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        labels = node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return "node(s) didn't match Pod's node affinity/selector"
        wanted = _gpus(pod)
        if wanted:
            used = sum(_gpus(r.obj) for r in self.pods.values()
                       if r.obj["spec"].get("nodeName") == node["metadata"]["name"]
                       and r.obj["status"].get("phase") not in ("Succeeded", "Failed") and r.obj is not pod)
            if int(node["status"]["allocatable"].get(GPU, 0)) - used < wanted:
                return f"Insufficient {GPU}"
        return None

    def _schedule(self, rec: PodRecord) -> None:
        if rec.scheduled or rec.obj["metadata"].get("deletionTimestamp"):
            return
        problems: Counter[str] = Counter()
        for node in self.nodes:
            problem = self._node_problem(node, rec.obj)
            if problem is None:
                self._bind(rec, node)
                return
            problems[problem] += 1
        n = len(self.nodes)
        detail = ", ".join(f"{c} {p}" for p, c in sorted(problems.items()))
        message = (f"0/{n} nodes are available: {detail}. preemption: 0/{n} nodes are available: "
                   f"{n} Preemption is not helpful for scheduling.") if n else "no nodes available to schedule pods"
        conditions = rec.obj["status"]["conditions"]
        previous = conditions[0]["message"] if conditions else None
        rec.obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": message, "lastTransitionTime": now_iso()}]
        if message != previous:
            self.emit(rec, "FailedScheduling", message, type_="Warning", component="default-scheduler")
            self._touch(rec)

    def _bind(self, rec: PodRecord, node: dict[str, Any]) -> None:
        rec.scheduled = True
        name = node["metadata"]["name"]
        rec.obj["spec"]["nodeName"] = name
        rec.obj["status"].update({
            "hostIP": "10.0.0.1", "podIP": "10.1.0.7", "startTime": now_iso(),
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()}],
            "containerStatuses": [
                {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                 "started": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
                for c in rec.obj["spec"]["containers"]
            ],
        })
        self.emit(rec, "Scheduled", f"Successfully assigned {rec.obj['metadata']['namespace']}/{rec.name} to {name}",
                  component="default-scheduler")
        self._touch(rec)
        rec.task = asyncio.get_running_loop().create_task(self._kubelet(rec))

    async def _scheduler_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for rec in list(self.pods.values()):
                if not rec.scheduled:
                    self._schedule(rec)

    # -- kubelet -----------------------------------------------------------------------------
    def _resolve_env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = self.secrets.get((namespace, ref["name"]))
                if secret is None:
                    raise LookupError(f'secret "{ref["name"]}" not found')
                if ref["key"] not in secret:
                    raise LookupError(f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}")
                env[var["name"]] = secret[ref["key"]]
            elif "value" in var:
                env[var["name"]] = var["value"]
        return env

    def _set_state(self, rec: PodRecord, name: str, state: dict[str, Any], **extra: Any) -> None:
        status = rec.container_status(name)
        assert status is not None
        status["state"] = state
        status.update(extra)
        statuses = rec.obj["status"]["containerStatuses"]
        if all("terminated" in s["state"] for s in statuses):
            failed = any(s["state"]["terminated"]["exitCode"] != 0 for s in statuses)
            rec.obj["status"]["phase"] = "Failed" if failed else "Succeeded"
            for cond in rec.obj["status"]["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond["status"] = "False"
        elif any("running" in s["state"] for s in statuses):
            rec.obj["status"]["phase"] = "Running"
            types = {c["type"] for c in rec.obj["status"]["conditions"]}
            for extra_type in ("Initialized", "ContainersReady", "Ready"):
                if extra_type not in types:
                    rec.obj["status"]["conditions"].append({"type": extra_type, "status": "True",
                                                            "lastTransitionTime": now_iso()})
        self._touch(rec)

    async def _run_container(self, rec: PodRecord, container: dict[str, Any]) -> None:
        name, image = container["name"], container["image"]
        namespace = rec.obj["metadata"]["namespace"]
        program = self.images.get(image) or (Sidecar() if name == "airflow-xcom-sidecar" else None)
        await asyncio.sleep(0.05)
        if program is None:
            pull_error = (f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                          f"{image}: not found")
            self.emit(rec, "Pulling", f'Pulling image "{image}"', container=name)
            self.emit(rec, "Failed", f'Failed to pull image "{image}": rpc error: code = NotFound desc = {pull_error}',
                      type_="Warning", container=name)
            self._set_state(rec, name, {"waiting": {"reason": "ErrImagePull", "message": pull_error}})
            await asyncio.sleep(0.3)
            self.emit(rec, "BackOff", f'Back-off pulling image "{image}"', container=name)
            self._set_state(rec, name, {"waiting": {"reason": "ImagePullBackOff",
                                                    "message": f'Back-off pulling image "{image}"'}})
            await asyncio.Event().wait()  # stays until deleted
        try:
            env = self._resolve_env(namespace, container)
        except LookupError as err:
            self.emit(rec, "Failed", f"Error: {err}", type_="Warning", container=name)
            self._set_state(rec, name, {"waiting": {"reason": "CreateContainerConfigError", "message": str(err)}})
            await asyncio.Event().wait()
        digest = hashlib.sha256(image.encode()).hexdigest()
        image_id = f"docker.io/library/{image.split(':')[0].split('@')[0]}@sha256:{digest}"
        self.emit(rec, "Pulled", f'Container image "{image}" already present on machine', container=name)
        self.emit(rec, "Created", f"Created container {name}", container=name)
        self.emit(rec, "Started", f"Started container {name}", container=name)
        started = now_iso()
        container_id = f"containerd://{uuid.uuid4().hex}"
        self._set_state(rec, name, {"running": {"startedAt": started}}, ready=True, started=True,
                        imageID=image_id, containerID=container_id)
        run = ContainerRun(rec, name, env, list(container.get("args") or []), list(container.get("command") or []))
        rec.runs[name] = run
        try:
            code, reason = await program.run(run)
        except asyncio.CancelledError:
            code, reason = 143, "Error"
            self._terminate(rec, name, code, reason, started, container_id)
            raise
        self._terminate(rec, name, code, reason, started, container_id)

    def _terminate(self, rec: PodRecord, name: str, code: int, reason: str | None, started: str, cid: str) -> None:
        container = next(c for c in rec.obj["spec"]["containers"] if c["name"] == name)
        message = None
        if code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = "\n".join(line for _, line in rec.logs.get(name, [])[-80:])
            message = tail[-2048:] or None
        terminated = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                      "startedAt": started, "finishedAt": now_iso(), "containerID": cid}
        if message:
            terminated["message"] = message
        self._set_state(rec, name, {"terminated": terminated}, ready=False, started=False)

    async def _kubelet(self, rec: PodRecord) -> None:
        await asyncio.gather(*(self._run_container(rec, c) for c in rec.obj["spec"]["containers"]))

    # -- pods --------------------------------------------------------------------------------
    async def list_pods(self, request: web.Request) -> web.Response:
        ns, selector = request.match_info["ns"], request.query.get("labelSelector")
        with self._lock:
            items = [r.obj for (pns, _), r in self.pods.items()
                     if pns == ns and _match_labels(r.obj["metadata"].get("labels") or {}, selector)]
        return web.json_response({"apiVersion": "v1", "kind": "PodList",
                                  "metadata": {"resourceVersion": str(self._rv)}, "items": items})

    async def create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        if ns in self.forbid_namespaces:
            return _status(403, "Forbidden", f'pods is forbidden: User "system:serviceaccount:airflow:airflow-worker" '
                                             f'cannot create resource "pods" in API group "" in the namespace "{ns}"')
        pod = await request.json()
        self.specs[(pod.get("metadata") or {}).get("name") or ""] = json.loads(json.dumps(pod))
        pod.setdefault("metadata", {})["namespace"] = ns
        name = pod["metadata"].get("name") or ""
        causes = validate_pod(pod)
        if causes:
            detail = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
            return _status(422, "Invalid", f'Pod "{name}" is invalid: {detail}', name=name, kind="Pod",
                           causes=[{"reason": "FieldValueInvalid", **c} for c in causes])
        if (ns, name) in self.pods:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists', name=name, kind="pods")
        pod["metadata"].update({"uid": str(uuid.uuid4()), "creationTimestamp": now_iso(),
                                "resourceVersion": self._next_rv()})
        for container in pod["spec"]["containers"]:
            container.setdefault("terminationMessagePolicy", "File")
        pod["status"] = {"phase": "Pending", "qosClass": "Burstable", "conditions": []}
        rec = PodRecord(obj=pod)
        with self._lock:
            self.pods[(ns, name)] = rec
            self.created.append(name)
        self._schedule(rec)
        return web.json_response(pod, status=201)

    async def read_pod(self, request: web.Request) -> web.Response:
        rec = self._find(request)
        return web.json_response(rec.obj) if rec else self._not_found(request)

    async def patch_pod(self, request: web.Request) -> web.Response:
        rec = self._find(request)
        if rec is None:
            return self._not_found(request)
        body = await request.json()
        if isinstance(body, list):  # JSON patch: only "add"/"replace" of metadata labels/annotations
            for op in body:
                parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
                target = rec.obj
                for part in parts[:-1]:
                    target = target.setdefault(part, {})
                target[parts[-1]] = op.get("value")
        else:
            def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
                for key, value in src.items():
                    if value is None:
                        dst.pop(key, None)
                    elif isinstance(value, dict) and isinstance(dst.get(key), dict):
                        merge(dst[key], value)
                    else:
                        dst[key] = value
            merge(rec.obj, body)
        self._touch(rec)
        return web.json_response(rec.obj)

    async def delete_pod(self, request: web.Request) -> web.Response:
        rec = self._find(request)
        if rec is None:
            return self._not_found(request)
        rec.obj["metadata"]["deletionTimestamp"] = now_iso()
        self._touch(rec)
        with self._lock:
            self.deleted.append(rec.name)
        if rec.task and not rec.task.done():
            self.emit(rec, "Killing", f"Stopping container {rec.obj['spec']['containers'][0]['name']}")
        asyncio.get_running_loop().create_task(self._remove(request.match_info["ns"], rec))
        return web.json_response(rec.obj)

    async def _remove(self, ns: str, rec: PodRecord) -> None:
        if rec.task and not rec.task.done():
            rec.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rec.task
        with self._lock:
            self.pods.pop((ns, rec.name), None)
        await rec._notify()

    # -- logs --------------------------------------------------------------------------------
    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        rec = self._find(request)
        if rec is None:
            return self._not_found(request)
        names = [c["name"] for c in rec.obj["spec"]["containers"]]
        container = request.query.get("container") or (names[0] if len(names) == 1 else None)
        if container not in names:
            return _status(400, "BadRequest", f"a container name must be specified for pod {rec.name}, choose one "
                                              f"of: {names}")
        if not rec.scheduled:
            return _status(400, "BadRequest", f'pod "{rec.name}" does not have a host assigned')
        status = rec.container_status(container) or {}
        waiting = status.get("state", {}).get("waiting")
        if waiting:
            return _status(400, "BadRequest", f'container "{container}" in pod "{rec.name}" is waiting to start: '
                                              f"{waiting.get('reason')}")
        q = request.query
        follow = q.get("follow") in ("true", "1", "True")
        stamps = q.get("timestamps") in ("true", "1", "True")
        since = datetime.now(UTC) - timedelta(seconds=int(q["sinceSeconds"])) if q.get("sinceSeconds") else None
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)

        def render(items: list[tuple[datetime, str]]) -> bytes:
            out = []
            for ts, line in items:
                if since and ts < since:
                    continue
                prefix = ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z " if stamps else ""
                out.append(f"{prefix}{line}\n")
            return "".join(out).encode()

        lines = rec.logs.get(container, [])
        sent = len(lines)
        await response.write(render(lines[-tail:] if tail else lines))
        while follow:
            state = (rec.container_status(container) or {}).get("state", {})
            gone = (request.match_info["ns"], rec.name) not in self.pods
            if "terminated" in state or gone:
                break
            async with rec.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rec.changed.wait(), 0.5)
            lines = rec.logs.get(container, [])
            if len(lines) > sent:
                await response.write(render(lines[sent:]))
                sent = len(lines)
        lines = rec.logs.get(container, [])
        if follow and len(lines) > sent:
            await response.write(render(lines[sent:]))
        await response.write_eof()
        return response

    # -- exec --------------------------------------------------------------------------------
    async def pod_exec(self, request: web.Request) -> web.StreamResponse:
        rec = self._find(request)
        if rec is None:
            return self._not_found(request)
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        command = request.query.getall("command", [])
        container = request.query.get("container") or rec.obj["spec"]["containers"][0]["name"]

        async def send(channel: int, text: str) -> None:
            if text:
                await ws.send_bytes(bytes([channel]) + text.encode())

        async def finish(code: int) -> None:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
            if code:
                status = {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit "
                          f"code: {code}", "reason": "NonZeroExitCode",
                          "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
            await send(3, json.dumps(status))
            await ws.close()

        def shell(line: str) -> tuple[str, str, int, bool]:
            """(stdout, stderr, exit code, container stopped) of one shell command in the container."""
            if "return.json" in line:
                return (rec.xcom or XCOM_EMPTY) + "\n", "", 0, False
            if line.strip().startswith("kill") or "/proc/[0-9]*/comm" in line:
                run = rec.runs.get(container)
                if run:
                    run.stopped.set()
                return "", "", 0, True
            if "quitquitquit" in line:
                return "HTTP/1.1 200 OK\n", "", 0, False
            if line.strip().startswith("echo "):
                return line.strip()[5:] + "\n", "", 0, False
            return "", f"sh: {line.split()[0] if line.split() else ''}: not found\n", 127, False

        if len(command) >= 3 and command[1] == "-c":
            out, err, code, _ = shell(command[2])
            await send(1, out)
            await send(2, err)
            await finish(code)
            return ws
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            data = msg.data.encode() if isinstance(msg.data, str) else msg.data
            if not data or data[0] != 0:
                continue
            for line in data[1:].decode().splitlines():
                out, err, code, stopped = shell(line)
                await send(1, out)
                await send(2, err)
                if stopped:
                    await finish(0)
                    return ws
        await finish(0)
        return ws

    # -- events and nodes --------------------------------------------------------------------
    async def list_events(self, request: web.Request) -> web.StreamResponse:
        ns, q = request.match_info["ns"], request.query
        selector = q.get("fieldSelector")

        def matching(after: int) -> list[dict[str, Any]]:
            with self._lock:
                return [e for e in self.events if e["metadata"]["namespace"] == ns and _match_fields(e, selector)
                        and int(e["metadata"]["resourceVersion"]) > after]

        if q.get("watch") not in ("true", "1", "True"):
            return web.json_response({"apiVersion": "v1", "kind": "EventList",
                                      "metadata": {"resourceVersion": str(self._rv)}, "items": matching(0)})
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        last = int(q.get("resourceVersion") or 0)
        deadline = asyncio.get_running_loop().time() + float(q.get("timeoutSeconds") or 30)
        assert self._events_changed is not None
        while True:
            for event in matching(last):
                await response.write((json.dumps({"type": "ADDED", "object": event}) + "\n").encode())
                last = int(event["metadata"]["resourceVersion"])
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            async with self._events_changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._events_changed.wait(), min(remaining, 1.0))
        await response.write_eof()
        return response

    async def list_nodes(self, request: web.Request) -> web.Response:
        if self.forbid_nodes:
            return _status(403, "Forbidden", 'nodes is forbidden: User "system:serviceaccount:mlops:airflow-worker" '
                                             'cannot list resource "nodes" in API group "" at the cluster scope')
        selector = request.query.get("labelSelector")
        with self._lock:
            items = [n for n in self.nodes if _match_labels(n["metadata"]["labels"], selector)]
        return web.json_response({"apiVersion": "v1", "kind": "NodeList",
                                  "metadata": {"resourceVersion": str(self._rv)}, "items": items})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"})
