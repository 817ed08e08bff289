"""DataValidationGateOperator against real Great Expectations 1.x, pandas and pyarrow (no mocks).

Every failing case asserts that the error names the cause and that the batch is kept, byte for byte, in the
quarantine folder (nothing lost). GX's import is the slow part (~10 s, once per session); each validation takes
well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlops_airflow.exceptions import DataValidationError, MLOpsError
from mlops_airflow.operators.data_validation import DataValidationGateOperator

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "include/gx/customer_events.json"
RUN_ID = "scheduled__2026-11-01T00:00:00+00:00"
ROWS = 400


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
    return gen.generate_batch(date(2026, 11, 1), n_customers=ROWS)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("landing", "quarantine", "results")}
    out["landing"].mkdir()
    return out


def _operator(dirs: dict[str, Path], data_path: Path, **kwargs: Any) -> DataValidationGateOperator:
    return DataValidationGateOperator(
        task_id="validate",
        data_path=str(data_path),
        suite_path=str(SUITE),
        quarantine_dir=str(dirs["quarantine"]),
        results_dir=str(dirs["results"]),
        key_columns=["customer_id"],
        **kwargs,
    )


def _write_parquet(df: Any, path: Path) -> Path:
    gen.write_batch(df, path)
    return path


def _fail(op: DataValidationGateOperator) -> str:
    with pytest.raises(DataValidationError) as info:
        op.execute(_context())
    return str(info.value)


def _report(case: str, message: str) -> None:
    """One row of the bad-input table (``pytest -rP`` shows it): the case and the exact message."""
    print(f"BAD-INPUT | {case} (validation gate) | {message}")


def _assert_quarantined(dirs: dict[str, Path], original: Path, md5: str, message: str) -> dict[str, Any]:
    """The batch left landing and sits, identical, in exactly one quarantine folder with its manifest."""
    assert not original.exists(), "the original should have been moved"
    folders = [p for p in dirs["quarantine"].iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    kept = folders[0] / original.name
    assert _md5(kept) == md5, "the quarantined copy differs from the landed batch"
    assert folders[0].name.endswith("_" + md5[:12])
    assert f"Batch quarantined to {kept}." in message
    manifest = json.loads((folders[0] / "quarantine.json").read_text())
    assert manifest["source"] == original.absolute().as_uri()  # a URI (the batch may be on an object store)
    assert manifest["dag_id"] == "ingest_dag" and manifest["run_id"] == RUN_ID
    assert manifest["reasons"] and manifest["verdict"]["passed"] is False
    result_path = dirs["results"] / "ingest_dag" / "scheduled__2026-11-01T00_00_00_00_00" / "validate"
    assert f"Full result: {result_path / 'validation_result.json'}" in message
    assert (result_path / "validation_summary.html").is_file()
    assert "Next step:" in message
    return manifest


def _fail_parquet(dirs: dict[str, Path], df: Any, name: str = "batch.parquet") -> str:
    path = _write_parquet(df, dirs["landing"] / name)
    md5 = _md5(path)
    message = _fail(_operator(dirs, path))
    _assert_quarantined(dirs, path, md5, message)
    assert message.startswith(f"Data validation failed for {name} (md5 {md5[:12]}")
    return message


# ---------------------------------------------------------------- passing batches


def test_valid_parquet_passes(dirs: dict[str, Path], frame: Any) -> None:
    path = _write_parquet(frame, dirs["landing"] / "batch.parquet")
    md5 = _md5(path)

    verdict = _operator(dirs, path).execute(_context())

    assert verdict["passed"] is True and verdict["reasons"] == []
    assert verdict["data_md5"] == md5 and verdict["quarantined_to"] is None
    # 25 suite expectations + compound uniqueness (the other key checks equal the suite's own and are not doubled)
    assert verdict["metrics"] == {"evaluated": 26, "successful": 26, "failed": 0, "rows": ROWS}
    result_file = Path(verdict["evidence_uri"].removeprefix("file://"))
    assert result_file == dirs["results"] / "ingest_dag" / "scheduled__2026-11-01T00_00_00_00_00" / "validate" / (
        "validation_result.json"
    )
    result = json.loads(result_file.read_text())
    assert result["success"] is True and result["batch"]["md5"] == md5
    assert "expect_compound_columns_to_be_unique" in {r["expectation_config"]["type"] for r in result["results"]}
    assert "PASSED" in Path(verdict["summary_uri"].removeprefix("file://")).read_text()
    json.dumps(verdict)  # XCom-safe
    assert path.exists() and _md5(path) == md5
    assert not dirs["quarantine"].exists() or not any(dirs["quarantine"].iterdir())


def test_valid_csv_passes_and_plain_dict_context(dirs: dict[str, Path], frame: Any) -> None:
    path = dirs["landing"] / "batch.csv"
    frame.to_csv(path, index=False)  # timestamps as "2026-11-01 00:00:07+00:00"

    verdict = _operator(dirs, path).execute({"dag_id": "plain", "run_id": "manual run 1"})

    assert verdict["passed"] is True, verdict["reasons"]
    assert verdict["metrics"]["rows"] == ROWS
    assert "/plain/manual_run_1/manual/validation_result.json" in verdict["evidence_uri"]


def test_valid_parquet_directory_passes(dirs: dict[str, Path], frame: Any) -> None:
    folder = dirs["landing"] / "day=2026-11-01"
    _write_parquet(frame.iloc[:200], folder / "part-0.parquet")
    _write_parquet(frame.iloc[200:], folder / "part-1.parquet")

    verdict = _operator(dirs, folder).execute(_context())

    assert verdict["passed"] is True and verdict["metrics"]["rows"] == ROWS
    expected = hashlib.md5(
        "\n".join(sorted(_md5(p) for p in folder.glob("*.parquet"))).encode(), usedforsecurity=False
    ).hexdigest()
    assert verdict["data_md5"] == expected


# ---------------------------------------------------------------- GX failures


def test_missing_column(dirs: dict[str, Path], frame: Any) -> None:
    message = _fail_parquet(dirs, frame.drop(columns=["monthly_charges"]))
    _report("missing column", message)
    assert "expect_column_to_exist(monthly_charges): column missing" in message
    # expectations on the missing column could not run; they come after the cause
    assert message.index("column missing") < message.index("could not run")
    assert (
        "expect_column_values_to_be_between(monthly_charges): could not run, column monthly_charges missing" in message
    )


def test_wrong_dtype(dirs: dict[str, Path], frame: Any) -> None:
    message = _fail_parquet(dirs, frame.assign(monthly_charges=frame["monthly_charges"].astype(str)))
    _report("wrong dtype", message)
    assert f"expect_column_values_to_be_in_type_list(monthly_charges): {ROWS} unexpected (100.00%)" in message


def test_nulls_in_key(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.assign(customer_id=frame["customer_id"].astype("Int64"))
    df.loc[[3, 5, 7], "customer_id"] = None
    message = _fail_parquet(dirs, df)
    _report("nulls in an entity key", message)
    assert "expect_column_values_to_not_be_null(customer_id): 3 unexpected (0.75%)" in message
    # GX itself reports the nullable Int64 column's type as "int64"; the message names the real dtype
    assert 'expect_column_values_to_be_in_type_list(customer_id): column dtype is Int64, expected ["int64"]' in message


def test_duplicate_keys(dirs: dict[str, Path], frame: Any) -> None:
    import pandas as pd

    df = pd.concat([frame, frame.iloc[:2]], ignore_index=True)
    message = _fail_parquet(dirs, df)
    _report("duplicate entity/timestamp rows", message)
    assert "1 of 26 expectations failed" in message
    assert "expect_compound_columns_to_be_unique(customer_id, event_timestamp): 4 unexpected" in message
    assert "e.g. [(1, '2026-11-01T00:" in message  # a duplicated key, shown once


def test_out_of_range(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.copy()
    df.loc[0, "monthly_charges"] = -5.0
    df.loc[1, "monthly_charges"] = 900.1
    df.loc[2, "churned"] = 2
    message = _fail_parquet(dirs, df)
    _report("out-of-range values", message)
    assert "2 of 26 expectations failed" in message
    assert "expect_column_values_to_be_between(monthly_charges): 2 unexpected (0.50%), e.g. [-5.0, 900.1]" in message
    assert "expect_column_values_to_be_in_set(churned): 1 unexpected" in message
    assert f"adjust the suite {SUITE}" in message


# ---------------------------------------------------------------- structural failures


def test_zero_rows(dirs: dict[str, Path], frame: Any) -> None:
    message = _fail_parquet(dirs, frame.iloc[:0])
    _report("empty file (zero rows)", message)
    assert "zero rows in batch.parquet" in message


def test_empty_file(dirs: dict[str, Path]) -> None:
    path = dirs["landing"] / "batch.parquet"
    path.write_bytes(b"")
    md5 = _md5(path)
    message = _fail(_operator(dirs, path))
    _report("empty file (0 bytes)", message)
    _assert_quarantined(dirs, path, md5, message)
    assert "empty file (0 bytes)" in message


def test_corrupt_parquet(dirs: dict[str, Path]) -> None:
    path = dirs["landing"] / "batch.parquet"
    path.write_bytes(os.urandom(4096))
    md5 = _md5(path)
    message = _fail(_operator(dirs, path))
    _report("corrupt Parquet", message)
    _assert_quarantined(dirs, path, md5, message)
    assert "corrupt Parquet: batch.parquet:" in message and "magic bytes" in message
    assert "Traceback" not in message and ".." not in message
    assert message.endswith("Next step: fix the upstream export and re-land the batch.")


def test_naive_timestamps_parquet(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.assign(event_timestamp=frame["event_timestamp"].dt.tz_localize(None))
    message = _fail_parquet(dirs, df)
    _report("timestamps without a timezone (Parquet)", message)
    assert "timestamps without a timezone in column event_timestamp: write them as UTC" in message


def test_invalid_csv_naive_timestamps(dirs: dict[str, Path], frame: Any) -> None:
    path = dirs["landing"] / "batch.csv"
    frame.assign(event_timestamp=frame["event_timestamp"].dt.tz_localize(None)).to_csv(path, index=False)
    md5 = _md5(path)
    message = _fail(_operator(dirs, path))
    _report("timestamps without a timezone (CSV)", message)
    _assert_quarantined(dirs, path, md5, message)
    assert "timestamps without a timezone in column event_timestamp: write them as UTC" in message
    assert f"({ROWS} of {ROWS} values" in message


def test_invalid_csv_values(dirs: dict[str, Path], frame: Any) -> None:
    path = dirs["landing"] / "batch.csv"
    df = frame.copy()
    df.loc[4, "support_calls"] = 99
    df.to_csv(path, index=False)
    md5 = _md5(path)
    message = _fail(_operator(dirs, path))
    _assert_quarantined(dirs, path, md5, message)
    assert "expect_column_values_to_be_between(support_calls): 1 unexpected (0.25%), e.g. [99]" in message


def test_missing_file_then_retry_points_to_quarantine(dirs: dict[str, Path]) -> None:
    path = dirs["landing"] / "batch.parquet"
    message = _fail(_operator(dirs, path))
    assert f"file missing: {path}" in message and "Nothing to quarantine." in message

    path.write_bytes(os.urandom(64))  # a first try quarantines a corrupt file ...
    _fail(_operator(dirs, path))
    folder = next(dirs["quarantine"].iterdir())
    message = _fail(_operator(dirs, path))  # ... and the retry says where it went
    assert f"file missing: {path} (an earlier try quarantined it to {folder})" in message


# ---------------------------------------------------------------- options and configuration


def test_directory_quarantined_whole(dirs: dict[str, Path], frame: Any) -> None:
    folder = dirs["landing"] / "day=2026-11-01"
    _write_parquet(frame.iloc[:200], folder / "part-0.parquet")
    bad = frame.iloc[200:].copy()
    bad.loc[bad.index[0], "usage_hours"] = 1000.0
    _write_parquet(bad, folder / "part-1.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    md5s = {p.name: _md5(p) for p in folder.iterdir()}

    message = _fail(_operator(dirs, folder))

    assert "expect_column_values_to_be_between(usage_hours): 1 unexpected" in message
    assert not folder.exists()
    kept = next(dirs["quarantine"].iterdir()) / folder.name
    assert {p.name: _md5(p) for p in kept.iterdir()} == md5s


def test_no_quarantine_leaves_batch(dirs: dict[str, Path], frame: Any) -> None:
    df = frame.copy()
    df.loc[0, "tenure_months"] = -1.0
    path = _write_parquet(df, dirs["landing"] / "batch.parquet")
    md5 = _md5(path)
    message = _fail(_operator(dirs, path, quarantine_on_failure=False))
    assert f"Batch left in place at {path}" in message
    assert _md5(path) == md5 and not dirs["quarantine"].exists()


def test_quarantine_never_overwrites(dirs: dict[str, Path]) -> None:
    path = dirs["landing"] / "batch.parquet"
    for _ in range(2):  # the same bytes twice (often within the same second): each gets its own folder
        path.write_bytes(b"not parquet")
        _fail(_operator(dirs, path))
    kept = sorted(dirs["quarantine"].glob("*/batch.parquet"))
    assert len(kept) == 2 and kept[0].parent != kept[1].parent
    assert {_md5(p) for p in kept} == {hashlib.md5(b"not parquet", usedforsecurity=False).hexdigest()}


def test_bad_suite_does_not_touch_batch(dirs: dict[str, Path], frame: Any, tmp_path: Path) -> None:
    path = _write_parquet(frame, dirs["landing"] / "batch.parquet")
    suite = tmp_path / "bad_suite.json"
    suite.write_text(json.dumps({"name": "bad", "expectations": [{"type": "expect_nothing", "kwargs": {}}]}))
    op = _operator(dirs, path)
    op.suite_path = str(suite)
    with pytest.raises(MLOpsError, match="cannot build expect_nothing") as info:
        op.execute(_context())
    assert not isinstance(info.value, DataValidationError)
    assert path.exists() and not dirs["quarantine"].exists()


def test_operator_shape_and_light_import() -> None:
    fields = DataValidationGateOperator.template_fields
    assert fields[:4] == ("data_path", "suite_path", "quarantine_dir", "results_dir")
    # the contract parameters are templated too (task_type is stored as model_task_type: BaseOperator.task_type is
    # Airflow's own property)
    assert {"key_columns", "timestamp_column", "interval_start", "interval_end", "label_column", "model_task_type",
            "feature_columns", "extra_columns"} <= set(fields)
    code = (
        "import sys, mlops_airflow.operators.data_validation\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'pyarrow', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
