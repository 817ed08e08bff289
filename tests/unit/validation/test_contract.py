"""The pipeline contract checks on real Arrow data and real files (no Airflow, no GX).

Chunked reading must give the same verdicts as a whole table (row numbers continue across chunks), every check
is reported (skipped ones with a reason), and the spec names a wrong parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlops_airflow.validation import CHECKS, build_spec, run_contract
from mlops_airflow.validation.reading import parquet_chunks, parquet_head, parquet_rows, repeated_csv_headers

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 3, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)


def _table(n: int = 100, **overrides: list) -> pa.Table:
    data = {
        "entity": list(range(n)),
        "ts": pa.array([START + timedelta(minutes=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "x": [float(i) for i in range(n)],
        "y": [i % 2 for i in range(n)],
    }
    data.update(overrides)
    return pa.table(data)


def _spec(**kwargs):
    params = {"entity_columns": ["entity"], "timestamp_column": "ts", "label_column": "y",
              "interval_start": START, "interval_end": START + timedelta(days=1), **kwargs}
    return build_spec(**params)


def _by_name(result: dict) -> dict[str, dict]:
    return {c["check"]: c for c in result["checks"]}


def test_every_check_reported_in_order_and_a_valid_table_passes() -> None:
    result = run_contract(_spec(), [_table()], now=NOW)
    assert [c["check"] for c in result["checks"]] == list(CHECKS)
    assert result["success"] and result["statistics"]["failed"] == 0 and result["rows"] == 100
    # no feature_columns and no suite columns: no expected list, so extra columns are not judged (said why)
    assert _by_name(result)["extra_columns"]["status"] == "skipped"
    assert "no expected column list" in _by_name(result)["extra_columns"]["detail"]


def test_chunks_give_the_same_verdicts_and_continue_row_numbers(tmp_path: Path) -> None:
    x = [float(i) for i in range(100)]
    x[75] = float("inf")
    table = _table(x=x)
    path = tmp_path / "b.parquet"
    pq.write_table(table, path, row_group_size=10)
    whole = run_contract(_spec(), [table], now=NOW)
    streamed = run_contract(_spec(), parquet_chunks([path], chunk_rows=7), now=NOW)
    assert whole["checks"] == streamed["checks"]
    assert _by_name(streamed)["features_finite"]["examples"] == ["x row 75: inf"]
    assert parquet_rows([path]) == 100 and parquet_head([path], 25).num_rows == 25


def test_bool_label_is_binary_and_a_string_label_is_not() -> None:
    ok = run_contract(_spec(), [_table(y=[i % 3 == 0 for i in range(100)])], now=NOW)
    assert _by_name(ok)["label_in_domain"]["status"] == "pass"
    bad = run_contract(_spec(), [_table(y=["yes" if i % 2 else "no" for i in range(100)])], now=NOW)
    check = _by_name(bad)["label_in_domain"]
    assert check["status"] == "fail" and check["count"] == 100 and check["examples"][0] == "row 0: 'no'"


def test_regression_label_constant_and_infinite() -> None:
    spec = _spec(task_type="regression")
    constant = _by_name(run_contract(spec, [_table(y=[3.5] * 100)], now=NOW))
    assert constant["label_in_domain"]["status"] == "pass"
    assert constant["label_not_constant"]["status"] == "fail" and "AUC" not in constant["label_not_constant"]["detail"]
    inf = _by_name(run_contract(spec, [_table(y=[float("inf")] + [1.0 * i for i in range(99)])], now=NOW))
    assert inf["label_in_domain"]["status"] == "fail" and inf["label_in_domain"]["examples"] == ["row 0: inf"]


def test_timestamps_ns_and_other_timezones_are_compared_as_instants() -> None:
    ts = pa.array([START + timedelta(hours=i) for i in range(30)], pa.timestamp("ns", tz="UTC"))
    ts = ts.cast(pa.timestamp("ns", tz="Asia/Tokyo"))  # the same instants, shown in another zone
    result = _by_name(run_contract(_spec(), [_table(30, entity=list(range(30)), x=[1.0] * 30,
                                                    y=[i % 2 for i in range(30)], ts=ts)], now=NOW))
    # 2026-11-01T00:00Z + 29 h = 2026-11-02T05:00Z: inside the day + 6 h of lateness
    assert result["timestamp_in_interval"]["status"] == "pass"
    late = _by_name(run_contract(_spec(allowed_lateness=timedelta(hours=1)), [_table(30, entity=list(range(30)),
                    x=[1.0] * 30, y=[i % 2 for i in range(30)], ts=ts)], now=NOW))
    assert late["timestamp_in_interval"]["count"] == 4  # 02:00 .. 05:00 after end + 1 h


def test_naive_timestamps_and_missing_columns_fail_by_name() -> None:
    naive = pa.array([datetime(2026, 11, 1) + timedelta(minutes=i) for i in range(100)], pa.timestamp("us"))
    result = _by_name(run_contract(_spec(), [_table(ts=naive)], now=NOW))
    assert result["timestamp_present"]["status"] == "fail" and "not a timezone-aware" in result[
        "timestamp_present"]["detail"]
    assert result["timestamp_not_future"]["status"] == "skipped"
    missing = _by_name(run_contract(_spec(feature_columns=["x", "z"]), [_table().drop_columns(["entity", "y"])],
                                    now=NOW))
    assert missing["entity_keys_present"]["status"] == "fail" and missing["entity_keys_present"]["examples"] == [
        "entity"]
    assert missing["label_present"]["status"] == "fail"
    assert missing["features_not_null"]["examples"] == ["z: missing"]


def test_a_column_missing_from_one_file_counts_as_nulls(tmp_path: Path) -> None:
    pq.write_table(_table(50), tmp_path / "a.parquet")
    pq.write_table(_table(50).drop_columns(["x"]), tmp_path / "b.parquet")
    files = sorted(tmp_path.glob("*.parquet"))
    result = _by_name(run_contract(_spec(max_null_share=0.4), parquet_chunks(files), now=NOW))
    assert result["features_not_null"]["status"] == "fail"
    assert result["features_not_null"]["examples"] == ["x: 50/100 null (50.00%)"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval_end": "2026-10-01T00:00:00+00:00"}, "interval_end .* is before interval_start"),
        ({"interval_start": "yesterday"}, "interval_start='yesterday' is not an ISO 8601 timestamp"),
        ({"clock_skew": -5}, "clock_skew=-5 is negative"),
        ({"extra_columns": "fail"}, "extra_columns='fail' needs an expected column list"),
        ({"feature_columns": "['x', 1]"}, "feature_columns must be a list of column names"),
    ],
)
def test_spec_names_the_wrong_parameter(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _spec(**kwargs)


def test_spec_accepts_rendered_templates() -> None:
    spec = _spec(interval_start="2026-11-01 00:00:00+00:00", interval_end="2026-11-02T00:00:00Z", label_column="",
                 feature_columns="['x']", task_type="classification")
    assert spec.label_column is None and spec.feature_columns == ("x",) and spec.task_type == "binary_classification"
    assert spec.extra_policy == "fail"  # feature_columns given: the expected list is known


def test_repeated_csv_headers(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text('a,b\n1,2\n"x\ny",3\na,b\n4,5\n a , b \n')
    assert repeated_csv_headers(path) == (2, [5, 7])  # the quoted newline makes row 3 two lines
    path.write_text("a,b\n1,2\n")
    assert repeated_csv_headers(path) == (0, [])
