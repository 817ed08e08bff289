"""One config reader, every option declared, one version string (the "one house" rules, checked on the code)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from mlops_airflow import __version__
from mlops_airflow.config import include_dir, mlops_conf
from mlops_airflow.get_provider_info import _OPTIONS, get_provider_info

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "mlops_airflow"


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in PACKAGE.rglob("*.py")}


def test_the_mlops_section_is_read_in_config_py_only() -> None:
    readers = [str(p.relative_to(PACKAGE)) for p, text in _sources().items()
               if re.search(r"conf\.get(boolean|int|float)?\(\s*[\"']mlops[\"']", text)]
    assert readers == ["config.py"]


def test_every_option_read_is_declared_and_an_undeclared_one_is_refused() -> None:
    read = {m for text in _sources().values() for m in re.findall(r"mlops_conf\(\s*[\"']([a-z_]+)[\"']", text)}
    assert read and read <= set(_OPTIONS), sorted(read - set(_OPTIONS))
    with pytest.raises(KeyError, match=r"\[mlops\] nope is not a declared option"):
        mlops_conf("nope")
    options = get_provider_info()["config"]["mlops"]["options"]
    assert set(options) == set(_OPTIONS) and all(o["description"] for o in options.values())


def test_the_include_folder_is_found_one_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__MLOPS__INCLUDE_DIR", str(tmp_path))
    assert include_dir() == tmp_path
    from mlops_airflow.operators._scoring import scoring_entrypoint
    from mlops_airflow.operators._training_job import default_entrypoint

    monkeypatch.delenv("AIRFLOW__MLOPS__TRAINING_ENTRYPOINT", raising=False)
    monkeypatch.delenv("AIRFLOW__MLOPS__SCORING_ENTRYPOINT", raising=False)
    assert default_entrypoint() == str(tmp_path / "training" / "train.py")
    assert scoring_entrypoint() is None  # the pack's own scorer (python -m mlops_airflow.training.score)


def test_one_version_string() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == pyproject
    assert get_provider_info()["versions"] == [pyproject]
    # ("version_added" of an option is history, not the package's version.)
    literal = [str(p.relative_to(PACKAGE)) for p, text in _sources().items()
               if f'"{pyproject}"' in text.replace(f'"version_added": "{pyproject}"', "")]
    assert literal == [], f"the version {pyproject} is written in {literal}; use mlops_airflow.__version__"
