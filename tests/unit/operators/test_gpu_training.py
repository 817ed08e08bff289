"""GpuTrainingPodOperator, layers 1 and 2: the pod as built (spec) and strict schema checks.

``build_pod_request_obj()`` only needs a loadable kubeconfig (it never calls the API), so a temp
kubeconfig points at a free loopback port. Every built pod and every template in
``include/pod_templates`` goes through ``kubernetes-validate`` in strict mode plus the API server's GPU
rules. Runtime: ~10 s on an idle machine (mostly importing the provider and the schemas once).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import ROOT, free_port, make_context
from mlops_airflow.k8s.validation import PodSpecError, gpu_rule_violations, pod_to_dict, validate_pod_template

pytestmark = pytest.mark.unit

TEMPLATES = sorted((ROOT / "include" / "pod_templates").glob("*.yaml"))
PASSWORD = "pw-never-in-a-pod-spec"
DATASET = {"repo": "data_repo", "rev": "abc123", "path": "data/customer_events", "md5": "m" * 32}
TRAINING_SET = {"uri": "s3://ml/training_sets/2026-11-01.parquet", "hash": "h" * 64,
                "features": ["tenure_months", "monthly_charges"], "label": "churned"}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
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
        {"conn_type": "mlflow", "login": "airflow", "password": PASSWORD,
         "extra": {"tracking_uri": "http://mlflow.mlops.svc:5000"}}))
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_MLFLOW_SECRET", "mlflow-credentials")
    return kubeconfig


def ctx() -> dict:
    context = make_context(task_id="train_model", run_id="manual__2026-11-01")
    context["ti"].map_index = -1
    return context


def gpu_op(**kwargs):
    from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator

    return GpuTrainingPodOperator(
        task_id="train_model", training_set=TRAINING_SET, dataset_version=DATASET, experiment_name="churn_classifier",
        training_config={"epochs": 5}, **kwargs,
    )


def built(**kwargs) -> dict:
    return pod_to_dict(gpu_op(**kwargs).build_pod_request_obj(ctx()))


def strict_schema_ok(pod: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), strict=True)
    assert gpu_rule_violations(pod) == []


# ------------------------------------------------------------------------------ layer 1: the spec
def test_one_h200_gpu_pod_spec(cluster):
    pod = built(gpu_type="NVIDIA-H200", memory="64Gi", cpu="8")
    spec = pod["spec"]
    base = spec["containers"][0]
    assert base["name"] == "base" and base["image"] == "mlops-training:0.1.0"
    assert base["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "64Gi"}
    assert base["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "8", "memory": "64Gi"}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert base["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert base["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                                       "capabilities": {"drop": ["ALL"]}}
    assert spec["restartPolicy"] == "Never" and base["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["metadata"]["namespace"] == "ml-training"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    assert pod["metadata"]["labels"]["run_id"] == "manual__2026-11-01"  # the provider's reattach labels

    env = {e["name"]: e for e in base["env"]}
    plain = {k: e["value"] for k, e in env.items() if "value" in e}
    assert plain["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"
    assert plain["MLFLOW_EXPERIMENT_NAME"] == "churn_classifier"
    assert plain["MLOPS_TRAINING_SET_URI"] == TRAINING_SET["uri"] and plain["MLOPS_TRAINING_SET_HASH"] == "h" * 64
    assert json.loads(plain["MLOPS_DATASET_VERSION"]) == DATASET
    assert json.loads(plain["MLOPS_TRAINING_CONFIG"])["epochs"] == 5
    assert json.loads(plain["MLOPS_RUN_TAGS"]) == {"mlops.dag_id": "test_dag", "mlops.run_id": "manual__2026-11-01",
                                                   "mlops.task_id": "train_model", "mlops.try_number": "1"}
    for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "mlflow-credentials", "key": key}}}
    assert PASSWORD not in json.dumps(pod)
    strict_schema_ok(pod)


def test_defaults_come_from_configuration(cluster, monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_IMAGE", "registry.example.com/mlops-training@sha256:" + "a" * 64)
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_GPU_COUNT", "8")
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_GPU_TYPE", "NVIDIA-H100-80GB-HBM3")
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_GPU_NODE_LABEL", "cloud.google.com/gke-accelerator")
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_NAMESPACE", "gpu-jobs")
    pod = built()
    base = pod["spec"]["containers"][0]
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "8" == base["resources"]["requests"]["nvidia.com/gpu"]
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "NVIDIA-H100-80GB-HBM3"}
    assert pod["metadata"]["namespace"] == "gpu-jobs"
    assert {e["name"]: e.get("value") for e in base["env"]}["MLOPS_IMAGE_DIGEST"] == "sha256:" + "a" * 64
    strict_schema_ok(pod)


def test_credentials_only_as_secret_references(cluster, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "mlflow", "extra": {"tracking_uri": "http://m:5000", "token": PASSWORD}}))
    pod = built(mlflow_secret_keys={"MLFLOW_TRACKING_TOKEN": "api-token"},
                mlflow_tracking_uri="http://mlflow.in-cluster:5000")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    ref = env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "mlflow-credentials", "key": "api-token"} and "MLFLOW_TRACKING_PASSWORD" not in env
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.in-cluster:5000"
    assert PASSWORD not in json.dumps(env)

    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_MLFLOW_SECRET")
    with pytest.raises(PodSpecError, match=r"MLflow connection 'mlflow_default' has credentials, but no Kubernetes "
                                           r"secret holds them.*never go into a pod as plain env values"):
        built()
    with pytest.raises(PodSpecError, match=r"env_vars sets MLFLOW_TRACKING_PASSWORD as a plain value"):
        built(mlflow_secret_name="s", env_vars={"MLFLOW_TRACKING_PASSWORD": PASSWORD})

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow",
                                                                  "extra": {"tracking_uri": "http://m:5000"}}))
    env = built(env_vars={"EXTRA": "1"})["spec"]["containers"][0]["env"]
    assert not any("valueFrom" in e for e in env) and {"name": "EXTRA", "value": "1"} in env


@pytest.mark.parametrize("bad", [0, -1, 0.5, "1.5", "two", True, "", None])
def test_gpu_count_must_be_a_whole_number(cluster, bad, monkeypatch):
    if bad is None:
        monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_GPU_COUNT", "0")
    with pytest.raises(ValueError, match=r"gpu_count must be a whole number of GPUs >= 1 .*use gpu_count=1 for one"):
        gpu_op(gpu_count=bad)


def test_gpu_count_variants_and_templated_count(cluster):
    assert gpu_op(gpu_count=2.0).gpu_count == 2.0
    assert built(gpu_count="4")["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    task = gpu_op(gpu_count="{{ params.gpus }}")  # rendered when the task runs: checked then
    task.gpu_count = "0"
    with pytest.raises(PodSpecError, match=r"train_model: gpu_count must be a whole number .*got '0'"):
        task.build_pod_request_obj(ctx())
    with pytest.raises(ValueError, match=r"gpu_type 'NVIDIA H200' is not a valid Kubernetes label value"):
        gpu_op(gpu_type="NVIDIA H200")
    with pytest.raises(ValueError, match=r"reads its result from MLflow instead"):
        gpu_op(do_xcom_push=True)


def test_building_twice_is_idempotent(cluster):
    task = gpu_op(gpu_type="NVIDIA-H200", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml",
                                                        "effect": "NoSchedule"}])
    first = pod_to_dict(task.build_pod_request_obj(ctx()))
    second = pod_to_dict(task.build_pod_request_obj(ctx()))
    for pod in (first, second):
        assert len(pod["spec"]["tolerations"]) == 2 and len(pod["spec"]["volumes"]) == 1
        assert len([e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "MLFLOW_TRACKING_URI"]) == 1


def test_template_is_merged_not_overwritten(cluster):
    pod = built(gpu_count=2, gpu_type="NVIDIA-H200",
                pod_template_file=str(ROOT / "include" / "pod_templates" / "gpu_training.yaml"),
                tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
    spec, base = pod["spec"], pod["spec"]["containers"][0]
    assert base["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "32Gi"}  # template memory, operator GPUs
    assert base["resources"]["requests"] == {"nvidia.com/gpu": "2", "cpu": "4", "memory": "32Gi"}
    assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "dedicated"} and len(spec["tolerations"]) == 2
    assert [v["name"] for v in spec["volumes"]] == ["dshm"] and len(base["volumeMounts"]) == 1
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert spec["automountServiceAccountToken"] is False and spec["terminationGracePeriodSeconds"] == 60
    strict_schema_ok(pod)


def test_train_model_task_switches_backend_by_configuration(cluster, monkeypatch):
    from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator
    from mlops_airflow.operators.training import LocalTrainingOperator, train_model_task

    same = dict(task_id="train_model", training_set=TRAINING_SET, dataset_version=DATASET,
                experiment_name="churn_classifier", training_config={"epochs": "{{ params.epochs }}"},
                execution_timeout=timedelta(hours=2))
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_BACKEND", "kubernetes")
    task = train_model_task(**same)
    assert isinstance(task, GpuTrainingPodOperator) and task.execution_timeout == timedelta(hours=2)
    assert {"training_set", "training_config", "gpu_count", "image", "env_vars"} <= set(task.template_fields)
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_BACKEND", "local")
    assert isinstance(train_model_task(**same), LocalTrainingOperator)
    assert isinstance(train_model_task(backend="kubernetes", **same), GpuTrainingPodOperator)


def test_dag_with_the_operator_serializes(cluster):
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("gpu_serialize", schedule=None) as dag:
        gpu_op(gpu_type="NVIDIA-H200")
    again = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    task = again.get_task("train_model")
    assert task.task_type == "GpuTrainingPodOperator"
    assert task._task_module == "mlops_airflow.operators.gpu_training"


def test_the_class_is_built_on_first_access():
    """The module imports without ``kubernetes`` (tests/dags/test_parse_imports.py checks that in a fresh
    interpreter); the class is built once, on first access, and looks like a module-level class."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from mlops_airflow.operators import gpu_training
    from mlops_airflow.operators.gpu_training import GpuTrainingPodOperator

    assert issubclass(GpuTrainingPodOperator, KubernetesPodOperator)
    assert gpu_training.GpuTrainingPodOperator is GpuTrainingPodOperator
    assert (GpuTrainingPodOperator.__module__, GpuTrainingPodOperator.__qualname__) == (
        "mlops_airflow.operators.gpu_training", "GpuTrainingPodOperator")
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        gpu_training.Nope  # noqa: B018


# ------------------------------------------------------------------------------ layer 2: schemas
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_pod_template_is_checked_strictly(template):
    if template.name.startswith("invalid"):
        with pytest.raises(PodSpecError, match=r"unknown field spec.containers\[0\].resource \(did you mean 'resources'"
                                               r"\?\).*Additional properties are not allowed \('resource' was"):
            validate_pod_template(template)
    else:
        strict_schema_ok(validate_pod_template(template))


def test_the_invalid_template_is_what_kubernetes_would_silently_accept():
    """Without strict validation the provider loads the typo template and drops the GPU limit."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    pod = PodGenerator.deserialize_model_file(str(ROOT / "include" / "pod_templates" / "invalid_gpu_typo.yaml"))
    assert pod.spec.containers[0].resources is None


@pytest.mark.parametrize("kwargs", [
    {"gpu_type": "NVIDIA-H200"},
    {"gpu_count": 8, "shm_size": None, "cpu": "64", "memory": "900Gi"},
    {"gpu_count": 2, "pod_template_file": str(ROOT / "include" / "pod_templates" / "gpu_training.yaml")},
    {"gpu_type": "NVIDIA-H200", "security_context": {"runAsUser": 2000}, "labels": {"team": "ml"}},
], ids=["h200", "8-gpus-no-shm", "template", "user-overrides"])
def test_every_built_pod_passes_the_strict_schema(cluster, kwargs):
    strict_schema_ok(built(**kwargs))


def test_gpu_rules_the_schema_does_not_carry():
    def pod(limits, requests):
        return {"spec": {"containers": [{"name": "base", "resources": {"limits": limits, "requests": requests}}]}}

    assert gpu_rule_violations(pod({"nvidia.com/gpu": 1}, {"nvidia.com/gpu": "1", "cpu": "500m"})) == []
    assert gpu_rule_violations(pod({"nvidia.com/gpu": "500m"}, {})) == [
        "spec.containers[0].resources.limits[nvidia.com/gpu]: '500m' must be a whole number"]
    assert gpu_rule_violations(pod({"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "1"})) == [
        "spec.containers[0].resources.requests[nvidia.com/gpu]: '1' must equal the limit '2'"]
    assert "needs an equal limit" in gpu_rule_violations(pod({}, {"nvidia.com/gpu": "1"}))[0]
