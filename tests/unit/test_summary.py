"""The SUMMARY line helper: values print as ``%s`` printed them, one line, and logging it never fails the task."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlops_airflow._summary import MARKER, log_summary, summary_line, summary_text

pytestmark = pytest.mark.unit


def test_line_prints_values_as_percent_s_did() -> None:
    line = summary_line("data-drift", passed=False, drift_share=f"{0.8:.2f}", drifted=["a", "b"], rows=None,
                        counts={"x": 1}, n=3, path=Path("/tmp/r.html"))
    assert line == "SUMMARY data-drift passed=False drift_share=0.80 drifted=['a', 'b'] rows=None counts={'x': 1} " \
                   "n=3 path=/tmp/r.html"
    assert line == "SUMMARY data-drift passed=%s drift_share=%.2f drifted=%s rows=%s counts=%s n=%d path=%s" % (  # noqa: UP031
        False, 0.8, ["a", "b"], None, {"x": 1}, 3, Path("/tmp/r.html"))


def test_text_is_the_line_without_its_marker_and_keeps_field_order() -> None:
    assert summary_text("retrain-guard", model="m", proceed=True, reason=repr("it's")) == \
        "retrain-guard model=m proceed=True reason=\"it's\""
    assert summary_line("k", b=1, a=2) == f"{MARKER} k b=1 a=2"
    assert summary_line("feast-verify") == "SUMMARY feast-verify"


def test_a_value_with_line_breaks_stays_on_one_line() -> None:
    line = summary_line("approval", reason="first\nsecond\r\n")
    assert "\n" not in line and "\r" not in line
    assert line == "SUMMARY approval reason=first\\nsecond\\r\\n"


def test_an_unprintable_value_is_named_not_raised() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert summary_line("x", v=Broken()) == "SUMMARY x v=<unprintable Broken>"


def test_log_summary_logs_one_record_at_info_and_returns_the_text(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.summary")
    with caplog.at_level(logging.INFO, logger="test.summary"):
        text = log_summary(log, "quality", passed=True, roc_auc="0.912", pct="100%")
    assert text == "quality passed=True roc_auc=0.912 pct=100%"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "SUMMARY quality passed=True roc_auc=0.912 pct=100%")]


def test_log_summary_level_is_positional_and_level_stays_usable_as_a_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.summary.level")
    with caplog.at_level(logging.INFO, logger="test.summary.level"):
        log_summary(log, "train", logging.ERROR, status="failed", level="debug")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "SUMMARY train status=failed level=debug")]


def test_log_summary_never_raises_when_the_logger_does() -> None:
    class BrokenLog:
        def log(self, *args: object) -> None:
            raise OSError("disk full")

    assert log_summary(BrokenLog(), "dvc-version", path="p") == "dvc-version path=p"


def test_log_summary_through_an_operator_logger(capsys: pytest.CaptureFixture[str]) -> None:
    """Operators log through ``self.log`` (structlog in the Task SDK): the line reaches the task log as is."""
    from airflow.sdk import BaseOperator

    log_summary(BaseOperator(task_id="t").log, "feast-apply", repo="/r", changes=2)
    assert "SUMMARY feast-apply repo=/r changes=2" in capsys.readouterr().out
