"""The drift report page, rendered from a real ``DriftResult`` of ``drift_engine.detect_drift`` on small Parquet
files: every compared column with its picture, the unchecked columns and why, the verdict, and nothing fetched from
elsewhere (the page opens offline and inside the UI's sandboxed frame)."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlops_airflow.monitoring.drift_report import render
from mlops_airflow.monitoring.verdict import verdict_from_columns

pytestmark = pytest.mark.unit

N = 400


def _write(path: Path, *, shift: float, plan_p: list[float], empty: bool, seed: int) -> str:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "monthly_charges": rng.normal(50 + shift, 10, N),
            "plan": rng.choice(["basic", "pro", "max"], N, p=plan_p),
            "support_calls": rng.integers(0, 5, N),
            "signup_at": pa.array([dt.datetime(2026, 1, 1) + dt.timedelta(hours=i) for i in range(N)]),
            "usage_hours": pa.array([None] * N if empty else rng.gamma(2.0, 3.0, N), type=pa.float64()),
            "<b>odd & name</b>": rng.normal(0, 1, N),
        }
    )
    pq.write_table(table, path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("drift_report")
    return {
        "reference": _write(base / "reference.parquet", shift=0, plan_p=[0.5, 0.3, 0.2], empty=False, seed=1),
        "current": _write(base / "current.parquet", shift=15, plan_p=[0.1, 0.1, 0.8], empty=True, seed=2),
        "same": _write(base / "same.parquet", shift=0, plan_p=[0.5, 0.3, 0.2], empty=False, seed=1),  # = reference
    }


def _verdict(result, threshold: float = 0.5) -> dict:
    per_column = {col: res.as_verdict_entry() for col, res in result.columns.items() if not res.empty_side}
    verdict = verdict_from_columns(per_column, threshold)
    verdict["metrics"]["drift_share_threshold"] = threshold
    return verdict


class _Page(HTMLParser):
    """Table rows (cells as text), svg count, and every attribute that could load something."""

    def __init__(self):
        super().__init__()
        self.rows, self.svgs, self.links, self.headings = [], 0, [], []
        self._row = self._cell = None
        self._tag = None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        self.links += [(tag, k, v) for k, v in attrs if k in ("src", "href", "xlink:href", "action", "data")]
        if tag == "svg":
            self.svgs += 1
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._tag == "h2":
            self.headings.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_report_lists_every_compared_column_with_its_picture(files):
    from mlops_airflow.monitoring.drift_engine import detect_drift

    result = detect_drift(files["reference"], files["current"])
    verdict = _verdict(result)
    page = render(
        result, verdict, reference=files["reference"], current=files["current"], notes=["report drawn from every row"]
    )
    parsed = _parse(page)
    header, *rows = parsed.rows
    assert header == [
        "column",
        "type",
        "stattest",
        "threshold",
        "score",
        "decision",
        "values ref / cur",
        "distribution",
    ]
    by_column = {row[0]: row for row in rows}
    assert (
        set(by_column)
        == set(result.columns)
        == {"monthly_charges", "plan", "support_calls", "usage_hours", "<b>odd & name</b>"}
    )
    assert by_column["monthly_charges"][1:3] == ["numerical", "ks"] and by_column["monthly_charges"][5] == "drifted"
    assert by_column["plan"][1:3] == ["categorical", "chisquare"] and by_column["plan"][5] == "drifted"
    assert by_column["<b>odd & name</b>"][5] == "no drift"
    assert by_column["monthly_charges"][6] == f"{N:,} / {N:,}"
    # The all-null side is shown, not compared, and named.
    assert by_column["usage_hours"][5] == "not compared: no value in the current"
    assert by_column["usage_hours"][6] == f"{N:,} / 0" and by_column["usage_hours"][7] == "no picture"
    # One inline picture per compared column (the uncompared one has none).
    pictured = [col for col, res in result.columns.items() if res.histogram]
    assert parsed.svgs == len(pictured) == 4 and page.count("<svg") == 4
    assert page.count('role="img"') == 4
    # Unchecked columns get their own section, with the reason.
    assert "Not checked" in parsed.headings
    assert "<li><b>signup_at</b>: datetime: a time column is not a drift feature (Evidently)</li>" in page
    assert "signup_at" not in by_column
    # The headline and reasons match the verdict.
    drifted = len(verdict["drifted_columns"])
    assert (
        f"Verdict failed: {drifted} of 5 compared columns drifted (share {verdict['drift_share']:.2f}, dataset "
        f"drift at &gt;= 0.50)" in page
    )
    assert 'class="verdict bad"' in page
    for reason in verdict["reasons"]:
        assert f"<li>{reason.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</li>" in page
    assert "<li>report drawn from every row</li>" in page
    assert f"({N:,} rows)" in page and f"{result.seconds:.2f} s" in page


def test_report_is_self_contained_and_escapes_what_it_shows(files):
    from mlops_airflow.monitoring.drift_engine import detect_drift

    result = detect_drift(files["reference"], files["current"])
    page = render(
        result,
        _verdict(result),
        reference="s3://bucket/<ref>.parquet",
        current="cur & 'today'",
        title="Drift <churn>",
        notes=["<script>alert(1)</script>"],
    )
    parsed = _parse(page)
    assert parsed.links == []  # no src/href at all: nothing to load
    assert not re.search(r"https?://|url\(|@import|<script|<link|<iframe|<img", page, re.IGNORECASE)
    assert "<title>Drift &lt;churn&gt;</title>" in page and "<h1>Drift &lt;churn&gt;</h1>" in page
    assert "<code>s3://bucket/&lt;ref&gt;.parquet</code>" in page and "cur &amp; &#x27;today&#x27;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>&lt;b&gt;odd &amp; name&lt;/b&gt;</b>" in page and "<b>odd & name</b>" not in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_no_drift_and_nothing_unchecked(files):
    from mlops_airflow.monitoring.drift_engine import detect_drift

    result = detect_drift(files["reference"], files["same"], columns=["monthly_charges", "plan", "support_calls"])
    verdict = _verdict(result)
    assert verdict["passed"] is True
    page = render(result, verdict, reference="ref", current="cur")
    assert 'class="verdict ok"' in page and "No dataset drift: 0 of 3 compared columns drifted (share 0.00" in page
    assert "Not checked" not in page and "<ul>" not in page.split("</table>")[0].split('class="verdict')[1]
    assert page.count("<svg") == 3
    # Bins for a numerical column, one labelled pair of bars per value for a few categories.
    numerical, categorical = result.columns["monthly_charges"].histogram, result.columns["plan"].histogram
    assert numerical["kind"] == "bins" and categorical["kind"] == "values"
    for value in categorical["values"]:
        assert f">{value}</text>" in page
    assert page.count('fill="#4d7ea8"') >= len(numerical["reference"]) + len(categorical["values"])


def test_a_streamed_score_shows_its_certified_bounds(files):
    from mlops_airflow.monitoring.drift_engine import detect_drift

    result = detect_drift(files["reference"], files["current"], columns=["monthly_charges"], max_exact_rows=10, bins=8)
    res = result.columns["monthly_charges"]
    assert not res.exact and res.score_low is not None
    page = render(result, _verdict(result), reference="r", current="c")
    assert f'<span class="note">in [{res.score_low:.4g}, {res.score_high:.4g}]' in page
    assert ("uncertain: decided on the midpoint" in page) is (not res.certain)


def test_an_empty_result_renders_a_page_without_rows():
    from mlops_airflow.monitoring.drift_engine import DriftResult

    result = DriftResult(columns={}, reference_rows=0, current_rows=0, seconds=0.0, unchecked={"note": "free text"})
    page = render(
        result,
        {
            "passed": False,
            "reasons": ["no feature left to compare: the drift check could not run"],
            "drift_share": 0.0,
            "metrics": {},
        },
        reference="r",
        current="c",
    )
    parsed = _parse(page)
    assert parsed.rows == [
        ["column", "type", "stattest", "threshold", "score", "decision", "values ref / cur", "distribution"]
    ]
    assert "Verdict failed: 0 of 0 compared columns drifted (share 0.00)" in page
    assert "<li><b>note</b>: free text</li>" in page and parsed.svgs == 0
