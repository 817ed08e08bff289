"""GpuTrainingPodOperator end to end against a loopback fake Kubernetes API (tests/k8s_fake).

The provider's code runs unchanged, sync and deferrable (the trigger serialised, rebuilt and run
in-process, then the task resumed on a fresh operator as the triggerer would), plus one ``dag.test()``
in a subprocess with the backend switched to Kubernetes by configuration alone. Fake GPU nodes make
selector / toleration / capacity mistakes leave the pod Pending as a real scheduler would.

Runtime: ~1.5 min on 2 idle cores, most of it the ``dag.test()`` subprocess that runs the real ``train.py``
(the other tests use a fast stand-in job that logs to MLflow like train.py does); 3-5 min when the
machine is shared.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import ROOT, TRAIN_PYTHON, free_port, make_context
from k8s_fake.jobs import mlflow_training_job
from k8s_fake.server import Canned, FakeKubernetes, PythonJob, Subprocess
from mlops_airflow.exceptions import TrainingError
from mlops_airflow.k8s.validation import PodSpecError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NS = "mlops"
H200 = {"nvidia.com/gpu.product": "NVIDIA-H200"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
SECRET = "mlflow-credentials"
PASSWORD = "pw-do-not-log-4711"
STORE_SECRET = "mlops-storage-credentials"
STORE_KEY_ID = "AKIAKPOTEST0000004711"  # moto accepts any key pair; these must never show up in a spec or a log
STORE_SECRET_KEY = "s3-secret-do-not-log-0815"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
DATASET = {"repo": "data_repo", "rev": "abc123", "path": "data/customer_events", "md5": "md5-of-data"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    api = FakeKubernetes(free_port()).start()
    api.add_node("cpu-1")
    api.add_node("gpu-h200-a", labels=H200, taints=[GPU_TAINT], gpus=2)
    api.add_node("gpu-a100-a", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, gpus=8,
                 taints=[GPU_TAINT, {"key": "dedicated", "value": "research", "effect": "NoSchedule"}])
    api.secrets[(NS, SECRET)] = {"username": "airflow", "password": PASSWORD}
    api.secrets[(NS, STORE_SECRET)] = {"AWS_ACCESS_KEY_ID": STORE_KEY_ID, "AWS_SECRET_ACCESS_KEY": STORE_SECRET_KEY}
    api.kubeconfig = api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
    yield api
    api.stop()


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    """A real MLflow tracking store for the fast tests (SQLite, no server to start); the dag.test()
    test runs the real train.py (mlflow-skinny, REST only) against the ``mlflow_server`` fixture."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def mlflow_conn(uri: str, **credentials: str) -> str:
    return json.dumps({"conn_type": "mlflow", **credentials, "extra": {"tracking_uri": uri}})


@pytest.fixture
def k8s(fake, tracking, monkeypatch):
    """Connections for the fake cluster and MLflow (credentials only with the real server: dag.test below)."""
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(fake.kubeconfig), "namespace": NS}}))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn(tracking))
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_MLFLOW_SECRET", SECRET)
    return fake


def secret_env(name: str, secret: str = SECRET, key: str = "password"):
    from airflow.providers.cncf.kubernetes.secret import Secret

    return Secret("env", name, secret, key)


def ctx(run_id: str, try_number: int = 1) -> dict:
    context = make_context(task_id="train_model", run_id=run_id, try_number=try_number)
    context["ti"].map_index = -1
    context["ti"].start_date = datetime.now(UTC)
    return context


def op(image: str, experiment: str, training_set: dict | None = None, **kwargs):
    from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator

    kwargs.setdefault("gpu_type", "NVIDIA-H200")
    kwargs.setdefault("startup_check_interval_seconds", 1)
    kwargs.setdefault("schedule_timeout_seconds", 2)
    kwargs.setdefault("startup_timeout_seconds", 30)
    kwargs.setdefault("poll_interval", 0.5)
    return GpuTrainingPodOperator(
        task_id="train_model", image=image, experiment_name=experiment, dataset_version=DATASET,
        training_set=training_set or {"uri": "s3://bucket/ts.parquet", "hash": "h" * 16, "features": FEATURES},
        training_config={"epochs": 1}, **kwargs,
    )


def run_deferred(task, context: dict, make_resumed):
    """Defer, run the trigger in-process like the triggerer, then resume on a fresh operator."""
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs, default=str)))

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(first_event())
    resumed = make_resumed()
    return getattr(resumed, deferred.value.method_name)(context, event=event, **(deferred.value.kwargs or {}))


def runs_for(mlflow_uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def store_conn(store) -> str:
    """The store's Airflow connection with credentials that are easy to find if they ever leak."""
    return json.dumps({"conn_type": "aws", "login": STORE_KEY_ID, "password": STORE_SECRET_KEY,
                       "extra": {"endpoint_url": store.endpoint, "region_name": "us-east-1"}})


def upload_training_set(store, df, key: str, tmp_path) -> str:
    """Put the training set into the bucket only: the local copy is removed before any task runs."""
    local = df.to_parquet(index=False)
    store.client().put_object(Bucket=store.bucket, Key=key, Body=local)
    assert not list(tmp_path.rglob("*.parquet"))
    return f"{store.root}/{key}"


def assert_store_secret_refs(spec: dict, store) -> dict:
    env = {e["name"]: e for e in spec["spec"]["containers"][0]["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": STORE_SECRET, "key": name}}}
    assert env["AWS_ENDPOINT_URL"] == {"name": "AWS_ENDPOINT_URL", "value": store.endpoint}
    assert STORE_KEY_ID not in json.dumps(spec) and STORE_SECRET_KEY not in json.dumps(spec)
    return env


# ------------------------------------------------------------------------------------------ success
def test_sync_success_reads_mlflow_then_a_retry_adopts_the_run(k8s, tracking, capfd):
    seen: list[dict] = []
    k8s.images["mlops-training:fake"] = PythonJob(mlflow_training_job(seen))
    created = len(k8s.created)
    context = ctx("run-sync")

    result = op("mlops-training:fake", "kpo-sync").execute(context)

    assert result["backend"] == "kubernetes" and not result["adopted"] and result["model_uri"] == "models:/m-fake"
    assert result["metrics"] == {"val_auc": 0.91} and result["run_url"].endswith(result["run_id"])
    assert context["ti"].xcom["return_value"] == result and context["ti"].xcom["_link_MlflowRunLink"]
    pod_name = k8s.created[created]
    assert len(k8s.created) == created + 1 and pod_name in k8s.deleted  # on_finish_action=delete_pod
    assert seen[-1]["MLOPS_TRAINING_SET_URI"] == "s3://bucket/ts.parquet"
    out = capfd.readouterr().out
    assert "[base] TRAINING DONE" in out and "SUMMARY train backend=kubernetes run_id=" in out

    from mlflow import MlflowClient

    tags = MlflowClient(tracking).get_run(result["run_id"]).data.tags
    assert tags["mlops.run_id"] == "run-sync" and tags["mlops.task_id"] == "train_model"
    assert tags["mlops.image_digest"].startswith("docker.io/library/mlops-training@sha256:")  # from the pod status

    again = op("mlops-training:fake", "kpo-sync").execute(ctx("run-sync", try_number=2))
    assert again["adopted"] and again["run_id"] == result["run_id"]
    assert len(k8s.created) == created + 1, "a retry after success must not start another pod"


def test_deferrable_success_resolves_the_secret_and_never_logs_it(k8s, tracking, capfd):
    seen: list[dict] = []
    k8s.images["mlops-training:fake"] = PythonJob(mlflow_training_job(seen))
    context = ctx("run-deferred")

    def task():  # plus one more secret, passed through to the provider as is
        return op("mlops-training:fake", "kpo-deferred", deferrable=True, secrets=[secret_env("HF_TOKEN")])

    result = run_deferred(task(), context, task)

    assert result["backend"] == "kubernetes" and result["metrics"] == {"val_auc": 0.91}
    assert context["ti"].xcom["return_value"] == result
    env = seen[-1]  # the secret reference was resolved by the (fake) kubelet, never by Airflow
    assert env["HF_TOKEN"] == PASSWORD and PASSWORD not in json.dumps(k8s.specs[k8s.created[-1]])
    assert json.loads(env["MLOPS_RUN_TAGS"])["mlops.run_id"] == "run-deferred"
    assert env["MLFLOW_TRACKING_URI"] == tracking and env["MLOPS_TRAINING_SET_URI"] == "s3://bucket/ts.parquet"
    out = capfd.readouterr().out
    assert "[base] logs: TRAINING DONE" in out and PASSWORD not in out  # read back after the trigger


def test_the_pod_reads_an_s3_training_set_with_the_store_secret(k8s, tracking, s3_store, generator, tmp_path,
                                                                 monkeypatch, capfd):
    """The training set is only in the bucket; the pod gets the store's endpoint as a value and its credentials as
    secret references, resolved by the kubelet; the job reads the set with the pack's reader, like train.py."""
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STORE", store_conn(s3_store))
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_STORAGE_SECRET", STORE_SECRET)
    df = generator.generate_batch(date(2026, 11, 1), n_customers=50)
    uri = upload_training_set(s3_store, df, "training_sets/ts.parquet", tmp_path)
    job = mlflow_training_job()
    rows: list[int] = []

    def reading_job(env, write):
        from mlops_airflow.training.data import read_table

        rows.append(len(read_table(env["MLOPS_TRAINING_SET_URI"], env)))  # the pod's env only
        return job(env, write)

    k8s.images["mlops-training:s3"] = PythonJob(reading_job)
    context = ctx("run-s3")
    result = op("mlops-training:s3", "kpo-s3", training_set={"uri": uri, "hash": "s" * 16,
                                                             "features": FEATURES}).execute(context)

    assert rows == [50] and result["model_uri"] == "models:/m-fake"
    spec = k8s.specs[k8s.created[-1]]
    env = assert_store_secret_refs(spec, s3_store)
    assert env["MLOPS_TRAINING_SET_URI"]["value"] == uri
    out = capfd.readouterr().out
    assert f"Training set {uri} through connection mlops_store" in out
    for secret in (STORE_KEY_ID, STORE_SECRET_KEY):
        assert secret not in out and secret not in json.dumps(context["ti"].xcom, default=str)


def test_reattaches_to_the_running_pod_of_an_earlier_try(k8s, tracking, capfd):
    """The worker died during try 1 while its pod kept running: try 2 follows that pod, no second pod."""
    job = mlflow_training_job()

    def slow_job(env, write):
        time.sleep(4)  # still running when try 2 starts
        return job(env, write)

    k8s.images["mlops-training:slow"] = PythonJob(slow_job)
    first = op("mlops-training:slow", "kpo-reattach")
    pod = first.build_pod_request_obj(ctx("run-reattach"))
    first.pod_manager.create_pod(pod)  # try 1 got this far, then its worker died
    created = len(k8s.created)

    result = op("mlops-training:slow", "kpo-reattach").execute(ctx("run-reattach", try_number=2))

    assert len(k8s.created) == created, "try 2 must reattach, not create a second pod"
    out = capfd.readouterr().out
    assert f"Found matching pod {pod.metadata.name}" in out and "Reusing existing pod" in out
    assert result["backend"] == "kubernetes" and not result["adopted"] and pod.metadata.name in k8s.deleted


# ------------------------------------------------------------------------------------------ Pending
@pytest.mark.parametrize(("kwargs", "cause"), [
    ({"gpu_type": "NVIDIA-B200"},
     r"no node has the label nvidia.com/gpu.product=NVIDIA-B200 \(nodes offer nvidia.com/gpu.product: NVIDIA-H200 "
     r"\(1 node\), NVIDIA-A100-SXM4-80GB \(1 node\)\).*; set gpu_type to a value your GPU node pool carries"),
    ({"gpu_type": "NVIDIA-A100-SXM4-80GB"},
     r"the only node with nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB has taints the pod does not tolerate: "
     r"dedicated=research:NoSchedule.*add a toleration for dedicated"),
    ({"gpu_count": 4},
     r"no node has 4 nvidia.com/gpu \(largest: 2 on gpu-h200-a\).*lower gpu_count to 2"),
], ids=["no-such-gpu-label", "untolerated-taint", "too-many-gpus"])
def test_unschedulable_gpu_pod_names_the_missing_piece(k8s, tracking, kwargs, cause, capfd):
    k8s.images["mlops-training:fake"] = PythonJob(mlflow_training_job())
    with pytest.raises(TrainingError, match=cause) as err:
        op("mlops-training:fake", "kpo-pending", **kwargs).execute(ctx("run-pending"))
    message = str(err.value)
    assert message.startswith(f"pod {NS}/train-model-") and " Pending " in message
    assert "(scheduler: 0/3 nodes are available:" in message and "dataset rev abc123 md5 md5-of-data" in message
    assert k8s.created[-1] in k8s.deleted
    out = capfd.readouterr().out
    assert "FailedScheduling" in out and "SUMMARY train backend=kubernetes status=failed" in out


def test_gpus_all_busy_deferrable(k8s, tracking, capfd):
    """Both H200 GPUs are held by another pod; the deferrable path gives the same diagnosis."""
    from kubernetes import client as kc
    from kubernetes import config

    k8s.images["holder:1"] = Canned(hold=60)
    api = kc.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    api.create_namespaced_pod(NS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-holder"},
        "spec": {"nodeSelector": H200, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                 "containers": [{"name": "c", "image": "holder:1", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
    })
    try:
        factory = lambda: op("mlops-training:fake", "kpo-busy", deferrable=True)  # noqa: E731
        with pytest.raises(TrainingError, match=r"Pending \d+ s: no node has 1 nvidia.com/gpu free .*Insufficient "
                                                r"nvidia.com/gpu.*wait for running GPU jobs to finish"):
            run_deferred(factory(), ctx("run-busy"), factory)
    finally:
        api.delete_namespaced_pod("gpu-holder", NS)
    assert k8s.created[-1] in k8s.deleted


# ------------------------------------------------------------------------------------------ invalid spec
def test_invalid_gpu_spec_never_reaches_the_api(k8s, tracking):
    created = len(k8s.created)
    with pytest.raises(ValueError, match=r"gpu_count must be a whole number of GPUs >= 1.*got 0.5"):
        op("mlops-training:fake", "kpo-invalid", gpu_count=0.5)
    templated = op("mlops-training:fake", "kpo-invalid", gpu_count="{{ params.gpus }}")
    templated.gpu_count = "1.5"  # what the template rendered to
    with pytest.raises(PodSpecError, match=r"gpu_count must be a whole number.*got '1.5'"):
        templated.execute(ctx("run-invalid"))
    typo = op("mlops-training:fake", "kpo-invalid",
              pod_template_file=str(ROOT / "include" / "pod_templates" / "invalid_gpu_typo.yaml"))
    with pytest.raises(PodSpecError, match=r"unknown field spec.containers\[0\].resource \(did you mean 'resources'"):
        typo.execute(ctx("run-invalid"))
    assert len(k8s.created) == created


def test_api_server_rejects_a_fractional_gpu_like_a_real_one(k8s):
    """The fake enforces the API server's extended-resource rules (what strict client checks pre-empt)."""
    from kubernetes import client as kc
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    api = kc.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-gpu"},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                "limits": {"nvidia.com/gpu": "500m"}, "requests": {"nvidia.com/gpu": "1"}}}]}}
    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod(NS, body)
    assert err.value.status == 422
    assert "must be an integer" in err.value.body and "must be equal to nvidia.com/gpu limit of 500m" in err.value.body


def test_fake_serves_exec_for_the_provider_xcom_sidecar(k8s, capfd):
    """Why no sidecar: it works (exec over WebSocket, stdin as text frames) but is one more moving part."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    k8s.images["busybox:xcom"] = Canned(lines=["writing return.json"], xcom={"answer": 42})
    task = KubernetesPodOperator(task_id="plain_kpo", image="busybox:xcom", do_xcom_push=True,
                                 startup_check_interval_seconds=1)
    assert task.execute(ctx("run-xcom")) == {"answer": 42}
    out = capfd.readouterr().out
    assert "Running command... kill -2" in out and task.pod.metadata.name in k8s.deleted


# ------------------------------------------------------------------------------------------ failures
FAILED_LINES = ["[train] mlflow run abc started", "Traceback (most recent call last):", "  ...",
                "TRAINING FAILED: label 'churned' has a single class (0); cannot train a classifier; check the "
                "training set produced by the feature step (MLOPS_TRAINING_SET_URI)"]


@pytest.mark.parametrize(("action", "kept"), [("delete_pod", False), ("delete_succeeded_pod", True),
                                              ("keep_pod", True), ("delete_active_pod", True)])
def test_nonzero_exit_with_each_on_finish_action(k8s, tracking, action, kept, capfd):
    k8s.images["mlops-training:exit2"] = Canned(lines=FAILED_LINES, exit_code=2)
    with pytest.raises(TrainingError, match=r"training container base of pod mlops/train-model-\S+ exited with code 2: "
                                            r"TRAINING FAILED: label 'churned' has a single class.*a retry will not "
                                            r"help.*\[experiment 'kpo-exit', dataset rev abc123"):
        op("mlops-training:exit2", "kpo-exit", on_finish_action=action).execute(ctx(f"run-exit-{action}"))
    name = k8s.created[-1]
    assert (name in k8s.deleted) is not kept
    if kept:
        assert k8s.pod(name)["metadata"]["labels"]["already_checked"] == "True"  # never reattached to
    out = capfd.readouterr().out
    assert "[base] TRAINING FAILED" in out and "Pod Event: Started" in out  # logs and events on failure


def test_nonzero_exit_deferrable(k8s, tracking):
    k8s.images["mlops-training:exit1"] = Canned(lines=["boom", "RuntimeError: CUDA error: an illegal memory access"],
                                                exit_code=1)
    factory = lambda: op("mlops-training:exit1", "kpo-exit-deferred", deferrable=True)  # noqa: E731
    with pytest.raises(TrainingError, match=r"exited with code 1: RuntimeError: CUDA error.*a retry helps only for "
                                            r"infrastructure errors"):
        run_deferred(factory(), ctx("run-exit-deferred"), factory)


def test_oom_killed(k8s, tracking):
    k8s.images["mlops-training:oom"] = Canned(lines=["[train] epoch 1/20"], reason="OOMKilled")
    with pytest.raises(TrainingError, match=r"container base of pod mlops/\S+ was OOMKilled \(exit 137, memory limit "
                                            r"2Gi\); raise memory= .*or lower training_config batch_size"):
        op("mlops-training:oom", "kpo-oom", memory="2Gi").execute(ctx("run-oom"))


def test_image_pull_backoff(k8s, tracking):
    with pytest.raises(TrainingError, match=r"image registry.example.com/mlops-training:typo cannot be pulled "
                                            r"\((ErrImagePull|ImagePullBackOff).*check the image name and tag"):
        op("registry.example.com/mlops-training:typo", "kpo-pull").execute(ctx("run-pull"))
    assert k8s.created[-1] in k8s.deleted


def test_missing_secret(k8s, tracking):
    k8s.images["mlops-training:fake"] = PythonJob(mlflow_training_job())
    task = op("mlops-training:fake", "kpo-secret", startup_timeout_seconds=2,
              secrets=[secret_env("MLFLOW_TRACKING_TOKEN", secret="no-such-secret")])
    with pytest.raises(TrainingError, match=r"the container cannot be configured \(secret \"no-such-secret\" not "
                                            r"found\); create the missing secret"):
        task.execute(ctx("run-secret"))


def test_forbidden_pod_creation_names_the_namespace_and_the_fix(k8s, tracking, monkeypatch):
    """RBAC denies pods in that namespace: the message says which identity step to take."""
    conn = json.loads(os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    conn["extra"]["namespace"] = "no-rbac"
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(conn))
    k8s.forbid_namespaces = {"no-rbac"}
    try:
        with pytest.raises(TrainingError, match=r"rejected training pod no-rbac/train-model-\S+ \(403 Forbidden.*grant "
                                                r"the worker's Kubernetes identity the pod-launcher role in namespace "
                                                r"no-rbac"):
            op("mlops-training:fake", "kpo-rbac").execute(ctx("run-rbac"))
    finally:
        k8s.forbid_namespaces = set()


# ------------------------------------------------------------------------------------------ dag.test()
DAG_FILE = '''
from datetime import datetime

from airflow.sdk import DAG, task

from mlops_airflow.operators.training import train_model_task

with DAG("gpu_training_kpo_test", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["test"],
         default_args={"retries": 0}):
    train = train_model_task(
        task_id="train_model", experiment_name="kpo-dag-test", training_config={"epochs": 1},
        training_set=TRAINING_SET,
        dataset_version={"repo": "r", "rev": "dagrev", "path": "p", "md5": "dagmd5"},
    )

    @task
    def check(result: dict) -> str:
        import json

        assert result["backend"] == "kubernetes" and result["model_uri"].startswith("models:/"), result
        assert result["runtime"]["device"] == "cpu", result
        assert not any(secret in json.dumps(result) for secret in SECRETS), "a secret reached XCom"
        print("DOWNSTREAM GOT", result["run_id"])
        return result["run_id"]

    check(train.output)
'''
RUNNER = '''
import sys
from airflow.utils import db
db.initdb()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dr = bag.get_dag("gpu_training_kpo_test").test()
print("DAGRUN_STATE", dr.state)
'''


@pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason=f"training venv missing ({TRAIN_PYTHON}); run make demo")
def test_dag_test_runs_the_real_entrypoint_in_a_pod_by_configuration(k8s, mlflow_server, s3_store, generator,
                                                                      tmp_path):
    """``dag.test()`` with only configuration changed: [mlops] training_backend=kubernetes and deferrable operators,
    data_root on S3.

    The fake kubelet runs the real train.py of the image (``/opt/training/train.py``) in the training venv like a
    container: its own working directory and HOME, only the pod spec's env. The training set exists only in the
    bucket; the pod reads it from ``s3://`` with the store's credentials from a Kubernetes secret. The triggerer
    runs inline; the downstream task gets the result through XCom.
    """
    df = generator.generate_batch(date(2026, 11, 1), n_customers=300)
    uri = upload_training_set(s3_store, df, "data/training_sets/train.parquet", tmp_path)
    training_set = {"uri": uri, "hash": "t" * 16, "features": FEATURES, "label": "churned"}
    program = Subprocess(
        [str(TRAIN_PYTHON), "/opt/training/train.py"],
        image_env={"PYTHONPATH": str(ROOT / "plugins"), "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"},
        image_files={"/opt/training/": f"{ROOT / 'include' / 'training'}/"})
    k8s.images["mlops-training:real"] = program
    dags = tmp_path / "dags"
    dags.mkdir()
    secrets = [PASSWORD, STORE_KEY_ID, STORE_SECRET_KEY]
    (dags / "gpu_training_kpo_test.py").write_text(
        textwrap.dedent(DAG_FILE).replace("TRAINING_SET", repr(training_set)).replace("SECRETS", repr(secrets)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__MLOPS__TRAINING_BACKEND": "kubernetes", "AIRFLOW__MLOPS__TRAINING_IMAGE": "mlops-training:real",
        "AIRFLOW__MLOPS__TRAINING_GPU_TYPE": "NVIDIA-H200", "AIRFLOW__MLOPS__TRAINING_MLFLOW_SECRET": SECRET,
        "AIRFLOW__MLOPS__DATA_ROOT": f"{s3_store.root}/data", "AIRFLOW__MLOPS__STORAGE_CONN_ID": s3_store.conn_id,
        "AIRFLOW_CONN_MLOPS_STORE": store_conn(s3_store), "AIRFLOW__MLOPS__TRAINING_STORAGE_SECRET": STORE_SECRET,
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_conn(mlflow_server, login="airflow", password=PASSWORD),
    })
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(dags)], env=env, capture_output=True, text=True,
                          timeout=500, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "DAGRUN_STATE success" in out, out[-6000:]
    assert "[DAG TEST] running trigger in line" in out  # deferred by configuration, triggerer run inline
    assert "[base] logs: TRAINING DONE" in out and "DOWNSTREAM GOT" in out
    assert "SUMMARY train backend=kubernetes" in out
    assert f"[train] training set {uri}: 300 rows" in out  # the pod read it from the bucket
    assert not any(secret in out for secret in secrets), "a secret reached the task log"
    spec = k8s.specs[k8s.created[-1]]  # the credentials reached the pod as secret references only
    spec_env = assert_store_secret_refs(spec, s3_store)
    assert spec_env["MLFLOW_TRACKING_PASSWORD"] == {"name": "MLFLOW_TRACKING_PASSWORD",
                                                    "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}}
    assert spec_env["MLOPS_TRAINING_SET_URI"]["value"] == uri and PASSWORD not in json.dumps(spec)
    container = program.runs[-1]  # what the process got: the pod spec's env (secrets resolved) and a fresh HOME
    assert container["env"]["AWS_SECRET_ACCESS_KEY"] == STORE_SECRET_KEY
    assert container["env"]["HOME"] == container["cwd"] != str(tmp_path)
    assert set(container["env"]) <= {*spec_env, *program.image_env, "PATH", "HOME"}
    assert not Path(container["cwd"]).exists()  # removed with the container
    runs = runs_for(mlflow_server, "kpo-dag-test")
    assert len(runs) == 1 and runs[0].data.tags["mlops.dag_id"] == "gpu_training_kpo_test"
    assert runs[0].data.params["training_set_uri"] == uri
    assert runs[0].data.tags["mlops.image_digest"].startswith("docker.io/library/mlops-training@sha256:")
    from mlflow import MlflowClient

    model_uri = runs[0].data.tags["mlops.model_uri"]
    assert model_uri.startswith("models:/")
    model = MlflowClient(mlflow_server).get_logged_model(model_uri.removeprefix("models:/"))
    assert model.source_run_id == runs[0].info.run_id  # the model is in MLflow, logged by the pod's run
