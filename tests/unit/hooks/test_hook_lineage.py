"""Hook-level lineage: the DVC, MLflow and Feast hooks report what they read and write to Airflow's hook lineage
collector, and the OpenLineage provider's collector holds it when OpenLineage is enabled.

Each case runs in its own interpreter: the collector and the plugins that decide it (the OpenLineage provider turns
its hook lineage reader on only when ``[openlineage] transport`` is set) are chosen once per process. The DVC hook
works on a real git + DVC repository with a local remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, make_dvc_repo

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]

SCRIPT = '''
import json, shutil, sys
from pathlib import Path

from airflow.sdk.lineage import get_hook_lineage_collector
from mlops_airflow.hooks.dvc_repo import DvcHook
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.hooks.mlflow_registry import MlflowHook
from mlops_airflow.lineage import asset_to_openlineage

repo, dest = sys.argv[1], Path(sys.argv[2])
(Path(repo) / "data" / "events").mkdir(parents=True)
(Path(repo) / "data" / "events" / "part-0.csv").write_text("a,b\\n1,2\\n")
dvc = DvcHook(repo_path=repo)
version = dvc.version_path("data/events", "data: first version")
dvc.materialize_version("data/events", version["rev"], dest)
mlflow = MlflowHook(tracking_uri="http://127.0.0.1:5055")
mlflow.register_lineage_output("my_model", 2)
mlflow.register_lineage_input("my_model", 1)
FeastHook(repo_path=repo).report_training_set({"hash": "ab" * 32, "project": "proj", "feature_service": "svc"})

collected = get_hook_lineage_collector().collected_assets
def rows(infos):
    return [{"uri": i.asset.uri, "extra": i.asset.extra, "hook": type(i.context).__name__,
             "dataset": [d.namespace, d.name] if (d := asset_to_openlineage(i.asset, i.context)) else None}
            for i in infos]
print("RESULT", json.dumps({"collector": type(get_hook_lineage_collector()).__name__, "rev": version["rev"],
                            "inputs": rows(collected.inputs), "outputs": rows(collected.outputs),
                            "ol_client_imported": "openlineage.client" in sys.modules}))
'''


def _run(tmp_path: Path, transport: dict | None) -> dict:
    info = make_dvc_repo(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__OPENLINEAGE", "OPENLINEAGE"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT / "plugins")})
    if transport is not None:
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport)
    script = SCRIPT if transport is not None else SCRIPT.replace("asset_to_openlineage(i.asset, i.context)", "None")
    proc = subprocess.run([sys.executable, "-c", script, str(info["repo"]), str(tmp_path / "read")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout[-3000:], proc.stderr[-3000:])
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["repo"] = str(Path(info["repo"]).resolve())
    return result


def test_hooks_report_their_inputs_and_outputs_when_openlineage_is_on(tmp_path: Path) -> None:
    got = _run(tmp_path, {"type": "console"})
    assert got["collector"] == "HookLineageCollector"
    rev, namespace = got["rev"], f"dvc://{got['repo']}"
    outputs = {(o["hook"], o["uri"]): o for o in got["outputs"]}
    assert set(outputs) == {("DvcHook", "dvc://data_repo/data/events"), ("MlflowHook", "mlflow://models/my_model"),
                            ("FeastHook", "feast://proj/training_sets/svc")}
    dvc_out = outputs[("DvcHook", "dvc://data_repo/data/events")]
    assert dvc_out["extra"]["rev"] == rev and dvc_out["extra"]["md5"].endswith(".dir")
    assert dvc_out["dataset"] == [namespace, f"data/events@{rev}"]
    assert outputs[("MlflowHook", "mlflow://models/my_model")]["dataset"] == ["mlflow://127.0.0.1:5055",
                                                                            "models/my_model/2"]
    assert outputs[("FeastHook", "feast://proj/training_sets/svc")]["dataset"] == [
        "feast://proj", "training_sets/svc/" + "ab" * 8]
    inputs = sorted((i["hook"], tuple(i["dataset"])) for i in got["inputs"])
    assert inputs == [("DvcHook", (namespace, f"data/events@{rev}")),
                      ("MlflowHook", ("mlflow://127.0.0.1:5055", "models/my_model/1"))]
    assert git(Path(got["repo"]), "log", "-1", "--format=%H", "--", "data/events.dvc").strip() == rev


def test_without_a_transport_nothing_is_collected_and_openlineage_is_not_imported(tmp_path: Path) -> None:
    got = _run(tmp_path, None)
    assert got["collector"] == "NoOpCollector"
    assert got["inputs"] == [] and got["outputs"] == []
    assert got["ol_client_imported"] is False
