"""The README's "Your own model" DAG is exactly the one the tests run (tests/user_dag/my_model_dag.py), <= 40 lines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_the_tested_user_dag() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own model", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "no python block in the README's 'Your own model' section"
    dag = (ROOT / "tests" / "user_dag" / "my_model_dag.py").read_text()
    assert block.group(1) == dag, "README's user DAG differs from tests/user_dag/my_model_dag.py"
    lines = len(dag.rstrip("\n").splitlines())
    assert lines <= 40 and f"({lines} lines with its imports" in section
