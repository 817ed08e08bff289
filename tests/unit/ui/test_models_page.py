"""The models page's HTML: every value escaped, only safe links, every link in a new tab (inside the Airflow UI's frame
through ``frame.js``, checked in Chromium by tests/integration/test_ui_browser.py), every version with its status,
metrics labelled by source, rejections with who and why, the embedded-frame hint, the error and empty pages; and its
routes refuse anonymous callers.

The data is in the shape ``ui.models_data.collect`` returns (tests/unit/ui/test_models_data.py reads it from a real
registry). An authenticated request needs Airflow's metadata database (revoked-token check): see
tests/integration/test_models_page.py.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from mlops_airflow.ui.models_page import (
    FRAME_JS,
    MAX_LEDGER_ROWS,
    MAX_VERSION_ROWS,
    _evidence,
    _link,
    _metrics,
    _when,
    e,
    render_page,
)

pytestmark = pytest.mark.unit

UI = "http://mlflow.example:5000"


def _version(version: str, **over) -> dict:
    return {
        "version": version,
        "status": "READY",
        "created_at": "2026-11-29T05:24:06+00:00",
        "run_id": "r" * 32,
        "run_url": f"{UI}/#/experiments/1/runs/{'r' * 32}",
        "version_url": f"{UI}/#/models/churn/versions/{version}",
        "dataset": {"rev": "a1b2c3d4e5f6a7b8c9d0", "md5": "0123456789abcdef", "path": "data/events"},
        "training_set_hash": "f" * 64,
        "feature_service": "churn_model_v1",
        "metrics": {"train_loss": 0.3, "val_auc": 0.83, "val_accuracy": 0.75, "epoch_time": 2.0, "auc": 0.8},
        "dag_run": "mlops_continuous_training/manual__2026-11-29T05:00:00+00:00",
        **over,
    }


def _model(**over) -> dict:
    drift = {
        "kind": "data_drift",
        "passed": False,
        "status": "FINISHED",
        "at": "2026-11-30T01:00:00+00:00",
        "run_id": "d" * 32,
        "run_url": f"{UI}/#/experiments/2/runs/{'d' * 32}",
        "report_url": f"reports/{'d' * 32}",
        "metrics": {"drift_share": 0.6},
        "threshold": "0.5",
        "dag_run": "mlops_monitoring/scheduled__1",
    }
    ledger = [
        {
            "seq": 3,
            "at": "2026-11-30T02:00:00+00:00",
            "alias": "canary",
            "version": None,
            "previous_version": "3",
            "action": "rollback",
            "approved_by": "policy: automatic rollback",
            "evidence_uri": "runs:/c/canary.json",
            "evidence_url": f"{UI}/#/experiments/1/runs/c/artifacts/canary.json",
            "dag_run": "ct/run3",
            "source": "ledger",
        },
        {
            "seq": 2,
            "at": "2026-11-29T06:00:00+00:00",
            "alias": "champion",
            "version": "2",
            "previous_version": "1",
            "action": "promote",
            "approved_by": "alice",
            "evidence_uri": "file:///e.json",
            "evidence_url": None,
            "dag_run": "ct/run2",
            "source": "ledger",
        },
        {
            "seq": None,
            "at": "2026-11-28T00:00:00+00:00",
            "alias": "champion",
            "version": "1",
            "previous_version": None,
            "action": "promote",
            "approved_by": "policy:first-champion",
            "evidence_uri": json.dumps({"metrics": {"val_auc": 0.8}, "min_metrics": {"val_auc": 0.7}}),
            "evidence_url": None,
            "dag_run": "ct/run1",
            "source": "version tags",
        },
    ]
    model = {
        "name": "churn",
        "description": "Churn model",
        "url": f"{UI}/#/models/churn",
        "versions": 3,
        "latest_version": "3",
        "aliases": {"champion": _version("2"), "challenger": _version("3")},
        "monitoring": {"drift": drift, "quality": None},
        "ledger": ledger,
    }
    model.update(over)
    return model


def _data(models, **over) -> dict:
    return {
        "generated_at": "2026-11-30T03:00:00+00:00",
        "mlflow_conn_id": "mlflow_default",
        "mlflow_url": UI,
        "models": models,
        "error": None,
        **over,
    }


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs)
        if tag == "script":
            self.scripts.append(attrs.get("src"))


def _links(page: str) -> list[dict]:
    parser = _Links()
    parser.feed(page)
    assert parser.scripts == ["frame.js"]  # the page's one script, from this server; nothing inline
    return parser.links


def test_a_model_card_with_aliases_verdicts_and_ledger():
    page = render_page(_data([_model()]))
    assert page.startswith("<!doctype html>") and page.endswith("</body></html>")
    assert '<section class="card" data-model="churn">' in page and "3 version(s), latest v3" in page
    assert page.index("alias-champion") < page.index("alias-challenger")
    assert '<code title="a1b2c3d4e5f6a7b8c9d0">a1b2c3d4e5f6</code>' in page  # short rev, full one in the tooltip
    assert f'<code title="{"f" * 64}">{"f" * 16}</code>' in page
    # Validation metrics first, four at most.
    assert (
        page.count(
            '<span class="metric">val_auc <b>0.83</b></span> <span class="metric">auc <b>0.8</b></span> '
            '<span class="metric">val_accuracy <b>0.75</b></span>'
        )
        == 2
    )
    assert '<span class="badge bad">drift</span>' in page and "threshold <b>0.5</b>" in page
    assert "No quality run yet (needs delayed labels)." in page
    assert "<span class=muted>removed from</span> v3" in page and "v2 <span class=muted>(was v1)</span>" in page
    assert "val_auc 0.800 ≥ 0.7" in page and "(version tags)" in page
    assert '<span title="2026-11-29T05:24:06+00:00" class="num">2026-11-29 05:24 UTC</span>' in page


def test_every_link_opens_a_new_tab():
    """MLflow's and this server's (report, JSON, DAG runs, which inside the frame would nest the Airflow UI)."""
    links = _links(render_page(_data([_model()])))
    hrefs = {a["href"]: a for a in links}
    mlflow = [a for a in links if a["href"].startswith(UI)]
    assert mlflow and all(a.get("target") == "_blank" and a.get("rel") == "noopener noreferrer" for a in mlflow)
    same = [a for a in links if not a["href"].startswith("http")]
    assert {a["href"].split("/")[0] for a in same} == {"api", "reports", ".."}
    assert all(a.get("target") == "_blank" and "noopener" in a.get("rel", "").split() for a in same)
    assert hrefs["api/models"] and hrefs[f"reports/{'d' * 32}"]
    assert "../dags/mlops_continuous_training/runs/manual__2026-11-29T05%3A00%3A00%2B00%3A00" in hrefs
    assert "../dags/ct/runs/run2" in hrefs


def test_every_value_is_escaped_and_unsafe_urls_are_not_links():
    evil = "<script>alert(1)</script>"
    model = _model(
        name=f'x" onmouseover="{evil}',
        description=evil,
        url="javascript:alert(1)",
        aliases={
            "cham<pion>": _version(
                '1"><b>', run_url="javascript:alert(2)", version_url="data:text/html,<b>x</b>", dag_run=evil
            )
        },
    )
    model["ledger"][1]["approved_by"] = evil
    page = render_page(_data([model], mlflow_conn_id=evil, mlflow_url="javascript:alert(3)"))
    links = _links(page)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not any(a["href"].startswith(("javascript:", "data:")) for a in links)
    assert 'data-model="x&quot; onmouseover=&quot;&lt;script&gt;' in page
    assert "cham&lt;pion&gt;" in page and "v1&quot;&gt;&lt;b&gt;" in page


def test_embedded_hint_error_and_empty_pages():
    plain, embedded = render_page(_data([_model()])), render_page(_data([_model()]), embedded=True)
    assert 'class="hint"' not in plain and 'class="hint"' in embedded and "<code>/mlops/</code>" in embedded
    assert "every link opens a new tab" in embedded
    error = render_page(_data([], error="MLflow at http://x (connection 'm') did not answer: <timeout>"))
    assert (
        '<div class="error" role="alert"><b>Registry not readable:</b> MLflow at http://x (connection &#x27;m'
        "&#x27;) did not answer: &lt;timeout&gt;</div>" in error
    )
    assert "<section" not in error and "No registered model yet" not in error
    empty = render_page(_data([]))
    assert "No registered model yet. Run the continuous-training DAG" in empty and "<section" not in empty
    bare = render_page(
        _data([_model(aliases={}, ledger=[], monitoring={"drift": None, "quality": None}, description="")])
    )
    assert "No alias set: no version has passed its gate yet (3 version(s) registered)." in bare
    assert "No promotion recorded yet." in bare and "No drift check has run yet." in bare


def test_a_long_ledger_points_to_the_json_view():
    entry = _model()["ledger"][1]
    page = render_page(_data([_model(ledger=[entry] * (MAX_LEDGER_ROWS + 7))]))
    assert page.count("v2 <span class=muted>(was v1)</span>") == MAX_LEDGER_ROWS
    assert "7 older entries in the JSON view." in page


def test_helpers():
    assert e(None) == "" and e('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert _link(None, "run") == '<span class="muted">run</span>'
    assert _link("ftp://x", "run") == "ftp://x"
    assert _link("https://m/#/x", "run") == '<a href="https://m/#/x" target="_blank" rel="noopener noreferrer">run</a>'
    assert _link("https://m/#/x", "run", external=False) == '<a href="https://m/#/x">run</a>'
    assert _when(None) == '<span class="muted">-</span>' and _when("not a date") == "not a date"
    assert "2026-11-29 04:24 UTC" in _when("2026-11-29T05:24:06+01:00")
    assert _metrics({}) == '<span class="muted">-</span>'
    assert _metrics({"z": 1.0, "val_b": 2.0, "a": 3.0, "drift_share": 0.5}, limit=3) == (
        '<span class="metric">drift_share <b>0.5</b></span> <span class="metric">val_b <b>2</b></span> '
        '<span class="metric">a <b>3</b></span>'
    )
    assert _evidence(None) == '<span class="muted">-</span>'
    assert _evidence("runs:/abc/evaluation/vs-v1.json", "https://m/a") == (
        '<span title="runs:/abc/evaluation/vs-v1.json"><a href="https://m/a" target="_blank" '
        'rel="noopener noreferrer">vs-v1.json</a></span>'
    )
    assert _evidence("x" * 80).endswith(f">{'x' * 57}...</code>")


def test_the_routes_refuse_anonymous_callers():
    from fastapi.testclient import TestClient
    from mlops_airflow.ui.models_page import create_app

    client = TestClient(create_app())
    for path in ("/", "/api/models", "/icon.svg", "/frame.js", "/index.html", f"/reports/{'0' * 32}",
                 "/reports/not-a-run"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}


def _history() -> list[dict]:
    """Versions as ``collect`` returns them: statuses, rejections, rollbacks, both metric sources."""
    holdout = {"auc": 0.81, "accuracy": 0.74, "logloss": 0.52}
    evaluation = {"passed": False, "primary_metric": "auc", "champion_version": "2", "evidence_uri": "runs:/r/e.json",
                  "evidence_url": f"{UI}/#/experiments/1/runs/r/artifacts/evaluation/vs-v2.json", "metrics": holdout}
    return [
        _version("5", aliases=["challenger"], states=["challenger", "rejected"], state="challenger",
                 validation_metrics={"val_auc": 0.9, "val_logloss": 0.4}, holdout_metrics={"auc": 0.88},
                 evaluation={**evaluation, "passed": True, "metrics": {"auc": 0.88}},
                 rejections=[{"by": "bob", "reason": "holdout <too small>", "at": "2026-12-01T00:00:00+00:00"}],
                 rollbacks=[]),
        _version("4", aliases=[], states=["refused"], state="refused", validation_metrics={"val_auc": 0.93},
                 holdout_metrics=holdout, evaluation=evaluation, rejections=[], rollbacks=[]),
        _version("3", aliases=[], states=["rolled back"], state="rolled back", metrics={"auc": 0.7},
                 validation_metrics={}, holdout_metrics={}, evaluation=None, rejections=[],
                 rollbacks=[{"alias": "canary", "at": "2026-11-30T02:00:00+00:00", "replaced_by": None}]),
        _version("2", aliases=["champion"], states=["champion"], state="champion", validation_metrics={"val_auc": 0.8},
                 holdout_metrics={}, evaluation=None, rejections=[], rollbacks=[]),
        _version("1", aliases=[], states=["retired"], state="retired", metrics={}, validation_metrics={},
                 holdout_metrics={}, evaluation=None, rejections=[], rollbacks=[]),
    ]


def test_every_version_with_its_status_and_labelled_metrics():
    rejection = {**_model()["ledger"][1], "seq": 4, "action": "rejected", "alias": "champion", "version": "5",
                 "previous_version": None, "approved_by": None, "rejected_by": "bob", "note": "holdout <too small>",
                 "evidence_url": None}
    model = _model(version_history=_history(), ledger=[rejection, *_model()["ledger"]])
    page = render_page(_data([model]))
    links = _links(page)
    rows = page[page.index("<h3>Versions</h3>"):page.index("<h3>Monitoring</h3>")]
    assert [rows.index(f'data-version="{v}"') for v in "54321"] == sorted(rows.index(f'data-version="{v}"')
                                                                         for v in "54321")  # newest first
    assert 'data-version="5" data-state="challenger"' in rows and 'data-version="1" data-state="retired"' in rows
    assert '<span class="alias alias-challenger">challenger</span> <span class="state state-rejected">rejected</span>' \
        in rows
    assert '<span class="state state-refused">refused</span>' in rows
    assert '<span class="state state-rolled-back">rolled back</span>' in rows and "canary rolled back" in rows
    assert "rejected by <b>bob</b>" in rows and "holdout &lt;too small&gt;" in rows
    assert "holdout evaluation failed vs champion v2" in rows and "holdout evaluation passed vs champion v2" in rows
    # Metrics under their source: the training run's validation split vs the holdout evaluation.
    v4 = rows[rows.index('data-version="4"'):rows.index('data-version="3"')]
    assert ('<div class="msrc msrc-validation"><span class="src">validation (training run)</span> '
            '<span class="metric">val_auc <b>0.93</b></span></div>') in v4
    assert '<span class="src">holdout (evaluation)</span> <span class="metric">auc <b>0.81</b></span>' in v4
    v3 = rows[rows.index('data-version="3"'):rows.index('data-version="2"')]
    assert '<span class="src">training run</span> <span class="metric">auc <b>0.7</b></span>' in v3
    assert "holdout (evaluation)" not in v3
    evidence = [a for a in links if a["href"].endswith("/artifacts/evaluation/vs-v2.json")]
    assert evidence and all(a["target"] == "_blank" for a in evidence)
    # The ledger: the rejection with who and why.
    ledger = page[page.index("<h3>Promotion ledger</h3>"):]
    assert "<th>Decided by</th>" in ledger
    assert ('<span class="state state-rejected">rejected</span> by <b>bob</b><div class="small">reason: '
            '<span class="reason">holdout &lt;too small&gt;</span></div>') in ledger


def test_a_long_version_history_points_to_the_json_view():
    version = _history()[1]
    page = render_page(_data([_model(version_history=[{**version, "version": str(i)} for i in
                                                      range(MAX_VERSION_ROWS + 3, 0, -1)])]))
    assert page.count('data-state="refused"') == MAX_VERSION_ROWS and "3 older versions in the JSON view." in page
    assert "No version registered yet." in render_page(_data([_model(version_history=[])]))


def test_frame_script_opens_tabs_from_the_airflow_window_only_when_sandboxed():
    assert "window.frameElement" in FRAME_JS and "allow-popups" in FRAME_JS
    assert 'window.parent.open(link.href, "_blank")' in FRAME_JS and "tab.opener = null" in FRAME_JS
