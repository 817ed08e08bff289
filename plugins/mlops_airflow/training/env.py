"""A training environment per requirements file: a virtual environment keyed by the file's sha256.

Used by the local training backend (Airflow side) when a model names its own requirements: a scikit-learn model
needs no torch, a torch model no scikit-learn. ``<envs_dir>/<sha256[:16]>/`` is built once with
``python -m venv`` and ``pip install -r`` (``uv`` when it is on PATH), under a file lock (two workers building the
same environment wait for one another), and marked complete by the stamp ``.requirements.sha256`` holding the
file's sha256 (the same stamp ``make install`` writes into ``.venv-train``). A half-built environment (no stamp)
is removed and built again. Standard library only.

The requirements must hold what the entry point imports: ``mlflow`` (or ``mlflow-skinny``), ``pandas``,
``pyarrow`` and the model's framework. The pack itself comes from PYTHONPATH, not from the requirements.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

STAMP = ".requirements.sha256"


class TrainingEnvError(RuntimeError):
    """The environment of a requirements file could not be built (pip's last lines and the next step)."""


def requirements_sha256(path: str | Path) -> str:
    """The sha256 of a requirements file (the key of its environment and what the record names)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise TrainingEnvError(f"requirements file {path} cannot be read ({err.strerror}); check requirements= "
                               "of the training task (a path on the worker)") from None


def stamped_sha256(python: str | Path) -> str | None:
    """The requirements sha256 stamped in the virtual environment of ``python`` (None: not stamped)."""
    stamp = Path(python).parent.parent / STAMP
    try:
        text = stamp.read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 else None


def _python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(argv: list[str], timeout_s: float, what: str, requirements: Path) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise TrainingEnvError(f"{what} for {requirements} took over {timeout_s:.0f}s; check the package index "
                               "reachability, or build the environment ahead of time") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise TrainingEnvError(f"{what} for {requirements} failed (exit {proc.returncode}): {tail}. Fix the "
                               "requirements file (pins that exist for this Python and platform) and retry")


def ensure_env(
    requirements: str | Path,
    envs_dir: str | Path,
    *,
    base_python: str | None = None,
    log: Callable[[str], None] = print,
    timeout_s: float = 3600,
) -> str:
    """The interpreter of the environment of ``requirements`` under ``envs_dir``, built when missing.

    :param requirements: a pip requirements file.
    :param envs_dir: where environments live (``[mlops] training_envs_dir``).
    :param base_python: the interpreter to create it from (default: this one's base interpreter).
    :param log: where progress lines go (the task log).
    :param timeout_s: the most the venv creation and the install may take, each.
    :raises TrainingEnvError: unreadable requirements, or the build failed (pip's last lines).
    """
    req = Path(requirements)
    sha = requirements_sha256(req)
    root = Path(envs_dir)
    venv = root / sha[:16]
    python = _python_of(venv)
    if python.exists() and stamped_sha256(python) == sha:
        log(f"Training environment of {req} (sha256 {sha[:12]}): reusing {venv}")
        return str(python)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{sha[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (also if this process dies)
        if python.exists() and stamped_sha256(python) == sha:  # built by another worker while we waited
            log(f"Training environment of {req} (sha256 {sha[:12]}): built meanwhile, reusing {venv}")
            return str(python)
        if venv.exists():
            log(f"Removing the incomplete environment {venv} (no {STAMP})")
            shutil.rmtree(venv)
        started = time.monotonic()
        base = base_python or getattr(sys, "_base_executable", None) or sys.executable
        uv = shutil.which("uv")
        log(f"Building the training environment of {req} (sha256 {sha[:12]}) in {venv} with "
            f"{'uv' if uv else 'venv + pip'}")
        if uv:
            _run([uv, "venv", "--quiet", "--python", base, str(venv)], timeout_s, "uv venv", req)
            _run([uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(req)], timeout_s,
                 "uv pip install", req)
        else:
            _run([base, "-m", "venv", str(venv)], timeout_s, "python -m venv", req)
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(req)],
                 timeout_s, "pip install", req)
        shutil.copyfile(req, venv / "requirements.txt")  # what it was built from, for whoever inspects it
        tmp = venv / f"{STAMP}.tmp"
        tmp.write_text(sha)
        os.replace(tmp, venv / STAMP)
        log(f"Training environment ready in {time.monotonic() - started:.0f}s: {python}")
    return str(python)
