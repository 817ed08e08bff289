"""A person rejects a promotion on Airflow's Required Actions tab (issue #15), in headless Chromium.

Uses the stack of ``test_scheduler_run.py`` (PostgreSQL metadata, MLflow, api-server, scheduler, dag-processor,
LocalExecutor; started once per pytest session, see ``test_models_page.py``). The stack runs
``[mlops] approval_policy=auto``; ``dags/mlops_ct_hitl.py`` asks a person whatever the policy says.

1. day 1 of ``mlops_continuous_training_hitl``: the first model becomes champion (nobody is asked);
2. day 2 with concept drift (trained on that day only): a challenger that beats the champion on the holdout, so
   ``approve_promotion`` waits for a person (``awaiting_input``);
3. its Required Actions tab in Chromium (screenshot ``test-output/ui_required_action.png``, the text the approver
   reads in ``test-output/ui_required_action.txt``): every link of the evidence is shown, answers HTTP 200 and
   names an MLflow object that exists (model version, run, artifact);
4. Reject without a reason: the task refuses it (fails, nothing in the ledger, nothing promoted); the task is
   cleared and asks again;
5. Reject with a reason typed into the form: the run ends without a promotion, the rejection with its reason is in
   the promotion ledger (``registry.ledger.read_ledger``) and on the models page (JSON view, and the page in
   Chromium: screenshot ``test-output/ui_models_page_rejected.png``).

Needs Debian's ``chromium``; skipped with the reason when it is missing (failed instead under
MLOPS_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from integration._cdp import Browser, CdpError, require_chromium
from integration.test_models_page import _scheduler_module  # one stack module object for all browser tests

# The session stack (when this test starts it: ~5-15 min) and three CT runs of the HITL DAG (two, and one retried).
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(3000)]

OUTPUT = ROOT / "test-output"
DAG_ID = "mlops_continuous_training_hitl"
MODEL = "churn_classifier_hitl"
TASK = "approve_promotion"
FAST = {"epochs": 5, "training_window_days": 1}
DAY1 = {"day": "2026-11-20", **FAST}
DAY2 = {"day": "2026-11-21", "covariate_shift": 0.3, "concept_drift": 1.0, **FAST}
REASON = "Holdout gain rests on one drifted day; wait for a second week of labels (H6 browser test)"
WAITING = ("awaiting_input", "deferred")


_chromium = require_chromium


@pytest.fixture
def stack(request: pytest.FixtureRequest):
    _chromium()
    return _scheduler_module().running_stack(request)


# -- REST helpers ----------------------------------------------------------------------------------------------------
def _api(stack: Any, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
    status, data = _scheduler_module()._http(method, f"{stack.api_url}/api/v2{path}", stack.token, body, timeout=60)
    assert status in ok, (method, path, status, data)
    return data


def _trigger(stack: Any, conf: dict[str, Any], name: str) -> str:
    mod = _scheduler_module()
    mod._wait(f"the dag-processor to parse {DAG_ID}",
              lambda: mod._http("GET", f"{stack.api_url}/api/v2/dags/{DAG_ID}", stack.token)[0] == 200, 300,
              stack.procs, stack.logs)
    run_id = f"{name}_{uuid.uuid4().hex[:6]}"
    _api(stack, "POST", f"/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    return run_id


def _states(stack: Any, run_id: str) -> dict[str, str]:
    tis = _api(stack, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    return {f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]: t["state"] for t in tis}


def _report(stack: Any, run_id: str) -> str:
    """Task states, and the error lines of this run's task logs (what to read when the run went wrong)."""
    lines = [json.dumps(_states(stack, run_id), indent=1)]
    logs = Path(stack.env.get("AIRFLOW_HOME", stack.base)) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    for log in sorted(logs.glob("**/*.log")):
        text = log.read_text(errors="replace")
        if '"level":"error"' in text or "Traceback" in text or "SUMMARY" in text:
            lines.append(f"--- {log.relative_to(logs)}\n{text[-2500:]}")
    return "\n".join(lines)[-10000:]


def _wait_task(stack: Any, run_id: str, task_id: str, want: tuple[str, ...], timeout_s: float) -> str:
    """Wait until ``task_id`` is in one of ``want`` (fails early, with the run's report, when the run ends)."""
    mod = _scheduler_module()
    run_url = f"{stack.api_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"

    def probe() -> str | None:
        state = _states(stack, run_id).get(task_id)
        if state in want:
            return state
        run_state = mod._http("GET", run_url, stack.token)[1].get("state")
        if run_state in ("success", "failed"):
            pytest.fail(f"the run {run_id} ended {run_state} with {task_id} {state}, not {want}:\n"
                        f"{_report(stack, run_id)}")
        return None

    return mod._wait(f"{task_id} of {run_id} to be {'/'.join(want)}", probe, timeout_s, stack.procs, stack.logs)


def _hitl(stack: Any, run_id: str) -> dict[str, Any]:
    return _api(stack, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails")


def _ledger(stack: Any) -> list[dict[str, Any]]:
    from mlflow import MlflowClient
    from mlops_airflow.registry.ledger import read_ledger

    return read_ledger(MlflowClient(stack.mlflow_url), MODEL)


# -- evidence links --------------------------------------------------------------------------------------------------
def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url.split("#")[0])
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback only
        return resp.status


def _resolves(mlflow_url: str, link: str) -> str:
    """What the MLflow UI page behind ``link`` shows, fetched over REST: the object must exist (HTTP 200)."""
    fragment = urllib.parse.unquote(link.partition("#")[2])
    api = f"{mlflow_url}/api/2.0/mlflow"
    if m := re.fullmatch(r"/models/([^/]+)/versions/(\d+)", fragment):
        query = urllib.parse.urlencode({"name": m[1], "version": m[2]})
        assert _get(f"{api}/model-versions/get?{query}") == 200, link
        return f"model version {m[1]} v{m[2]}"
    if m := re.fullmatch(r"/experiments/(\d+)/runs/([0-9a-f]+)(?:/artifacts/(.+))?", fragment):
        with urllib.request.urlopen(f"{api}/runs/get?run_id={m[2]}", timeout=60) as resp:  # noqa: S310
            run = json.loads(resp.read())["run"]
        assert run["info"]["experiment_id"] == m[1], (link, run["info"])
        if m[3]:
            query = urllib.parse.urlencode({"path": m[3], "run_uuid": m[2]})
            assert _get(f"{mlflow_url}/get-artifact?{query}") == 200, link
            return f"artifact {m[3]} of run {m[2][:8]}"
        return f"run {m[2][:8]} of experiment {m[1]}"
    raise AssertionError(f"an evidence link that is no MLflow page: {link}")


# -- the browser -----------------------------------------------------------------------------------------------------
def _open_required_action(browser: Browser, stack: Any, run_id: str) -> None:
    browser.goto(f"{stack.api_url}/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK}/required_actions")
    browser.wait_for("(() => { const b = doc.querySelector('[data-testid=hitl-option-Reject]'); "
                     "return b && !b.disabled && !!doc.querySelector('#element_reason'); })()", timeout=180,
                     what="the Required Action form (Reason, Approve, Reject)")


def _reject(browser: Browser, reason: str | None) -> None:
    if reason:
        browser.focus("#element_reason")
        browser.type(reason)
        browser.wait_for(f"doc.querySelector('#element_reason').value === {json.dumps(reason)}",
                         what="the reason in the form")
    browser.click_text("Reject", selector="button[data-testid=hitl-option-Reject]")


def _failure_shot(browser: Browser, name: str) -> None:
    try:
        browser.screenshot(OUTPUT / f"{name}_failure.png", full_page=True)
        (OUTPUT / f"{name}_failure.txt").write_text(browser.text())
    except Exception:  # noqa: BLE001 - best effort next to the real failure
        pass


def test_reject_on_the_required_action_tab_lands_in_the_ledger_and_on_the_models_page(stack, tmp_path) -> None:
    mod = _scheduler_module()
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    # 1. The first model of its own registered model: champion, nobody asked.
    day1 = _trigger(stack, DAY1, "hitl_day1")
    first = mod._wait_run(stack, DAG_ID, day1, 900)
    assert first["state"] == "success", _report(stack, day1)
    assert first["summary"]["model"]["name"] == MODEL and first["summary"]["model"]["aliases"] == ["champion"]
    champion = first["summary"]["model"]["version"]
    assert _states(stack, day1)[TASK] == "skipped"
    timings["day1_s"] = time.monotonic() - t0

    # 2. A drifted day: a challenger that beats the champion on the holdout waits for a person.
    t1 = time.monotonic()
    day2 = _trigger(stack, DAY2, "hitl_day2")
    _wait_task(stack, day2, TASK, WAITING, 900)
    timings["day2_to_request_s"] = time.monotonic() - t1
    detail = _hitl(stack, day2)
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"], detail
    assert detail["response_received"] is False and set(detail["params"]) == {"reason"}, detail  # no DAG params
    challenger = re.search(rf"Promote {MODEL} v(\d+)", detail["subject"])[1]
    assert challenger != champion and f"(replacing v{champion})" in detail["subject"], detail["subject"]
    body = detail["body"]
    assert "**Evaluation verdict:** PASSED" in body and "paired-bootstrap CI" in body, body
    links = dict(re.findall(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", body))
    link_names = {n for n in links if not n.startswith(("runs:/", "mlflow-artifacts:"))}
    assert {"model version", "challenger run", f"champion v{champion}", "evaluation evidence",
            "drift report"} <= link_names, links

    OUTPUT.mkdir(exist_ok=True)
    with Browser(_chromium(), width=1400, height=1800, timeout=90) as browser:
        # 3. What the approver sees: the evidence with its links, a Reason field, Approve and Reject.
        try:
            _open_required_action(browser, stack, day2)
            browser.wait_for(f"doc.body.innerText.includes({json.dumps(detail['subject'])})", timeout=60,
                             what="the request's subject")
            shown = browser.eval("[...doc.querySelectorAll('a[href]')].map(a => a.href)")
            shot = OUTPUT / "ui_required_action.png"
            shot.unlink(missing_ok=True)
            browser.screenshot(shot, full_page=True)
            text = browser.text()
            (OUTPUT / "ui_required_action.txt").write_text(text)
        except (CdpError, AssertionError):
            _failure_shot(browser, "ui_required_action")
            raise
        assert shot.stat().st_size > 20_000
        assert "Reason" in text and "Holdout" in text, text[:3000]
        unquoted = {urllib.parse.unquote(u) for u in shown}
        missing = {n: u for n, u in links.items() if urllib.parse.unquote(u) not in unquoted}
        assert not missing, f"evidence links not on the Required Action tab: {missing}"
        checked = {}
        for name, url in sorted(set(links.items())):
            assert _get(url, stack.token if url.startswith(stack.api_url) else None) == 200, (name, url)
            checked[name] = _resolves(stack.mlflow_url, url)
        (tmp_path / "links.json").write_text(json.dumps(checked))

        # 4. Reject without a reason: refused (the task fails and says why), nothing recorded or promoted.
        try:
            _reject(browser, None)
            _wait_task(stack, day2, TASK, ("failed",), 300)
        except (CdpError, AssertionError):
            _failure_shot(browser, "ui_required_action_no_reason")
            raise
        log = "\n".join(p.read_text(errors="replace") for p in (
            Path(stack.env["AIRFLOW_HOME"]) / "logs" / f"dag_id={DAG_ID}" / f"run_id={day2}"
        ).glob(f"task_id={TASK}/*.log"))
        assert "without a reason" in log and "clear this task and answer again" in log, log[-3000:]
        assert not [e for e in _ledger(stack) if e.get("action") == "rejected"]
        _api(stack, "POST", f"/dags/{DAG_ID}/clearTaskInstances", {
            "dry_run": False, "dag_run_id": day2, "task_ids": [TASK], "include_downstream": True,
            "only_failed": False, "reset_dag_runs": True})
        _wait_task(stack, day2, TASK, WAITING, 300)
        assert _hitl(stack, day2)["response_received"] is False

        # 5. Reject with a reason typed into the form.
        try:
            _open_required_action(browser, stack, day2)
            _reject(browser, REASON)
            run = mod._wait_run(stack, DAG_ID, day2, 600)
        except (CdpError, AssertionError):
            _failure_shot(browser, "ui_required_action_reject")
            raise
        assert run["state"] == "success", _report(stack, day2)
        states = _states(stack, day2)
        assert states[TASK] == "success" and states["promote_model"] == "skipped", states
        answer = _hitl(stack, day2)
        assert answer["chosen_options"] == ["Reject"] and answer["params_input"]["reason"] == REASON, answer
        by = answer["responded_by_user"]["name"]
        summary = run["summary"]
        assert summary.get("promotion") is None and summary["model"]["version"] == challenger, summary
        # the run summary's headline (pipeline/summary.py ct_outcome) names the answer and its reason
        assert summary["outcome"]["status"] == "not_promoted", summary["outcome"]
        assert REASON in summary["outcome"]["headline"], summary["outcome"]

        # ... in the promotion ledger (its one reader), once, with the reason; the champion is unchanged.
        rejected = [e for e in _ledger(stack) if e.get("action") == "rejected"]
        assert len(rejected) == 1, rejected
        entry = rejected[0]
        assert entry["version"] == challenger and entry["note"] == REASON and entry["rejected_by"] == by, entry
        assert entry["airflow"]["dag_id"] == DAG_ID and entry["airflow"]["run_id"] == day2, entry
        from mlflow import MlflowClient

        assert MlflowClient(stack.mlflow_url).get_model_version_by_alias(MODEL, "champion").version == champion

        # ... and on the models page: the JSON view, then the page in Chromium.
        status, data = mod._http("GET", f"{stack.api_url}/mlops/api/models", stack.token, timeout=180)
        assert status == 200 and data["error"] is None, data
        model = next(m for m in data["models"] if m["name"] == MODEL)
        version = next(v for v in model["version_history"] if v["version"] == challenger)
        assert "rejected" in version["states"], version
        assert [(r["by"], r["reason"]) for r in version["rejections"]] == [(by, REASON)], version["rejections"]
        assert any(r["action"] == "rejected" and r["note"] == REASON and r["version"] == challenger
                   for r in model["ledger"]), model["ledger"]
        try:
            browser.goto(f"{stack.api_url}/mlops/")
            row = f"[data-model={MODEL}] tr[data-version='{challenger}']"
            browser.wait_for_selector(row, timeout=180)
            row_text = browser.text(row)
            browser.eval(f"doc.querySelector('[data-model={MODEL}]').scrollIntoView()")
            shot = OUTPUT / "ui_models_page_rejected.png"
            shot.unlink(missing_ok=True)
            browser.screenshot(shot)
        except (CdpError, AssertionError):
            _failure_shot(browser, "ui_models_page_rejected")
            raise
        assert "rejected" in row_text and REASON in row_text and by in row_text, row_text
        assert shot.stat().st_size > 20_000

    timings["total_s"] = time.monotonic() - t0
    (OUTPUT / "hitl_browser_timing.json").write_text(json.dumps(
        {**{k: round(v, 1) for k, v in timings.items()}, "runs": [day1, day2], "links": checked}, indent=2))
    print(f"\n[hitl-browser] {json.dumps({k: round(v, 1) for k, v in timings.items()})}; links: {checked}")
