"""Parsing a DAG imports no heavy library: each DAG file is parsed in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["mlflow", "evidently", "feast", "great_expectations", "dvc", "torch", "pandas", "kubernetes"]
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = json.loads(sys.argv[2])
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))
"""


@pytest.mark.unit
@pytest.mark.parametrize("dag_file", sorted((ROOT / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dag_parse_imports_no_heavy_library(dag_file):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(dag_file), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert imported == [], f"parsing {dag_file.name} imported heavy modules: {imported}"


@pytest.mark.unit
def test_package_modules_import_no_heavy_library():
    """Every hook/operator/link module of the pack imports cheaply (what a DAG file pulls in)."""
    modules = sorted(
        ".".join(p.relative_to(ROOT / "plugins").with_suffix("").parts)
        for p in (ROOT / "plugins" / "mlops_airflow").rglob("*.py")
        if not p.name.startswith("_mlflow")
        and p.name != "gpu_training.py"  # the KPO subclass: imports kubernetes by design, never at DAG parse
    )
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
