"""``[mlops]`` configuration through Airflow's own configuration (env, provider defaults, fallback): declared
options only, and the include folder and project root, found one way each."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlops_airflow.config import dags_folder_parent, include_dir, mlops_conf, project_root
from mlops_airflow.get_provider_info import _OPTIONS, get_provider_info

pytestmark = pytest.mark.unit


def test_environment_variable_wins(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_IMAGE", "registry.example.com/train@sha256:abc")
    assert mlops_conf("training_image") == "registry.example.com/train@sha256:abc"
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_IMAGE", "other:1")
    assert mlops_conf("training_image") == "other:1"  # read at call time, not cached at import


def test_provider_defaults_are_the_declared_ones(monkeypatch):
    options = get_provider_info()["config"]["mlops"]["options"]
    assert set(options) == set(_OPTIONS)
    for key in ("approval_policy", "training_backend", "training_gpu_count", "monitoring_experiment", "training_image"):
        monkeypatch.delenv(f"AIRFLOW__MLOPS__{key.upper()}", raising=False)
        assert mlops_conf(key) == options[key]["default"], key
    assert mlops_conf("approval_policy") == "hitl" and mlops_conf("training_backend") == "local"


def test_the_test_session_s_settings_are_seen():
    import os

    assert mlops_conf("data_root") == os.environ["AIRFLOW__MLOPS__DATA_ROOT"]
    assert mlops_conf("project_root") == os.environ["AIRFLOW__MLOPS__PROJECT_ROOT"]


def test_an_option_declared_without_default_gives_the_fallback(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_NAMESPACE", raising=False)
    assert _OPTIONS["training_namespace"][2] is None
    assert mlops_conf("training_namespace", fallback="ml") == "ml"
    assert mlops_conf("training_namespace") is None


def test_an_undeclared_option_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__NO_SUCH_OPTION", "set anyway")
    with pytest.raises(
        KeyError,
        match=r"\[mlops\] no_such_option is not a declared option; declare it in "
        r"get_provider_info._OPTIONS",
    ):
        mlops_conf("no_such_option", fallback="fb")


def test_include_dir_and_project_root(monkeypatch, tmp_path):
    dags = tmp_path / "deploy" / "dags"
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setenv("AIRFLOW__MLOPS__INCLUDE_DIR", str(tmp_path / "inc"))
    monkeypatch.setenv("AIRFLOW__MLOPS__PROJECT_ROOT", str(tmp_path / "proj"))
    assert dags_folder_parent() == (tmp_path / "deploy").resolve()
    assert include_dir() == tmp_path / "inc" and project_root() == tmp_path / "proj"
    # Not configured: the Astro project layout, beside the DAGs folder.
    monkeypatch.delenv("AIRFLOW__MLOPS__INCLUDE_DIR")
    monkeypatch.delenv("AIRFLOW__MLOPS__PROJECT_ROOT")
    assert include_dir() == (tmp_path / "deploy").resolve() / "include"
    assert project_root() == (tmp_path / "deploy").resolve()
    assert isinstance(project_root(), Path)


def test_training_envs_dir_is_always_a_local_folder(monkeypatch, tmp_path):
    """A per-worker cache of virtual environments, not an artefact: beside a local data root, else a home cache."""
    from mlops_airflow.config import training_envs_dir

    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_ENVS_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", str(tmp_path / "data"))
    assert training_envs_dir() == tmp_path / "data" / "training_envs"
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", (tmp_path / "d2").as_uri())
    assert training_envs_dir() == tmp_path / "d2" / "training_envs"
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", "s3://bucket/prefix")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert training_envs_dir() == tmp_path / "cache" / "mlops-airflow" / "training_envs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert training_envs_dir() == Path.home() / ".cache" / "mlops-airflow" / "training_envs"
    monkeypatch.setenv("AIRFLOW__MLOPS__TRAINING_ENVS_DIR", str(tmp_path / "envs"))
    assert training_envs_dir() == tmp_path / "envs"
