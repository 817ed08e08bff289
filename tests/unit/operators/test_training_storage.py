"""How a training job reaches an object-store training set: the store's connection -> the job's environment
(local subprocess: values) or the pod's (settings as values, credentials as secret references only); and the job
arguments both training operators share (one definition, in both signatures)."""

from __future__ import annotations

import json

import pytest
from conftest import free_port, make_context
from mlops_airflow.k8s.validation import PodSpecError, pod_to_dict
from mlops_airflow.operators._training_storage import storage_access
from mlops_airflow.storage import StorageError

pytestmark = pytest.mark.unit

KEY_ID, SECRET_KEY = "AKIAUNITTEST00004711", "store-secret-never-in-a-spec"
DATASET = {"repo": "r", "rev": "abc", "path": "data/x", "md5": "m" * 32}
S3_SET = {"uri": "s3://ml-data/training_sets/2026-11-01.parquet", "hash": "h" * 64, "features": ["a"], "label": "y"}


@pytest.fixture
def store(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STORE", json.dumps({
        "conn_type": "aws", "login": KEY_ID, "password": SECRET_KEY,
        "extra": {"endpoint_url": "http://minio.mlops.svc:9000", "region_name": "eu-west-1"}}))
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", "mlops_store")


@pytest.fixture
def cluster(tmp_path, monkeypatch, store):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig), "namespace": "ml-training"}}))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "mlflow", "extra": {"tracking_uri": "http://mlflow.mlops.svc:5000"}}))
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_STORAGE_SECRET", "mlops-storage-credentials")


def pod(training_set=S3_SET, **kwargs) -> dict:
    from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator

    context = make_context(task_id="train_model", run_id="manual__1")
    context["ti"].map_index = -1
    task = GpuTrainingPodOperator(task_id="train_model", training_set=training_set, dataset_version=DATASET,
                                  experiment_name="exp", **kwargs)
    return pod_to_dict(task.build_pod_request_obj(context))


def env_of(spec: dict) -> dict[str, dict]:
    return {e["name"]: e for e in spec["spec"]["containers"][0]["env"]}


def test_the_store_connection_gives_the_settings_and_the_credentials(store, monkeypatch, tmp_path):
    access = storage_access("s3://mlops_store@ml-data/ts.parquet")
    assert access.uri == "s3://ml-data/ts.parquet" and access.conn_id == "mlops_store"
    assert access.settings_env() == {"AWS_ENDPOINT_URL": "http://minio.mlops.svc:9000",
                                     "AWS_DEFAULT_REGION": "eu-west-1"}
    assert access.job_env()["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY and access.job_env()["AWS_ACCESS_KEY_ID"] == KEY_ID
    assert SECRET_KEY not in repr(access) + access.describe()
    assert storage_access(str(tmp_path / "ts.parquet")) is None and storage_access(tmp_path.as_uri()) is None

    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_CONN_ID", "no_such_store")
    with pytest.raises(StorageError, match=r"connection 'no_such_store' of \[mlops\] storage_conn_id does not exist; "
                                           r"create the aws connection"):
        storage_access("s3://ml-data/ts.parquet")
    monkeypatch.delenv("AIRFLOW__MLOPS__STORAGE_CONN_ID")
    assert storage_access("s3://ml-data/ts.parquet").job_env() == {}  # the job's own identity (IRSA ...)


def test_the_pod_gets_store_settings_as_values_and_credentials_as_secret_refs(cluster):
    spec = pod()
    env = env_of(spec)
    assert env["MLOPS_TRAINING_SET_URI"]["value"] == S3_SET["uri"]
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.mlops.svc:9000"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "mlops-storage-credentials",
                                                                          "key": name}}}
    assert KEY_ID not in json.dumps(spec) and SECRET_KEY not in json.dumps(spec)

    keys = env_of(pod(storage_secret_name="s3", storage_secret_keys={"AWS_ACCESS_KEY_ID": "id"}))
    assert keys["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "id"}

    local = env_of(pod(training_set={**S3_SET, "uri": "/data/ts.parquet"}))
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} & set(local)  # a local file: nothing of the store


def test_a_pod_never_gets_store_credentials_as_plain_values(cluster, monkeypatch):
    with pytest.raises(PodSpecError, match=r"env_vars sets AWS_SECRET_ACCESS_KEY as a plain value; pass it through "
                                           r"the Kubernetes secret named by storage_secret_name"):
        pod(env_vars={"AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_STORAGE_SECRET")
    with pytest.raises(PodSpecError, match=r"read with the credentials of connection 'mlops_store', but no Kubernetes "
                                           r"secret holds them.*training_storage_secret.*never go into a pod"):
        pod()
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_STORE", json.dumps({"conn_type": "aws", "extra": {"region_name": "x"}}))
    env = env_of(pod())  # no credentials anywhere: the pod's own identity, settings only
    assert env["AWS_DEFAULT_REGION"]["value"] == "x" and "AWS_ACCESS_KEY_ID" not in env


@pytest.mark.parametrize("backend", ["local", "kubernetes"])
def test_both_operators_take_the_job_arguments_from_one_definition(cluster, backend):
    import inspect

    from airflow.sdk import DAG
    from mlops_airflow.operators._training_job import JOB_PARAMETERS
    from mlops_airflow.operators.training import train_model_task

    task = train_model_task(backend=backend, task_id="t", training_set=S3_SET, dataset_version=DATASET,
                            experiment_name="e", task_type="regression")
    params = inspect.signature(type(task).__init__).parameters
    assert all(params[p.name].default == p.default for p in JOB_PARAMETERS)
    assert (task.model_task_type, task.training_config, task.mlflow_conn_id) == ("regression", {}, "mlflow_default")
    with DAG("d", schedule=None, default_args={"experiment_name": "from-default-args", "mlflow_conn_id": "m2"}):
        task = train_model_task(backend=backend, task_id="t", training_set=S3_SET, dataset_version=DATASET)
    assert (task.experiment_name, task.mlflow_conn_id) == ("from-default-args", "m2")
    with pytest.raises(TypeError, match="missing keyword argument 'training_set'"):
        train_model_task(backend=backend, task_id="t2", dataset_version=DATASET, experiment_name="e")
