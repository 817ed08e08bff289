"""DvcVersionDatasetOperator's schema check: a batch must have the dataset's columns and Arrow types.

Real git + DVC repositories with a local remote (the ``dvc_repo`` fixture); batches are real Parquet files.
"""

from __future__ import annotations

import subprocess
from datetime import date

import pytest
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator, parquet_columns, schema_differences

pytestmark = pytest.mark.unit


def _frame(generator, day: str):
    return generator.generate_batch(date.fromisoformat(day), n_customers=200)


def _write(df, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def _version(src, day: str, **kw) -> dict:
    from conftest import make_context

    return DvcVersionDatasetOperator(task_id="version", source_path=str(src), dataset_path="data/events",
                                     file_name=f"{day}.parquet", **kw).execute(make_context("version"))


def _state(repo) -> tuple[str, str, str]:
    """HEAD, the tracked pointer's content and the working-copy listing: what a failed check must not change."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
    pointer = (repo / "data/events.dvc").read_text() if (repo / "data/events.dvc").exists() else ""
    listing = sorted(p.name for p in (repo / "data/events").iterdir())
    return head, pointer, str(listing)


def test_schema_differences_ignores_order_and_names_every_change():
    old = {"id": "int64", "ts": "timestamp[us, tz=UTC]", "x": "double", "y": "int64"}
    assert schema_differences(old, dict(reversed(list(old.items())))) == {"missing": [], "extra": [], "retyped": []}
    new = {"ts": "timestamp[ns, tz=UTC]", "id": "int64", "x": "int64", "z": "string"}
    assert schema_differences(old, new) == {
        "missing": ["y"], "extra": ["z"],
        "retyped": ["ts: timestamp[us, tz=UTC] -> timestamp[ns, tz=UTC]", "x: double -> int64"],
    }


def test_incompatible_batch_is_refused_and_nothing_is_written(tmp_path, generator, dvc_repo):
    repo = dvc_repo["repo"]
    _version(_write(_frame(generator, "2026-11-01"), tmp_path / "in" / "d1.parquet"), "2026-11-01")
    before = _state(repo)
    bad = _frame(generator, "2026-11-02").drop(columns=["usage_hours"]).assign(
        support_calls=lambda d: d["support_calls"].astype("float64"), region="north")
    src = _write(bad, tmp_path / "in" / "d2.parquet")
    md5 = file_md5(src)
    with pytest.raises(DatasetVersionError) as err:
        _version(src, "2026-11-02")
    msg = str(err.value)
    print(f"BAD-INPUT | batch schema differs from the dataset (DVC versioning) | {msg}")
    assert "missing columns ['usage_hours']" in msg and "extra columns ['region']" in msg
    assert "retyped columns ['support_calls: int64 -> double']" in msg
    assert "data/events/2026-11-01.parquet" in msg and "Nothing was written or committed" in msg
    assert "new dataset" in msg  # the next step
    assert _state(repo) == before, "a refused batch must not be copied, added or committed"
    assert src.exists() and file_md5(src) == md5


def test_compatible_batch_in_another_column_order_is_versioned(tmp_path, generator, dvc_repo):
    _version(_write(_frame(generator, "2026-11-01"), tmp_path / "in" / "d1.parquet"), "2026-11-01")
    df = _frame(generator, "2026-11-02")
    v2 = _version(_write(df[list(reversed(df.columns))], tmp_path / "in" / "d2.parquet"), "2026-11-02")
    assert v2["new_commit"] and v2["rows"] == 400


def test_compared_with_the_newest_file_and_schema_check_false_lets_an_intended_change_through(
        tmp_path, generator, dvc_repo):
    _version(_write(_frame(generator, "2026-11-01"), tmp_path / "in" / "d1.parquet"), "2026-11-01")
    wider = _frame(generator, "2026-11-02").assign(region="north")
    with pytest.raises(DatasetVersionError, match=r"extra columns \['region'\]"):
        _version(_write(wider, tmp_path / "in" / "d2.parquet"), "2026-11-02")
    v2 = _version(tmp_path / "in" / "d2.parquet", "2026-11-02", schema_check=False)
    assert v2["new_commit"]
    # The newest file (by name) now has `region`: a batch like it passes, one like the first day's fails.
    _version(_write(_frame(generator, "2026-11-03").assign(region="south"), tmp_path / "in" / "d3.parquet"),
             "2026-11-03")
    with pytest.raises(DatasetVersionError, match=r"newest file data/events/2026-11-03\.parquet\): missing columns "
                                                  r"\['region'\]"):
        _version(_write(_frame(generator, "2026-11-04"), tmp_path / "in" / "d4.parquet"), "2026-11-04")
    assert not (dvc_repo["repo"] / "data/events/2026-11-04.parquet").exists()


def test_timestamp_unit_change_is_a_retyped_column(tmp_path, generator, dvc_repo):
    _version(_write(_frame(generator, "2026-11-01"), tmp_path / "in" / "d1.parquet"), "2026-11-01")
    df = _frame(generator, "2026-11-02")
    df["event_timestamp"] = df["event_timestamp"].dt.as_unit("ns")
    with pytest.raises(DatasetVersionError, match=r"retyped columns \['event_timestamp: timestamp\[us, tz=UTC\] -> "
                                                  r"timestamp\[ns, tz=UTC\]'\]"):
        _version(_write(df, tmp_path / "in" / "d2.parquet"), "2026-11-02")


def test_single_file_dataset_is_compared_with_the_file_it_replaces(tmp_path, generator, dvc_repo, context):
    def op(src):
        return DvcVersionDatasetOperator(task_id="v", source_path=str(src), dataset_path="data/one.parquet",
                                         overwrite=True)

    first = op(_write(_frame(generator, "2026-11-01"), tmp_path / "a.parquet")).execute(context())
    same_schema = op(_write(_frame(generator, "2026-11-02"), tmp_path / "b.parquet")).execute(context())
    assert same_schema["md5"] != first["md5"]
    narrower = _frame(generator, "2026-11-03").drop(columns=["churned"])
    with pytest.raises(DatasetVersionError, match=r"compared with data/one\.parquet, the file it replaces\): "
                                                  r"missing columns \['churned'\]"):
        op(_write(narrower, tmp_path / "c.parquet")).execute(context())
    assert file_md5(dvc_repo["repo"] / "data/one.parquet") == same_schema["md5"]


def test_newest_file_skips_hidden_and_excluded_files(tmp_path, generator, dvc_repo):
    root = dvc_repo["repo"] / "data/events"
    df = _frame(generator, "2026-11-01")
    for name in ("2026-11-01.parquet", "2026-11-02.parquet", ".2026-11-09.parquet", "_tmp.parquet"):
        _write(df, root / name)
    hook = DvcHook()
    assert hook.newest_file("data/events").name == "2026-11-02.parquet"
    assert hook.newest_file("data/events", exclude=root / "2026-11-02.parquet").name == "2026-11-01.parquet"
    assert hook.newest_file("data/nothing") is None
    assert parquet_columns(root / "2026-11-01.parquet")["customer_id"] == "int64"
