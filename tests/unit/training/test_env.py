"""A training environment per requirements file: built once (venv + pip, offline index), then reused."""

from __future__ import annotations

import subprocess
import threading

import pytest
from mlops_airflow.training.env import STAMP, TrainingEnvError, ensure_env, requirements_sha256, stamped_sha256

pytestmark = [pytest.mark.unit, pytest.mark.timeout(600)]


def test_an_environment_is_built_once_per_requirements_hash(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("six\n")
    envs, lines = tmp_path / "envs", []
    results: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(ensure_env(req, envs, log=lines.append)))
               for _ in range(2)]  # two workers at once: the lock makes one build and one wait
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sha = requirements_sha256(req)
    assert results[0] == results[1] == str(envs / sha[:16] / "bin" / "python")
    assert sum("Building" in ln for ln in lines) == 1 and stamped_sha256(results[0]) == sha
    subprocess.run([results[0], "-c", "import six"], check=True)
    assert ensure_env(req, envs, log=lines.append) == results[0] and "reusing" in lines[-1]

    (envs / sha[:16] / STAMP).unlink()  # a half-built environment is rebuilt, not trusted
    assert ensure_env(req, envs, log=lines.append) == results[0] and "incomplete" in " ".join(lines[-4:])

    bad = tmp_path / "bad.txt"
    bad.write_text("no-such-package-mlops-test==0.0.1\n")
    with pytest.raises(TrainingEnvError, match=r"pip install for .*bad.txt failed \(exit 1\).*Fix the requirements"):
        ensure_env(bad, envs, log=lines.append)
    with pytest.raises(TrainingEnvError, match="cannot be read"):
        ensure_env(tmp_path / "missing.txt", envs)
