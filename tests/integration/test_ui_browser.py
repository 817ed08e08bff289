"""The pack in the Airflow 3 UI, driven in headless Chromium over the DevTools protocol (``_cdp.py``).

Uses the stack of ``test_scheduler_run.py`` (started once per pytest session by whichever test asks first; see
``test_models_page.py``). The stack runs with ``SIMPLE_AUTH_MANAGER_ALL_ADMINS``: the browser is an admin
without logging in.

- Admin > Connections > Add Connection: each of the pack's connection types (MLflow, DVC repository, Feast
  feature store) shows its labelled fields (declared in ``get_provider_info``); screenshots
  ``test-output/ui_connection_form_<type>.png``.
- The models page inside the Airflow UI (an iframe sandboxed without ``allow-popups``): a click on a link
  opens a new tab (the MLflow run) while the page stays; every link, DAG runs too, is a new-tab link; screenshot
  ``test-output/ui_models_page_versions.png``.

Needs Debian's ``chromium``; skipped with the reason when it is missing (failed instead under
MLOPS_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT
from integration._cdp import Browser, require_chromium
from integration.test_models_page import _scheduler_module  # one stack module object for both files

pytestmark = [pytest.mark.integration]

OUTPUT = ROOT / "test-output"

#: Connection type -> (the name the type list shows, the labels its form must show).
FORMS = {
    "mlflow": ("MLflow", ["Tracking URI", "Registry URI", "UI URL", "Token", "Skip TLS verification"]),
    "dvc": ("DVC repository", ["Working copy path", "Git URL", "Branch", "DVC remote name", "DVC remote URL"]),
    "feast": ("Feast feature store", ["Feature repository path", "Store configuration file"]),
}


_chromium = require_chromium


@pytest.fixture
def stack(request: pytest.FixtureRequest):
    _chromium()
    return _scheduler_module().running_stack(request)


@pytest.fixture
def browser():
    with Browser(_chromium(), width=1400, height=1400, timeout=90) as b:
        yield b


def _visible_labels(browser: Browser) -> list[str]:
    return browser.eval("[...doc.querySelectorAll('[role=dialog] label')].filter(l => l.getBoundingClientRect()"
                        ".height > 0).map(l => l.innerText.replace('*', '').trim())")


@pytest.mark.parametrize("conn_type", sorted(FORMS))
def test_add_connection_form_shows_the_labelled_fields(stack, browser: Browser, conn_type: str) -> None:
    shown, labels = FORMS[conn_type]
    browser.goto(f"{stack.api_url}/connections")
    browser.click_text("Add Connection", selector="button")
    browser.focus("[role=dialog] input[role=combobox]")
    browser.type(shown)
    browser.wait_for("doc.querySelectorAll('[role=option]').length > 0", what=f"{shown!r} in the type list")
    browser.click_text(shown, selector="[role=option]")
    browser.wait_for("[...doc.querySelectorAll('[role=dialog] button')].some(b => b.innerText.trim() === "
                     "'Extra Fields')", what="the form's Extra Fields section")
    if browser.eval("[...doc.querySelectorAll('[role=dialog] button')].find(b => b.innerText.trim() === "
                    "'Extra Fields').getAttribute('aria-expanded')") != "true":
        browser.click_text("Extra Fields", selector="[role=dialog] button")
    browser.wait_for(f"{labels!r}.every(want => [...doc.querySelectorAll('[role=dialog] label')].some(l => "
                     "l.innerText.trim() === want && l.getBoundingClientRect().height > 0))",
                     timeout=30, what=f"the {conn_type} fields {labels}")
    visible = _visible_labels(browser)
    assert set(labels) <= set(visible), visible
    # Each field is an input the form stores under the extra key the hook reads (not the raw JSON box only).
    inputs = browser.eval("[...doc.querySelectorAll('[role=dialog] input, [role=dialog] textarea')].length")
    assert inputs >= len(labels) + 2, inputs  # + connection id and the type's combobox
    # The accordion's finite animations done (a progress bar elsewhere loops forever), the height settled.
    browser.wait_for("new Promise(done => { const h = doc.querySelector('[role=dialog]').scrollHeight; setTimeout("
                     "() => done(!doc.getAnimations().some(a => a.effect && a.effect.getComputedTiming().endTime "
                     "!== Infinity) && doc.querySelector('[role=dialog]').scrollHeight === h), 300); })",
                     what="the form to stop moving")
    shot = OUTPUT / f"ui_connection_form_{conn_type}.png"
    shot.unlink(missing_ok=True)
    browser.screenshot(shot)
    assert shot.stat().st_size > 20_000


def test_models_page_in_the_airflow_frame_opens_links_in_a_new_tab(stack, browser: Browser) -> None:
    version = stack.summary["model"]["version"]
    browser.goto(f"{stack.api_url}/plugin/mlops-models")
    browser.wait_for("!!doc.querySelector('[data-model=churn_classifier]')", frame="iframe", timeout=180,
                     what="the models page inside the Airflow UI")
    sandbox = browser.eval("document.querySelector('iframe').getAttribute('sandbox')")
    assert "allow-popups" not in sandbox.split(), sandbox  # what frame.js works around
    browser.wait_for("doc.documentElement.getAttribute('data-frame-links') === 'parent'", frame="iframe",
                     timeout=30, what="frame.js to take over the page's new-tab links")

    # Every version with its status, metrics labelled by source.
    rows = browser.eval("[...doc.querySelectorAll('[data-model=churn_classifier] table.versions tr[data-version]')]"
                        ".map(r => [r.dataset.version, r.dataset.state, r.innerText])", frame="iframe")
    # The stack's first CT run made `version` the champion; a later test of the session may have promoted a newer
    # one (the drift -> retraining test): the page lists both, newest first, exactly one of them the champion.
    assert rows and version in [r[0] for r in rows], rows
    champions = [r for r in rows if r[1] == "champion"]
    assert len(champions) == 1 and int(champions[0][0]) >= int(version), rows
    assert "validation (training run)" in champions[0][2]
    links = browser.eval("[...doc.querySelectorAll('a')].map(a => [a.innerText.trim(), a.getAttribute('href'), "
                         "a.target, a.rel])", frame="iframe")
    assert links and all(target == "_blank" and "noopener" in rel.split() for _, _, target, rel in links), links
    page_url = browser.eval("doc.location.href", frame="iframe")

    # The DAG run in this Airflow (its link text is the run id) is a new-tab link like every other (checked above);
    # the MLflow run is clicked: it opens a new tab and the page itself stays.
    assert any(text == stack.run_id[:36] for text, _, _, _ in links), links
    for text, expected in (("MLflow run", stack.mlflow_url),):
        before = {t["id"] for t in browser.targets()}
        browser.click_text(text, selector="[data-model=churn_classifier] table.versions a", frame="iframe")
        opened = _wait_new_tab(browser, before)
        assert opened.startswith(expected), (text, opened)
        assert browser.eval("doc.location.href", frame="iframe") == page_url  # the page itself stayed
        assert urllib.request.urlopen(opened.split("#")[0], timeout=60).status == 200  # noqa: S310 - loopback

    shot = OUTPUT / "ui_models_page_versions.png"
    shot.unlink(missing_ok=True)
    browser.screenshot(shot)
    assert shot.stat().st_size > 20_000


def _wait_new_tab(browser: Browser, before: set[str], timeout: float = 30) -> str:
    """The URL of a tab opened since ``before`` (target ids), once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [t["url"] for t in browser.targets() if t["type"] == "page" and t["id"] not in before
               and t["url"].startswith("http")]
        if new:
            return new[0]
        time.sleep(0.25)
    pytest.fail(f"no new tab opened in {timeout:.0f}s (tabs: {browser.pages()})")
