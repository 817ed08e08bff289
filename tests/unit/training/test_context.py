"""The training helper's contract, without a server: the environment it reads and the errors it names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from mlops_airflow.training import TrainingContext, TrainingInputError, context
from mlops_airflow.training.entrypoints import display_path, module_source, parse_entrypoint

pytestmark = pytest.mark.unit
ENV = {
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_EXPERIMENT_NAME": "e", "MLOPS_TRAINING_SET_URI": "/x.parquet",
    "MLOPS_TRAINING_CONFIG": json.dumps({"features": "a,b", "label": "y", "task_type": "regression", "seed": "7",
                                         "entity_columns": ["id"], "alpha": 0.5}),
    "MLOPS_DATASET_VERSION": json.dumps({"rev": "r1", "md5": "m1"}), "MLOPS_TRAINING_SET_HASH": "h" * 64,
    "MLOPS_RUN_TAGS": json.dumps({"mlops.dag_id": "d"}), "MLOPS_ENTRYPOINT": "models/own.py",
    "MLOPS_REQUIREMENTS_SHA256": "q" * 64,
}


def test_context_reads_the_environment_contract():
    ctx = context(ENV)
    assert isinstance(ctx, TrainingContext)
    assert (ctx.features, ctx.label, ctx.task_type, ctx.entity_columns, ctx.seed) == (["a", "b"], "y", "regression",
                                                                                    ["id"], 7)
    assert ctx.params == {"seed": "7", "alpha": 0.5} and ctx.dataset_version == {"rev": "r1", "md5": "m1"}
    tags = ctx.mlops_tags()
    assert tags["mlops.dag_id"] == "d" and tags["mlops.task_type"] == "regression" and tags["mlops.label"] == "y"
    assert tags["mlops.entrypoint"] == "models/own.py" and tags["mlops.requirements_sha256"] == "q" * 64
    assert tags["mlops.dataset_rev"] == "r1" and tags["mlops.training_set_hash"] == "h" * 64


@pytest.mark.parametrize(("change", "message"), [
    ({"MLFLOW_EXPERIMENT_NAME": ""}, r"MLFLOW_EXPERIMENT_NAME is not set; start the entry point from a training"),
    ({"MLOPS_TRAINING_CONFIG": "{"}, r"MLOPS_TRAINING_CONFIG is not valid JSON"),
    ({"MLOPS_RUN_TAGS": "[]"}, r"MLOPS_RUN_TAGS must be a JSON dict, got list"),
    ({"MLOPS_TRAINING_CONFIG": json.dumps({"features": ["a"]})}, r"names no 'label' column; pass a training_set"),
    ({"MLOPS_TRAINING_CONFIG": json.dumps({"label": "y"})}, r"names no 'features'"),
    ({"MLOPS_TRAINING_CONFIG": json.dumps({"features": ["a", "y"], "label": "y"})}, r"'y' is also listed as a feature"),
    ({"MLOPS_TRAINING_CONFIG": json.dumps({"features": ["a"], "label": "y", "task_type": "ranking"})},
     r"task_type='ranking' is not one of binary_classification, regression"),
])
def test_bad_environment_names_the_variable_and_the_next_step(change, message):
    with pytest.raises(TrainingInputError, match=message):
        context({**ENV, **change})


def test_the_training_set_columns_are_checked(tmp_path):
    import pandas as pd

    path = tmp_path / "ts.parquet"
    pd.DataFrame({"id": [1, 2], "a": [0.1, 0.2], "y": [0, 1]}).to_parquet(path)
    ctx = context({**ENV, "MLOPS_TRAINING_SET_URI": f"file://{path}"})
    with pytest.raises(TrainingInputError, match=r"training set is missing columns \['b'\]"):
        ctx.load_training_set()
    with pytest.raises(TrainingInputError, match="training set not found"):
        context({**ENV, "MLOPS_TRAINING_SET_URI": str(tmp_path / "none.parquet")}).load_training_set()


def test_entrypoints_are_files_or_module_functions(tmp_path):
    assert parse_entrypoint("pkg.models:train").kind == "module"
    assert parse_entrypoint("include/x/train.py").kind == "file" and parse_entrypoint("train.py").kind == "file"
    assert parse_entrypoint("pkg.models:train").argv("py") == ["py", "-m", "mlops_airflow.training.run",
                                                              "pkg.models:train"]
    with pytest.raises(ValueError, match="entrypoint is empty"):
        parse_entrypoint(" ")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "models.py").write_text("")
    assert module_source("pkg.models", [tmp_path / "nope", tmp_path]) == tmp_path / "pkg" / "models.py"
    assert module_source("pkg.other", [tmp_path]) is None
    assert display_path(tmp_path / "pkg" / "models.py", tmp_path) == "pkg/models.py"
    assert display_path("/opt/training/train.py", tmp_path) == "/opt/training/train.py"


def test_the_helper_imports_no_airflow_and_no_pandas():
    code = ("import sys; import mlops_airflow.training, mlops_airflow.training.run, mlops_airflow.training.score, "
            "mlops_airflow.training.env, mlops_airflow.training.data; "
            "heavy = {'airflow', 'pandas', 'mlflow', 'numpy', 'torch', 'sklearn', 'pyarrow'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out == "[]"


def test_run_exits_2_naming_a_missing_function(tmp_path):
    (tmp_path / "mymod.py").write_text("def other(ctx):\n    pass\n")
    env = {**ENV, "PYTHONPATH": f"{ROOT / 'plugins'}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "mlops_airflow.training.run", "mymod:train"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 2
    assert "TRAINING FAILED: module 'mymod' has no function 'train'; define def train(ctx)" in proc.stderr
