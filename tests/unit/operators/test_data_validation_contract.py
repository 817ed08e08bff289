"""The pipeline contract of DataValidationGateOperator: batches the bundled suite lets through are rejected.

Real files, real Great Expectations 1.x, pandas and pyarrow (no mocks). Each bad batch is built from a valid one,
run through the operator, and must fail naming the check, the counts, examples and the next step, and be kept
byte-identical in quarantine. ``pytest -rP`` prints one ``BAD-INPUT | case | message`` line per case.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from mlops_airflow.exceptions import DataValidationError, MLOpsError
from mlops_airflow.operators.data_validation import DataValidationGateOperator

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "include/gx/customer_events.json"
RUN_ID = "scheduled__2026-11-01T00:00:00+00:00"
ROWS = 300
DAY = date(2026, 11, 1)
KEY, TS, LABEL = "customer_id", "event_timestamp", "churned"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("mlops_data_generator", ROOT / "include/data/generator.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _context() -> dict[str, Any]:
    return {"dag": SimpleNamespace(dag_id="ingest_dag"), "run_id": RUN_ID, "ti": SimpleNamespace(task_id="validate")}


@pytest.fixture(scope="module")
def frame() -> Any:
    return gen.generate_batch(DAY, n_customers=ROWS)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("landing", "quarantine", "results")}
    out["landing"].mkdir()
    return out


@pytest.fixture
def minimal_suite(tmp_path: Path) -> Path:
    """A user's suite that names no column: only the pipeline contract knows what the pipeline needs."""
    path = tmp_path / "minimal_suite.json"
    path.write_text(json.dumps({"name": "minimal", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]}))
    return path


def _operator(dirs: dict[str, Path], data_path: Path, **kwargs: Any) -> DataValidationGateOperator:
    params: dict[str, Any] = {
        "suite_path": str(SUITE),
        "key_columns": [KEY],
        "timestamp_column": TS,
        "interval_start": "2026-11-01T00:00:00+00:00",
        "interval_end": "2026-11-02T00:00:00+00:00",
        "label_column": LABEL,
        "task_type": "binary_classification",
        **kwargs,
    }
    return DataValidationGateOperator(
        task_id="validate", data_path=str(data_path), quarantine_dir=str(dirs["quarantine"]),
        results_dir=str(dirs["results"]), **params,
    )


def _report(case: str, message: str) -> None:
    print(f"BAD-INPUT | {case} (validation gate, contract) | {message}")


def _fail(dirs: dict[str, Path], path: Path, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """Run the gate on ``path``; it must fail and keep the batch byte-identical in one quarantine folder."""
    md5 = _md5(path)
    with pytest.raises(DataValidationError) as info:
        _operator(dirs, path, **kwargs).execute(_context())
    message = str(info.value)
    assert not path.exists(), "the original should have been moved"
    folders = [p for p in dirs["quarantine"].iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    kept = folders[0] / path.name
    assert _md5(kept) == md5, "the quarantined copy differs from the landed batch"
    assert f"Batch quarantined to {kept}." in message and "Next step:" in message
    manifest = json.loads((folders[0] / "quarantine.json").read_text())
    assert manifest["verdict"]["passed"] is False and manifest["reasons"]
    result_file = dirs["results"] / "ingest_dag" / "scheduled__2026-11-01T00_00_00_00_00" / "validate" / (
        "validation_result.json")
    result = json.loads(result_file.read_text())
    assert result["success"] is False and "contract" in result
    return message, result


def _check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["contract"]["checks"] if c["check"] == name)


def _parquet(df: Any, dirs: dict[str, Path], name: str = "batch.parquet") -> Path:
    return gen.write_batch(df, dirs["landing"] / name)


# ---------------------------------------------------------------- valid batches


def test_valid_batch_passes_every_contract_check(dirs: dict[str, Path], frame: Any) -> None:
    path = _parquet(frame, dirs)
    verdict = _operator(dirs, path).execute(_context())
    assert verdict["passed"] is True and verdict["reasons"] == [] and verdict["warnings"] == []
    assert verdict["contract"] == {"evaluated": 11, "successful": 11, "failed": 0, "warnings": 0, "skipped": 0,
                                   "failed_checks": [], "warned_checks": []}
    assert verdict["metrics"]["evaluated"] == 26 and verdict["suite_rows"] == ROWS
    result = json.loads(Path(verdict["evidence_uri"].removeprefix("file://")).read_text())
    assert [c["check"] for c in result["contract"]["checks"]] == [
        "entity_keys_present", "entity_keys_not_null", "timestamp_present", "timestamp_not_future",
        "timestamp_in_interval", "features_not_null", "features_finite", "label_present", "label_in_domain",
        "label_not_constant", "extra_columns"]
    assert result["contract"]["spec"]["extra_columns"] == "fail"  # the suite names the expected columns
    assert "Parquet streamed" in result["contract"]["read"]
    assert "Pipeline contract" in Path(verdict["summary_uri"].removeprefix("file://")).read_text()
    json.dumps(verdict)


def test_valid_csv_passes_and_defaults_skip_with_a_reason(dirs: dict[str, Path], frame: Any) -> None:
    path = dirs["landing"] / "batch.csv"
    frame.to_csv(path, index=False)
    op = DataValidationGateOperator(task_id="validate", data_path=str(path), suite_path=str(SUITE),
                                    quarantine_dir=str(dirs["quarantine"]), results_dir=str(dirs["results"]),
                                    entity_columns=[KEY])
    verdict = op.execute(_context())
    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["contract"]["skipped"] == 4  # no interval, no label (3 checks): said in the result
    result = json.loads(Path(verdict["evidence_uri"].removeprefix("file://")).read_text())
    assert _check(result, "label_present")["detail"] == "no label_column given"
    assert _check(result, "timestamp_in_interval")["detail"] == "no interval_start/interval_end given"


def test_extra_column_warn_passes_with_a_warning(dirs: dict[str, Path], frame: Any) -> None:
    path = _parquet(frame.assign(debug_note="x"), dirs)
    verdict = _operator(dirs, path, extra_columns="warn").execute(_context())
    assert verdict["passed"] is True and verdict["contract"]["warned_checks"] == ["extra_columns"]
    assert "contract extra_columns(debug_note): 1 column(s) not expected" in verdict["warnings"][0]


def test_suite_on_a_bounded_sample_contract_on_every_row(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.copy()
    df.loc[ROWS - 1, "usage_hours"] = np.inf  # in the last row group only: outside the suite's sample
    path = dirs["landing"] / "batch.parquet"
    df.to_parquet(path, index=False, row_group_size=50)
    message, result = _fail(dirs, path, suite_sample_rows=100)
    assert result["suite_rows"] == 100 and "the suite ran on the first 100 of 300 rows" in result["suite_sample"]
    assert result["suite_success"] is True  # the sample is clean ...
    assert f"contract features_finite(usage_hours): 1 of 4 floating-point feature column(s) hold +/-inf: " \
           f"usage_hours in 1 of {ROWS} rows, e.g. [usage_hours row {ROWS - 1}: inf]" in message  # ... every row is not
    assert "the suite passed (26 expectations)" in message


def test_misconfigured_contract_does_not_touch_the_batch(dirs: dict[str, Path], frame: Any) -> None:
    path = _parquet(frame, dirs)
    for kwargs, match in [({"interval_start": "2026-11-01T00:00:00"}, "interval_start=.* has no timezone"),
                          ({"task_type": "ranking"}, "task_type='ranking' is not one of"),
                          ({"max_null_share": 1.5}, r"max_null_share=1.5 must be in \[0, 1\]"),
                          ({"extra_columns": "drop"}, "extra_columns='drop' is not one of fail, warn, ignore")]:
        with pytest.raises(MLOpsError, match=match) as info:
            _operator(dirs, path, **kwargs).execute(_context())
        assert not isinstance(info.value, DataValidationError) and "the batch was not touched" in str(info.value)
    assert path.exists() and not dirs["quarantine"].exists()
    with pytest.raises(ValueError, match="key_columns=.* and entity_columns=.* differ"):
        _operator(dirs, path, entity_columns=["other"])


# ---------------------------------------------------------------- bad batches (each passes the bundled suite or
# shows a failure the suite cannot name)


def test_feature_column_entirely_null(dirs: dict[str, Path], frame: Any) -> None:
    message, result = _fail(dirs, _parquet(frame.assign(tenure_months=np.nan), dirs))
    _report("a feature column entirely null", message)
    assert result["suite_success"] is True  # the bundled suite lets it through
    assert "1 of 11 pipeline contract checks failed, the suite passed (26 expectations)" in message
    assert (f"contract features_not_null(tenure_months): 1 of 5 feature column(s) missing or entirely null, "
            f"e.g. [tenure_months: {ROWS}/{ROWS} null (100.00%)]; next step: fix the upstream join or export") \
        in message


def test_feature_column_over_max_null_share(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.copy()
    df.loc[: ROWS // 2 - 1, "usage_hours"] = np.nan  # half null: fine by default, not with max_null_share=0.2
    message, _ = _fail(dirs, _parquet(df, dirs), max_null_share=0.2)
    assert "features_not_null(usage_hours): 1 of 5 feature column(s) missing or over max_null_share=0.2 null, " \
           f"e.g. [usage_hours: {ROWS // 2}/{ROWS} null (50.00%)]" in message


def test_timestamps_in_the_future(dirs: dict[str, Path]) -> None:
    today = datetime.now(UTC).date()
    df = gen.generate_batch(today + timedelta(days=2), n_customers=ROWS)
    message, result = _fail(dirs, _parquet(df, dirs), interval_start=None, interval_end=None)
    _report("timestamps in the future", message)
    check = _check(result, "timestamp_not_future")
    assert check["status"] == "fail" and check["count"] == ROWS and len(check["examples"]) == 5
    assert f"contract timestamp_not_future(event_timestamp): {ROWS} of {ROWS} timestamps after now + clock_skew" \
        in message
    assert f"e.g. [row 0: {df[TS].iloc[0].isoformat()}" in message
    assert "next step: fix the producer's clock or timezone" in message and "raise clock_skew" in message


def test_timestamps_outside_the_claimed_day(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.copy()
    df.loc[:6, TS] = df.loc[:6, TS] - timedelta(days=2)  # 7 events of an earlier day
    df.loc[ROWS - 3 :, TS] = df.loc[ROWS - 3 :, TS] + timedelta(hours=7)  # 3 later than day end + 6 h lateness
    message, result = _fail(dirs, _parquet(df, dirs))
    _report("timestamps outside the claimed day", message)
    assert result["suite_success"] is True
    expected_late = int((df[TS] > datetime(2026, 11, 2, 6, tzinfo=UTC)).sum())
    assert expected_late >= 1
    assert (f"contract timestamp_in_interval(event_timestamp): {7 + expected_late} of {ROWS} timestamps outside "
            "[2026-11-01T00:00:00+00:00, 2026-11-02T06:00:00+00:00] (interval_end + allowed_lateness 6:00:00): "
            f"7 before, {expected_late} after") in message
    assert f"e.g. [row 0: {df[TS].iloc[0].isoformat()}" in message
    assert "raise allowed_lateness if late events are expected" in message


def test_extra_unexpected_column(dirs: dict[str, Path], frame: Any) -> None:
    message, result = _fail(dirs, _parquet(frame.assign(debug_note="x", score_v2=1.0), dirs))
    _report("an extra unexpected column", message)
    assert result["suite_success"] is True
    assert ("contract extra_columns(debug_note, score_v2): 2 column(s) not expected (not an entity, timestamp, label, "
            "feature or suite column): debug_note, score_v2, e.g. [debug_note, score_v2]; next step: drop the "
            "column(s) from the export") in message


def test_constant_label(dirs: dict[str, Path], frame: Any) -> None:
    message, result = _fail(dirs, _parquet(frame.assign(churned=0), dirs))
    _report("a constant label", message)
    assert result["suite_success"] is True
    assert ("contract label_not_constant(churned): the label is the same in every row: nothing to learn, and AUC is "
            "undefined downstream, e.g. [0]; next step: check the label's join or filter upstream") in message


def test_non_binary_label_for_classification(dirs: dict[str, Path], frame: Any, minimal_suite: Path) -> None:
    df = frame.copy()
    df.loc[[4, 9], LABEL] = 2
    df.loc[11, LABEL] = -1
    message, result = _fail(dirs, _parquet(df, dirs), suite_path=str(minimal_suite))
    _report("a non-binary label for classification", message)
    assert result["suite_success"] is True  # a minimal user suite: only the contract knows
    assert (f"contract label_in_domain(churned): 3 of {ROWS} label values (1.00%) not 0 or 1 (binary_classification: "
            "exactly the classes 0 and 1, or bool); column type int64; values seen:") in message
    assert "e.g. [row 4: 2, row 9: 2, row 11: -1]; next step: encode the label as 0/1" in message
    assert "task_type='regression'" in message


def test_inf_in_a_feature(dirs: dict[str, Path], frame: Any, minimal_suite: Path) -> None:
    df = frame.copy()
    df.loc[5, "usage_hours"] = np.inf
    df.loc[8, "payment_delay_days"] = -np.inf
    message, _ = _fail(dirs, _parquet(df, dirs), suite_path=str(minimal_suite))
    _report("inf in a feature", message)
    assert (f"contract features_finite(usage_hours, payment_delay_days): 2 of 4 floating-point feature column(s) "
            f"hold +/-inf: usage_hours in 1 of {ROWS} rows; payment_delay_days in 1 of {ROWS} rows, "
            "e.g. [usage_hours row 5: inf, payment_delay_days row 8: -inf]; next step: replace +/-inf upstream") \
        in message


def test_nan_label_for_regression(dirs: dict[str, Path], frame: Any, minimal_suite: Path) -> None:
    df = frame.drop(columns=[LABEL]).assign(target=frame["monthly_charges"] * 1.5)
    df.loc[[2, 7, 40], "target"] = np.nan
    features = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
    message, result = _fail(dirs, _parquet(df, dirs), suite_path=str(minimal_suite), label_column="target",
                            task_type="regression", feature_columns=features)
    _report("a NaN label for regression", message)
    assert result["contract"]["spec"]["extra_columns"] == "fail"  # feature_columns given: the list is known
    assert (f"contract label_in_domain(target): 3 of {ROWS} label values (1.00%) not a finite number (regression); "
            "column type double; finite values from ") in message
    assert "e.g. [row 2: null, row 7: null, row 40: null]; next step: fill or drop the rows" in message


def test_repeated_csv_header(dirs: dict[str, Path], frame: Any) -> None:
    path = dirs["landing"] / "batch.csv"
    first, second = frame.iloc[:120].to_csv(index=False), frame.iloc[120:].to_csv(index=False)
    path.write_text(first + second)  # two exports concatenated, each with its header
    message, result = _fail(dirs, path)
    _report("a repeated CSV header", message)
    assert ("CSV header row repeated inside the data: 1 row(s) of batch.csv equal the header (line(s) 122), as when "
            "several exports are concatenated with their headers; strip the repeated header rows (keep line 1)") \
        in message
    assert "without a timezone" not in message  # it used to be reported as a naive timestamp
    assert result["contract"]["not_run"].startswith("structural failure: CSV header row repeated")
    assert message.endswith("Next step: fix the upstream export and re-land the batch.")


def test_null_entity_key_named_by_the_contract(dirs: dict[str, Path], frame: Any, minimal_suite: Path) -> None:
    df = frame.assign(customer_id=frame[KEY].astype("Int64"))
    df.loc[[3, 5], KEY] = None
    message, _ = _fail(dirs, _parquet(df, dirs), suite_path=str(minimal_suite))
    assert (f"contract entity_keys_not_null(customer_id): customer_id: 2 of {ROWS} rows null (0.67%), "
            "e.g. [customer_id row 3, customer_id row 5]; next step: every row needs its entity key") in message
