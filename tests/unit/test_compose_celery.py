"""docker-compose.celery.yaml (the Celery variant), merged over docker-compose.yaml as ``docker compose -f
docker-compose.yaml -f docker-compose.celery.yaml`` merges them, validated without Docker:

- the override file and the merged model parse against the Compose Specification's JSON schema (the base file
  alone: ``test_compose.py``), with Compose's merge rules (mappings merged, ``command``/``entrypoint``/
  ``healthcheck.test`` replaced, ``volumes``/``ports`` unique by target, ``!override``/``!reset``);
- the executor is CeleryExecutor on every Airflow service, with a Redis broker and a PostgreSQL result backend
  of the file's own services; two ``airflow celery worker`` services with distinct host names share no volume
  (only the read-only code binds), and no service mounts the base file's data volume;
- every artefact goes to MinIO: ``[mlops] data_root`` is an ``s3://`` URI in a bucket minio-init creates, the
  storage connection is an ``aws`` connection with MinIO's ``endpoint_url``; the DVC connection names a served
  git repository (``repo_url``, no ``repo_path``) and the same MinIO remote; MLflow's artefacts are on MinIO;
- the workers' environment is the base file's common environment plus the Celery settings (written out in the
  override because YAML anchors do not cross files: this keeps the copy honest).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import urllib.parse
from typing import Any

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.unit

CELERY = ROOT / "docker-compose.celery.yaml"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
WORKERS = ("airflow-worker-1", "airflow-worker-2")
# The churn spec's dataset_path (the first spec of dags/model_specs.py): the DVC path its Feast FileSource reads.
CHURN_DATASET_PATH = re.search(r'dataset_path="([^"]+)"', (ROOT / "dags" / "model_specs.py").read_text()).group(1)
PORTS = {"postgres": 5432, "redis": 6379, "minio": 9000, "mlflow": 5000, "airflow-apiserver": 8080,
         "git-server": 9418}

_spec = importlib.util.spec_from_file_location("_mlops_test_compose", ROOT / "tests" / "unit" / "test_compose.py")
base_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base_tests)


# --------------------------------------------------------------------------------- Compose's loader and merge
class _Override(list):
    """A sequence tagged ``!override``: it replaces the base file's value instead of being merged."""


class _OverrideMap(dict):
    pass


class _Reset:
    """``!reset``: removes the base file's value."""


class _Loader(yaml.SafeLoader):
    pass


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return _OverrideMap(loader.construct_mapping(node, deep=True))
    return loader.construct_scalar(node)


_Loader.add_constructor("!override", _override)
_Loader.add_constructor("!reset", lambda loader, node: _Reset())


def load(path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader with two tags


def _plain(value: Any) -> Any:
    """The tags dropped (what the schema sees once Compose has applied them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, _Reset)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _target(entry: Any, key: str) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target") or entry.get("published"))
    parts = str(entry).split(":")
    return parts[1] if key == "volumes" and len(parts) > 1 else parts[-1] if key == "ports" else str(entry)


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of ``over`` onto ``base`` (https://docs.docker.com/reference/compose-file/merge/)."""
    if isinstance(over, _Reset):
        return None
    if isinstance(over, _Override | _OverrideMap):
        return _plain(over)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, _Reset):
                out.pop(k, None)
            elif k in ("command", "entrypoint") or k not in out:
                out[k] = _plain(v)
            else:
                out[k] = merge(out[k], v, k)
        return out
    if isinstance(base, list) and isinstance(over, list):
        if key in ("volumes", "ports"):
            kept = {_target(e, key): e for e in base}
            kept.update({_target(e, key): e for e in over})
            return list(kept.values())
        return base + [v for v in over if v not in base]
    return _plain(over)


@pytest.fixture(scope="module")
def raw_override() -> dict[str, Any]:
    return load(CELERY)


@pytest.fixture(scope="module")
def merged_raw(raw_override) -> dict[str, Any]:
    return merge(yaml.safe_load(base_tests.COMPOSE.read_text()), copy.deepcopy(raw_override))


@pytest.fixture(scope="module")
def merged(merged_raw) -> dict[str, Any]:
    return base_tests.interpolate(merged_raw, base_tests.env_example())


def env_of(compose: dict[str, Any], name: str) -> dict[str, str]:
    return base_tests.service_env(compose["services"][name])


def _schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = json.loads(base_tests.SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20]]


# ------------------------------------------------------------------------------------------------- tests
def test_the_merge_follows_composes_rules() -> None:
    base = {"services": {"a": {"command": ["x"], "environment": {"A": "1", "B": "2"}, "volumes": ["v:/d", "w:/e"],
                               "ports": ["1:1"], "dns": ["1.1.1.1"]}}}
    over = yaml.load("""
services:
  a:
    command: ["y"]
    environment: {B: "3", C: "4"}
    volumes: ["u:/d"]
    ports: !override ["2:2"]
    dns: !reset null
""", Loader=_Loader)  # noqa: S506
    a = merge(base, over)["services"]["a"]
    assert a["command"] == ["y"] and a["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert sorted(a["volumes"]) == ["u:/d", "w:/e"] and a["ports"] == ["2:2"] and "dns" not in a


def test_both_variants_match_the_compose_specification(raw_override, merged_raw) -> None:
    assert not _schema_errors(yaml.safe_load(base_tests.COMPOSE.read_text()))
    assert not (errors := _schema_errors(_plain(raw_override))), "\n".join(errors)
    assert not (errors := _schema_errors(merged_raw)), "\n".join(errors)


def test_every_variable_has_a_default_or_is_in_env_example_and_no_secret_is_written(raw_override) -> None:
    example = base_tests.env_example()
    refs = [ref for text in base_tests._strings(_plain(raw_override)) for ref in base_tests.references(text)]
    missing = sorted({name for name, op in refs if op not in (":-", "-") and name not in example})
    assert not missing, f"referenced without a default and not in .env.example: {missing}"
    assert not {name for name, op in refs if op is None}, "use ${VAR:?...} or a default"
    text = CELERY.read_text()
    for match in re.finditer(r'"(password|login)":\s*"([^"]*)"', text):
        assert match[2].startswith("${"), f"a literal {match[1]} in {CELERY.name}: {match[0]}"
    for match in re.finditer(r"://([^:/@\s]+):([^@\s]+)@", text):
        assert match[2].startswith("${"), f"a literal password in a URL: {match[0]}"


def test_celery_executor_with_two_workers_sharing_no_volume(merged) -> None:
    services = merged["services"]
    for name in (*AIRFLOW_SERVICES, *WORKERS, "airflow-init"):
        assert env_of(merged, name)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    hostnames = set()
    for name in WORKERS:
        worker = services[name]
        assert worker["command"] == ["airflow", "celery", "worker"]
        assert worker["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert worker.get("healthcheck"), f"{name} has no health check"
        hostnames.add(worker["hostname"])
        for volume in worker.get("volumes", []):  # code only: read-only binds of the checkout
            source, target, mode = (str(volume).split(":") + ["", ""])[:3]
            assert source.startswith(("./", "/")) and mode == "ro", f"{name} mounts {volume}"
            assert target in ("/opt/airflow/dags", "/opt/airflow/include"), f"{name} mounts {volume}"
    assert len(hostnames) == 2, "the workers need host names of their own (task_instance.hostname, log server)"
    named = {
        name: {str(v).split(":")[0] for v in service.get("volumes", []) if not str(v).startswith(("./", "/"))}
        for name, service in services.items()
    }
    assert not named["airflow-worker-1"] & named["airflow-worker-2"]
    assert not [name for name, vols in named.items() if "mlops-data" in vols], named
    # The broker and the result backend are services of the file (on the ports they listen on).
    env = env_of(merged, "airflow-scheduler")
    broker = urllib.parse.urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert broker.path != "/0", "Feast's online store keeps Redis DB 0"
    assert env["FEAST_REDIS_CONNECTION_STRING"] == "redis:6379,db=0"
    backend = urllib.parse.urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert backend.scheme == "db+postgresql" and backend.hostname == "postgres" and backend.port == 5432


def test_every_artefact_is_on_the_object_store(merged) -> None:
    services = merged["services"]
    buckets = base_tests.service_env(services["minio-init"])
    assert buckets["MLOPS_DATA_BUCKET"] in services["minio-init"]["command"][0].replace("$$", "$").replace(
        "$MLOPS_DATA_BUCKET", buckets["MLOPS_DATA_BUCKET"])
    for name in (*AIRFLOW_SERVICES, *WORKERS):
        env = env_of(merged, name)
        root = urllib.parse.urlsplit(env["AIRFLOW__MLOPS__DATA_ROOT"])
        assert root.scheme == "s3" and root.netloc == buckets["MLOPS_DATA_BUCKET"], (name, root)
        assert env["AIRFLOW__MLOPS__STORAGE_CONN_ID"] == "mlops_store"
        store = json.loads(env["AIRFLOW_CONN_MLOPS_STORE"])
        assert store["conn_type"] == "aws" and store["extra"]["endpoint_url"] == "http://minio:9000"
        assert store["login"] == base_tests.env_example()["MLOPS_S3_ACCESS_KEY"]
        dvc = json.loads(env["AIRFLOW_CONN_DVC_DEFAULT"])["extra"]
        assert "repo_path" not in dvc, f"{name}: a DVC working copy path would be a shared folder"
        repo = urllib.parse.urlsplit(dvc["repo_url"])
        assert repo.hostname == "git-server" and repo.port == PORTS["git-server"]
        assert dvc["remote_url"] == f"s3://{buckets['DVC_BUCKET']}/data"
        # Feast: a per-task clone of the data repository (its root is the feature repository), no folder path.
        feast = json.loads(env["AIRFLOW_CONN_FEAST_DEFAULT"])["extra"]
        assert "repo_path" not in feast, f"{name}: a feature repository path would be a shared folder"
        assert feast["dvc_conn_id"] == "dvc_default" and feast["repo_subdir"] == ".", (name, feast)
        assert (ROOT / "include" / "feast_repo" / feast["feature_store_yaml"]).is_file()
        assert feast["data_paths"] == [CHURN_DATASET_PATH], (name, feast)  # the offline source's DVC path
        assert f'path="{CHURN_DATASET_PATH}"' in (ROOT / "include" / "feast_repo" / "features.py").read_text()
        assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith(f"s3://{buckets['MLOPS_DATA_BUCKET']}/")
    mlflow = base_tests.service_env(services["mlflow"])
    assert mlflow["MLFLOW_ARTIFACTS_DESTINATION"] == f"s3://{buckets['MLFLOW_ARTIFACTS_BUCKET']}"
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # airflow-init builds the DVC repository for the served git URL; the git server has a volume of its own.
    init = env_of(merged, "airflow-init")
    assert init["MLOPS_DATA_REPO_URL"] == json.loads(init["AIRFLOW_CONN_DVC_DEFAULT"])["extra"]["repo_url"]
    assert "MLOPS_DATA_REPO_URL" in (ROOT / "docker" / "init_mlops.sh").read_text()
    assert services["git-server"]["volumes"] == ["git-data:/srv/git"]


def test_every_address_points_to_a_service_of_the_merged_file(merged) -> None:
    services = merged["services"]
    checked = 0
    for name, service in services.items():
        for key, value in base_tests.service_env(service).items():
            for url in re.findall(r"[a-z][a-z0-9+]*://[^\s\"',]+", value):
                parts = urllib.parse.urlsplit(url)
                if parts.scheme == "s3" or parts.hostname in ("localhost", "127.0.0.1"):
                    continue
                assert parts.hostname in services, f"{name}.{key}: {url} names no service of the file"
                assert parts.port == PORTS[parts.hostname], f"{name}.{key}: {url}"
                checked += 1
    assert checked >= 20


def test_the_workers_run_with_the_base_environment_plus_celery(merged) -> None:
    base = yaml.safe_load(base_tests.COMPOSE.read_text())
    common = base_tests.interpolate(base["x-airflow-common"]["environment"], base_tests.env_example())
    celery = base_tests.interpolate(load(CELERY)["x-celery-env"], base_tests.env_example())
    expected = {k: str(v) for k, v in {**common, **celery}.items()}
    for name in WORKERS:
        assert env_of(merged, name) == expected, name
    # ... and the other Airflow services see the same values (the base file's plus the override's).
    for name in AIRFLOW_SERVICES:
        env = env_of(merged, name)
        assert {k: env[k] for k in expected} == expected, name
