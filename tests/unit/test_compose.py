"""docker-compose.yaml, validated without Docker (these machines cannot run it).

- it parses against the Compose Specification's JSON schema (``tests/schemas/compose-spec.json``, vendored
  from github.com/compose-spec/compose-spec, see tests/schemas/README.md);
- every ``${VAR}`` it references has a default or is set in ``.env.example``; no secret is written in it;
- every service the stack and the DAGs need exists, and every host name a connection or URL points to is a
  service of the file (on the port that service listens on);
- its connections, read by the pack's real hooks (``MlflowHook``, ``DvcHook``, ``FeastHook``) and its
  Feast config read by Feast itself, are what the operators expect;
- the image installs from ``uv.lock`` and the lock holds every client the stack's URLs need.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.unit

COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "airflow.Dockerfile"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}, $NAME
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]["
                  r"A-Za-z0-9_]*))")


def _strip_escapes(text: str) -> str:
    return text.replace("$$", "")


def references(text: str) -> list[tuple[str, str | None]]:
    """(name, operator) of every variable reference in ``text`` (``$$`` is a literal dollar)."""
    return [(m["braced"] or m["bare"], m["op"]) for m in _VAR.finditer(_strip_escapes(text))]


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of a parsed file (values only), with ``env`` as the .env file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, op, arg = m["braced"] or m["bare"], m["op"], m["arg"] or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if (current if op == ":-" else current is not None) else arg
        if op in (":?", "?"):
            if not current if op == ":?" else current is None:
                raise KeyError(f"{name}: {arg}")
            return current
        if op in (":+", "+"):
            return arg if (current if op == ":+" else current is not None) else ""
        return current or ""

    parts = value.split("$$")
    return "$".join(_VAR.sub(sub, part) for part in parts)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict[str, Any]:
    """The file as `docker compose config` would see it with .env = .env.example."""
    return interpolate(raw, env_example())


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------------------------- the schema
def test_compose_file_matches_the_compose_specification(raw) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(raw), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])


def test_the_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is the real one: unknown keys and wrong types fail."""
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors({"services": {"a": {"image": "x", "imagee": "typo"}}}))
    assert list(validator.iter_errors({"services": {"a": {"ports": {"8080": 80}}}}))
    assert list(validator.iter_errors({"services": {"a": {"depends_on": {"b": {"condition": "service_ready"}}}}}))
    assert not list(validator.iter_errors({"services": {"a": {"image": "x", "depends_on": {
        "b": {"condition": "service_healthy"}}}}, "x-anything": {"k": 1}}))


# ------------------------------------------------------------------------------------- variables and secrets
def _strings(value: Any) -> list[str]:
    """Every string of the parsed file, keys included (comments are not part of it: compose ignores them)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_every_variable_has_a_default_or_is_in_env_example(raw) -> None:
    example = env_example()
    refs = [ref for text in _strings(raw) for ref in references(text)]
    assert len(refs) > 20, refs
    missing = sorted({name for name, op in refs if op not in (":-", "-") and name not in example})
    assert not missing, f"referenced without a default and not in .env.example: {missing}"
    # ... and .env.example sets nothing the file does not use (a stale entry misleads whoever fills it in).
    used = {name for name, _ in refs}
    assert set(example) <= used, f"in .env.example but unused: {sorted(set(example) - used)}"
    # Every required variable stops `docker compose up` with its name when unset (${VAR:?...}), never "".
    required = {name for name, op in refs if op is None}
    assert not required, f"use ${{VAR:?set VAR in .env}} or a default, not a bare ${{VAR}}: {sorted(required)}"


def test_no_secret_is_written_in_the_repository(raw) -> None:
    example = env_example()
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|FERNET_KEY|JWT", key):
            assert value == "change-me", f".env.example {key} must be the placeholder 'change-me'"
    secretish = re.compile(r"PASSWORD|SECRET|FERNET|JWT|TOKEN")
    for name, service in raw["services"].items():
        for key, value in service_env(service).items():
            if secretish.search(key) and not key.endswith("_FILE"):
                assert value.startswith("${") and value.endswith("}") and value.count("${") == 1, (
                    f"{name}.{key} must come from .env (a single ${{VAR}}), not be written in the file")
    text = COMPOSE.read_text()
    for match in re.finditer(r'"(password|login)":\s*"([^"]*)"', text):
        assert match[2].startswith("${"), f"a literal {match[1]} in docker-compose.yaml: {match[0]}"
    for match in re.finditer(r"://([^:/@\s]+):([^@\s]+)@", text):
        assert match[2].startswith("${"), f"a literal password in a URL: {match[0]}"


def test_env_file_is_git_ignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert proc.returncode == 0, ".env (the stack's secrets) must be git-ignored: add '.env' to .gitignore"


# ------------------------------------------------------------------------------------------------- services
def test_the_services_of_the_production_shape_exist(compose) -> None:
    services = compose["services"]
    required = {"postgres", "redis", "minio", "minio-init", "mlflow", "airflow-init", *AIRFLOW_SERVICES}
    assert required <= set(services), f"missing services: {sorted(required - set(services))}"
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert set(deps) <= set(services), f"{name} depends on unknown services {sorted(set(deps) - set(services))}"
    # Airflow: one image for every component (and for MLflow), built from docker/airflow.Dockerfile.
    images = {services[name]["image"] for name in (*AIRFLOW_SERVICES, "airflow-init", "mlflow")}
    assert len(images) == 1, images
    assert services["airflow-scheduler"]["build"]["dockerfile"] == "docker/airflow.Dockerfile"
    for name in AIRFLOW_SERVICES:
        env = service_env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["command"][:2] == ["airflow", name.removeprefix("airflow-").replace(
            "apiserver", "api-server")]
        assert services[name].get("healthcheck"), f"{name} has no health check"
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # The init step the services wait for is the script the image ships.
    assert services["airflow-init"]["command"] == ["bash", "/opt/airflow/docker/init_mlops.sh"]
    assert "COPY --chown=50000:0 docker/init_mlops.sh /opt/airflow/docker/init_mlops.sh" in DOCKERFILE.read_text()
    init_sql = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init_sql and (ROOT / init_sql[0].split(":")[0].removeprefix("./")).is_file()


def _listening_ports(services: dict[str, Any]) -> dict[str, int]:
    """Where each service listens inside the network (what a connection on the compose network must use)."""
    return {"postgres": 5432, "redis": 6379, "minio": 9000, "mlflow": 5000, "airflow-apiserver": 8080}


def test_every_address_points_to_a_service_of_the_file(compose) -> None:
    services = compose["services"]
    ports = _listening_ports(services)
    urls: list[tuple[str, str]] = []
    for name, service in services.items():
        for key, value in service_env(service).items():
            for url in re.findall(r"[a-z][a-z0-9+]*://[^\s\"',]+", value):
                urls.append((f"{name}.{key}", url))
            if key == "FEAST_REDIS_CONNECTION_STRING":
                urls.append((f"{name}.{key}", "redis://" + value.split(",")[0]))
    checked = 0
    for where, url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "s3" or parts.hostname in ("localhost", "127.0.0.1"):
            continue  # buckets; addresses for the browser on the host
        assert parts.hostname in services, f"{where}: {url} names no service of the file"
        port = ports[parts.hostname]
        assert parts.port == port, f"{where}: {url} - {parts.hostname} listens on {port}"
        checked += 1
    assert checked >= 6, urls
    # The API server's execution API is where task processes report (LocalExecutor: from the scheduler).
    env = service_env(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # Published ports stay on the host's loopback.
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond localhost"


def test_every_connection_the_dags_use_is_provided(compose) -> None:
    """Parse dags/ and collect each task's ``*_conn_id``: the Airflow services must define them all."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    conn_ids = {
        value for dag in bag.dags.values() for task in dag.tasks
        for attr, value in vars(task).items()
        if attr.endswith("conn_id") and isinstance(value, str) and value and "{{" not in value  # templated: a param
    }
    assert {"mlflow_default", "dvc_default", "feast_default"} <= conn_ids, conn_ids
    for name in AIRFLOW_SERVICES:
        env = service_env(compose["services"][name])
        missing = sorted(c for c in conn_ids if f"AIRFLOW_CONN_{c.upper()}" not in env)
        assert not missing, f"{name} lacks connections {missing}"


def test_mlops_config_keys_are_keys_the_pack_reads(compose) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "plugins" / "mlops_airflow").rglob("*.py"))
    source += "\n".join(p.read_text() for p in (ROOT / "dags").glob("*.py"))
    read = set(re.findall(r"""(?:mlops_conf|_conf)\(\s*["'](\w+)["']""", source))
    read |= set(re.findall(r"""conf\.get\(\s*["']mlops["'],\s*["'](\w+)["']""", source))
    env = service_env(compose["services"]["airflow-scheduler"])
    keys = {k.removeprefix("AIRFLOW__MLOPS__").lower() for k in env if k.startswith("AIRFLOW__MLOPS__")}
    assert keys and keys <= read, f"[mlops] keys nobody reads: {sorted(keys - read)}"


# ---------------------------------------------------------------------------------- connections, via the hooks
def test_connections_are_what_the_hooks_expect(compose, monkeypatch) -> None:
    services = compose["services"]
    env = service_env(services["airflow-scheduler"])
    for key, value in env.items():
        if key.startswith(("AIRFLOW_CONN_", "FEAST_")):
            json.loads(value) if key.startswith("AIRFLOW_CONN_") else None  # valid JSON after interpolation
            monkeypatch.setenv(key, value)
    example = env_example()

    from mlops_airflow.hooks.dvc_repo import DvcHook
    from mlops_airflow.hooks.feast_store import FeastHook
    from mlops_airflow.hooks.mlflow_registry import MlflowHook

    mlflow = MlflowHook().settings
    assert mlflow.tracking_uri == "http://mlflow:5000" and mlflow.registry_uri == mlflow.tracking_uri
    assert mlflow.ui_url == "http://localhost:5000"
    assert mlflow.username is None and mlflow.token is None

    dvc = DvcHook().settings
    assert dvc.repo_path == Path("/opt/mlops/data_repo") and dvc.branch == "main" and dvc.remote == "storage"
    dvc_bucket = service_env(services["minio-init"])["DVC_BUCKET"]
    assert dvc.remote_url == f"s3://{dvc_bucket}/data"
    assert dvc.username == example["MLOPS_S3_ACCESS_KEY"] and dvc.password == example["MLOPS_S3_SECRET_KEY"]
    assert "change-me" not in repr(dvc)  # the settings never print the remote's secret

    feast = FeastHook()
    assert feast.config_file == "feature_store.redis.yaml"
    assert feast._extra["repo_path"] == "/opt/mlops/data_repo"
    assert (ROOT / "include" / "feast_repo" / feast.config_file).is_file()
    # The repository is mounted where [mlops] and the DVC/Feast connections expect it.
    volumes = services["airflow-scheduler"]["volumes"]
    assert "mlops-data:/opt/mlops" in volumes
    assert env["AIRFLOW__MLOPS__DATA_ROOT"].startswith("/opt/mlops/")
    assert env["AIRFLOW__MLOPS__TRAINING_PYTHON"] == "/opt/train-venv/bin/python"

    # MLflow writes its artifacts into the bucket minio-init creates, through the same service account.
    mlflow_env = service_env(services["mlflow"])
    assert mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"] == f"s3://{service_env(services['minio-init'])['MLFLOW_ARTIFACTS_BUCKET']}"
    assert mlflow_env["AWS_ACCESS_KEY_ID"] == example["MLOPS_S3_ACCESS_KEY"]
    assert urllib.parse.urlsplit(mlflow_env["MLFLOW_BACKEND_STORE_URI"]).path == "/mlflow"


def test_feast_reads_the_production_config_with_the_compose_environment(compose, monkeypatch, tmp_path) -> None:
    """include/feast_repo/feature_store.redis.yaml + the compose env -> Feast's own config model."""
    from feast.repo_config import load_repo_config

    env = service_env(compose["services"]["airflow-scheduler"])
    for key in ("FEAST_REGISTRY_PATH", "FEAST_REDIS_CONNECTION_STRING"):
        monkeypatch.setenv(key, env[key])
    src = ROOT / "include" / "feast_repo"
    shutil.copy(src / "feature_store.redis.yaml", tmp_path / "feature_store.redis.yaml")
    config = load_repo_config(tmp_path, tmp_path / "feature_store.redis.yaml")
    assert config.project == yaml.safe_load((src / "feature_store.yaml").read_text())["project"]
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "redis:6379,db=0"
    registry = config.registry
    assert registry.registry_type == "sql"
    assert registry.path == f"postgresql+psycopg://feast:{env_example()['FEAST_DB_PASSWORD']}@postgres:5432/feast"
    assert config.entity_key_serialization_version == yaml.safe_load(
        (src / "feature_store.yaml").read_text())["entity_key_serialization_version"]


# ---------------------------------------------------------------------------------------------- the image
def test_the_image_installs_the_pack_from_the_lock() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY pyproject.toml uv.lock README.md ./" in text
    assert "uv export --frozen --all-extras --no-dev --no-emit-project" in text
    assert "--require-hashes" in text
    make_uv = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert make_uv and f"ARG UV_VERSION={make_uv[1]}" in text, "the image's uv must be the Makefile's"
    for src in re.findall(r"^COPY (?:--chown=\S+ )?(?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), f"COPY source {src} does not exist"
    ignore = (ROOT / "docker" / "airflow.Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*", "the build context must start from nothing"

    # The lock holds every client the stack's URLs need.
    lock = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    assert lock["apache-airflow"].startswith("3."), lock["apache-airflow"]
    needed = {
        "psycopg2-binary": "postgresql+psycopg2:// (Airflow metadata) and postgresql:// (MLflow backend)",
        "psycopg": "postgresql+psycopg:// (Feast SQL registry)",
        "redis": "Feast's Redis online store",
        "boto3": "MLflow's s3:// artifact destination on MinIO",
        "dvc-s3": "DVC's s3:// remote on MinIO",
    }
    missing = {name: why for name, why in needed.items() if name not in lock}
    assert not missing, (f"uv.lock lacks {missing}: add the extra `s3 = [\"dvc-s3>=3.2\", \"boto3>=1.35\"]` to "
                         "pyproject.toml and run `uv lock`")


def test_the_locked_export_the_image_runs_succeeds(tmp_path) -> None:
    """`uv export --frozen` (the image's first step) works on this checkout: pyproject and lock agree."""
    uv = ROOT / ".local" / "uv" / "bin" / "uv"
    uv = str(uv) if uv.exists() else shutil.which("uv")
    if not uv:
        pytest.skip("uv is not installed (make installs it into .local/uv)")
    out = tmp_path / "requirements.txt"
    proc = subprocess.run([uv, "export", "--frozen", "--all-extras", "--no-dev", "--no-emit-project",
                           "--format", "requirements-txt", "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", out.read_text(), re.M))
    assert pins.get("apache-airflow", "").startswith("3.") and "mlflow" in pins and "feast" in pins
    assert "pytest" not in pins and "ruff" not in pins, "dev tools must not reach the image"
