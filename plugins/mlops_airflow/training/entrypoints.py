"""Training entry points: a Python file (``python file.py``) or ``package.module:function``.

Standard library only: used by the training operators (Airflow side, to build the command and hash the code
before it runs) and by the training helper (training side, to hash the code that actually runs).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

_MODULE_FUNCTION = re.compile(r"^(?P<module>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*):(?P<fn>[A-Za-z_]\w*)$")
RUNNER_MODULE = "mlops_airflow.training.run"


@dataclass(frozen=True)
class EntryPoint:
    """One training entry point.

    :param spec: what the user wrote (a path, or ``module:function``).
    :param kind: ``"file"`` or ``"module"``.
    :param module: the module of a ``module:function`` entry point (None for a file).
    :param function: the function of a ``module:function`` entry point (None for a file).
    """

    spec: str
    kind: str
    module: str | None = None
    function: str | None = None

    def argv(self, python: str) -> list[str]:
        """The command that runs it with ``python``."""
        if self.kind == "module":
            return [python, "-m", RUNNER_MODULE, self.spec]
        return [python, self.spec]


def parse_entrypoint(spec: str) -> EntryPoint:
    """``module:function`` when it has that shape and is not an existing file, else a file path.

    :raises ValueError: the spec is empty.
    """
    text = str(spec or "").strip()
    if not text:
        raise ValueError("entrypoint is empty; pass a Python file (path/to/train.py) or package.module:function")
    match = _MODULE_FUNCTION.match(text)
    if match and not Path(text).exists():
        return EntryPoint(text, "module", match["module"], match["fn"])
    return EntryPoint(text, "file")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def module_source(module: str, search_path: list[str | Path]) -> Path | None:
    """The source file of ``module`` on ``search_path`` (``a/b.py`` or ``a/b/__init__.py``), found without
    importing anything (importing would run the package's code in the caller's process)."""
    parts = module.split(".")
    for base in search_path:
        root = Path(base)
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def display_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` when inside it (what the record names), else absolute."""
    resolved = Path(path).resolve()
    if root is not None:
        try:
            return resolved.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(resolved)


def python_path(*folders: str | Path | None) -> str:
    """An ``os.pathsep``-joined PYTHONPATH of the given folders (duplicates and None dropped, order kept)."""
    seen: list[str] = []
    for folder in folders:
        if folder and str(folder) not in seen:
            seen.append(str(folder))
    return os.pathsep.join(seen)


def package_parent() -> Path:
    """The folder that holds ``mlops_airflow`` (``plugins/`` in this project): on PYTHONPATH of every job."""
    return Path(__file__).resolve().parents[2]
