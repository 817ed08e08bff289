"""The "MLOps models" page in the Airflow UI, checked in headless Chromium against a running api-server.

Uses the stack of ``test_scheduler_run.py`` (Airflow on PostgreSQL with LocalExecutor, MLflow on
PostgreSQL, after one successful run of the CT DAG; started once per pytest session by whichever test
asks first). The page must load through the api-server's plugin mount and show the model the DAG
promoted, with its version history (the clicks inside the Airflow UI's frame are in ``test_ui_browser.py``).
Screenshots: ``test-output/ui_models_page.png`` (the page) and
``test-output/ui_models_page_in_airflow.png`` (the page inside the Airflow UI's navigation).

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped with the reason when it is
missing (failed instead under MLOPS_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REQUIRE_SERVICES, ROOT

pytestmark = [pytest.mark.integration]

OUTPUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_SCHED = "mlops_it_test_scheduler_run"


def _scheduler_module():
    """``test_scheduler_run.py`` by path (one module object however pytest imported it)."""
    if _SCHED not in sys.modules:
        spec = importlib.util.spec_from_file_location(_SCHED, Path(__file__).with_name("test_scheduler_run.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[_SCHED] = module
        spec.loader.exec_module(module)
    return sys.modules[_SCHED]


def _require_chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    msg = "headless Chromium is not installed (Debian: apt-get install -y chromium)"
    pytest.fail(msg) if REQUIRE_SERVICES else pytest.skip(msg)


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a throw-away profile and no background traffic."""
    with tempfile.TemporaryDirectory(prefix="mlops-chromium-") as profile:
        return subprocess.run(
            [_require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )


@pytest.fixture
def stack(request: pytest.FixtureRequest):
    _require_chromium()
    return _scheduler_module().running_stack(request)


def test_models_page_shows_the_promoted_model(stack) -> None:
    http = _scheduler_module()._http
    summary = stack.summary
    version = summary["model"]["version"]

    # The plugin is registered with the api-server: a FastAPI app at /mlops and a nav entry.
    status, plugins = http("GET", f"{stack.api_url}/api/v2/plugins", stack.token)
    assert status == 200, plugins
    ours = [p for p in plugins["plugins"] if p["name"] == "mlops"]
    assert ours, [p["name"] for p in plugins["plugins"]]
    assert {"url_prefix": "/mlops", "name": "MLOps models"}.items() <= ours[0]["fastapi_apps"][0].items()
    views = {v["url_route"]: v for v in ours[0]["external_views"]}
    assert views["mlops-models"]["href"] == "mlops/" and views["mlops-models"]["destination"] == "nav"
    status, _ = http("GET", f"{stack.api_url}/{views['mlops-models']['icon']}", stack.token, timeout=180)
    assert status == 200

    # The JSON view: the champion promoted by the CT DAG, with its lineage, verdicts and ledger.
    status, data = http("GET", f"{stack.api_url}/mlops/api/models", stack.token, timeout=180)
    assert status == 200, data
    assert data["error"] is None
    model = next(m for m in data["models"] if m["name"] == "churn_classifier")
    champion = model["aliases"]["champion"]
    assert champion["version"] == version and champion["run_id"] == summary["mlflow_run"]["run_id"]
    assert champion["dataset"]["rev"] == summary["dataset_version"]["rev"]
    assert champion["dataset"]["md5"] == summary["dataset_version"]["md5"]
    assert champion["training_set_hash"] == summary["training_set"]["hash"]
    assert champion["run_url"].startswith(stack.mlflow_url) and "val_auc" in champion["metrics"]
    drift = model["monitoring"]["drift"]
    assert drift is not None and drift["passed"] is summary["drift"]["passed"]
    assert drift["report_url"] == f"reports/{drift['run_id']}"
    assert model["monitoring"]["quality"] is None
    assert model["ledger"] and model["ledger"][0]["alias"] == "champion" and model["ledger"][0]["version"] == version
    assert model["ledger"][0]["dag_run"] == f"mlops_continuous_training/{stack.run_id}"
    # Every version with its status; metrics by source (a first champion was never evaluated on a holdout).
    history = model["version_history"]
    assert history[0]["version"] == version and history[0]["states"][0] == "champion"
    assert all(v["state"] for v in history)
    assert "val_auc" in champion["validation_metrics"]
    assert set(champion["validation_metrics"]) <= set(champion["metrics"])
    assert not any(k.startswith("val_") for k in champion["holdout_metrics"])

    # The Evidently report, served from the drift run in a CSP sandbox.
    import urllib.request

    req = urllib.request.Request(f"{stack.api_url}/mlops/{drift['report_url']}",
                                 headers={"Authorization": f"Bearer {stack.token}"})
    with urllib.request.urlopen(req, timeout=180) as resp:  # noqa: S310 - loopback
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"].startswith("sandbox")
        assert "<html" in resp.read(4096).decode(errors="replace").lower()

    # The page itself, as a browser renders it from the running api-server.
    page = f"{stack.api_url}/mlops/"
    dom = chromium("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "MLOps models" in html and 'data-model="churn_classifier"' in html
    assert ">champion<" in html and f"v{version}<" in html
    assert summary["dataset_version"]["rev"][:12] in html
    assert summary["training_set"]["hash"][:16] in html
    assert "Evidently report" in html and ("no drift" in html or ">drift<" in html)
    assert "policy:first-champion" in html  # the ledger row of the first promotion
    assert "<h3>Versions</h3>" in html and f'data-version="{version}" data-state="champion"' in html
    assert "validation (training run)" in html and '<script src="frame.js"></script>' in html

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "ui_models_page.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", "--window-size=1400,1000", "--hide-scrollbars", page)
    assert result.returncode == 0 and shot.is_file() and shot.stat().st_size > 20_000, result.stderr[-2000:]

    # The same page inside the Airflow UI (React app, nav entry -> /plugin/mlops-models with an iframe).
    embedded = f"{stack.api_url}/plugin/mlops-models"
    dom = chromium("--virtual-time-budget=15000", "--dump-dom", embedded)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<iframe" in dom.stdout and "mlops/" in dom.stdout, dom.stdout[-3000:]
    shot = OUTPUT / "ui_models_page_in_airflow.png"
    shot.unlink(missing_ok=True)
    chromium("--virtual-time-budget=15000", f"--screenshot={shot}", "--window-size=1400,1000", embedded)
    assert shot.is_file(), "no screenshot of the embedded page"


def test_models_page_refuses_anonymous_callers() -> None:
    """Airflow does not authenticate plugin apps: ours checks the session itself (no cookie, no token -> 401)."""
    from fastapi.testclient import TestClient
    from mlops_airflow.ui.models_page import create_app

    client = TestClient(create_app())
    for path in ("/", "/api/models", "/reports/" + "0" * 32):
        assert client.get(path).status_code == 401, path


def test_ledger_reader_tolerates_both_formats() -> None:
    """The page reads the registered-model ledger and the first-champion version tags, without duplicates."""
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
    from mlops_airflow.ui.models_page import read_promotion_ledger

    def version(number: str, tags: dict[str, str]) -> ModelVersion:
        return ModelVersion("m", number, 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()])

    first = version("1", {"mlops.promotion.alias": "champion", "mlops.promotion.at": "2026-11-01T00:00:00+00:00",
                          "mlops.promotion.approved_by": "policy:first-champion", "mlops.promotion.previous": "none",
                          "mlops.promotion.evidence": json.dumps({"metrics": {"val_auc": 0.8},
                                                                  "min_metrics": {"val_auc": 0.7}}),
                          "mlops.promotion.dag_run": "ct/run1"})
    second = version("2", {"mlops.promotion.alias": "champion", "mlops.promotion.at": "2026-11-02T00:00:00+00:00"})
    ledger_tags = {
        "mlops.ledger.000001": json.dumps({"seq": 1, "alias": "champion", "version": "2", "previous_version": "1",
                                           "action": "promote", "at": "2026-11-02T00:00:00+00:00",
                                           "approved_by": "alice", "evidence_uri": "runs:/abc/evaluation/v.json",
                                           "airflow": {"dag_id": "ct", "run_id": "run2", "task_id": "promote"}}),
        "mlops.ledger.000002": "{not json",
        "mlops.ledger.head": "2",
    }
    entries = read_promotion_ledger(ledger_tags, [first, second])
    assert [(e["version"], e["source"]) for e in entries if e["action"] != "unreadable"] == [
        ("2", "ledger"), ("1", "version tags")]
    assert entries[0]["approved_by"] == "alice" and entries[0]["dag_run"] == "ct/run2"
    assert entries[0]["previous_version"] == "1"
    assert entries[1]["previous_version"] is None and entries[1]["dag_run"] == "ct/run1"
    assert [e for e in entries if e["action"] == "unreadable"][0]["seq"] == 2
    assert read_promotion_ledger({}, []) == []
