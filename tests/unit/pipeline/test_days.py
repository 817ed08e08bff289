"""A bad ``day`` param fails fast (``AirflowFailException``: no retries), naming the param, its value, today's date
and what to pass, before anything is landed, versioned or announced."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException
from mlops_airflow.pipeline.days import check_day, land_day

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 3, 17, 30, tzinfo=UTC)


def test_a_past_day_and_no_day_pass():
    assert check_day({"day": "2026-11-01"}, now=NOW) == date(2026, 11, 1)
    assert check_day({"day": "2026-12-02", "training_window_days": 7}, now=NOW) == date(2026, 12, 2)
    assert check_day({}, now=NOW) is None and check_day({"day": None, "training_window_days": None}, now=NOW) is None
    assert check_day({"day": date(2026, 12, 1)}, now=NOW) == date(2026, 12, 1)
    # No day: the newest complete day at the logical date (yesterday for a run started now).
    assert land_day({}, None, now=NOW) == date(2026, 12, 2)
    assert land_day({}, datetime(2026, 11, 5, tzinfo=UTC), now=NOW) == date(2026, 11, 5)
    assert land_day({"day": "2026-11-03"}, None, now=NOW) == date(2026, 11, 3)


def test_a_day_in_the_future_is_refused_naming_today_and_what_to_pass():
    with pytest.raises(AirflowFailException) as info:
        check_day({"day": "2027-01-15"}, now=NOW)
    text = str(info.value)
    assert "param day=2027-01-15 is in the future" in text and "today is 2026-12-03 UTC" in text
    assert "Pass a day up to 2026-12-02" in text and "Nothing was landed, versioned or announced" in text


def test_today_is_refused_its_training_window_would_end_in_the_future():
    with pytest.raises(AirflowFailException, match=r"param day=2026-12-03 is today .*training window ending "
                                                   r"2026-12-04T00:00:00\+00:00 are not complete.*up to 2026-12-02"):
        check_day({"day": "2026-12-03"}, now=NOW)
    # Monitoring scores today's window as it stands: only a future day is refused there.
    assert check_day({"day": "2026-12-03"}, now=NOW, complete=False) == date(2026, 12, 3)
    with pytest.raises(AirflowFailException, match="in the future.*up to 2026-12-03"):
        check_day({"day": "2026-12-04"}, now=NOW, complete=False)


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2026-11-01T00:00", "01/11/2026"])
def test_an_unparseable_day_is_refused(value):
    with pytest.raises(AirflowFailException, match=rf"param day='{value}' is not a date \(YYYY-MM-DD\); today is "
                                                   r"2026-12-03 UTC"):
        check_day({"day": value}, now=NOW)


@pytest.mark.parametrize("value", [0, -3, "abc", 1.5])
def test_a_bad_training_window_is_refused(value):
    with pytest.raises(AirflowFailException, match=rf"param training_window_days={value!r} is not a whole number"):
        check_day({"day": "2026-11-01", "training_window_days": value}, now=NOW)


def test_land_batch_refuses_a_future_day_before_landing_anything(tmp_path):
    """The DAG's first task: no retry (AirflowFailException), nothing under the data root's landing folder."""
    from airflow.sdk import DAG
    from conftest import ROOT
    from mlops_airflow.pipeline import ModelSpec, continuous_training

    spec = ModelSpec(name="m1", label="y", entity_columns=["account_id"], features=["x1", "x2", "x3"],
                     source=f"{ROOT / 'tests' / 'user_dag' / 'my_model.py'}:daily_batch")
    with DAG("t_days", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        continuous_training(spec, data_root=tmp_path.as_uri())
    land = dag.get_task("land_batch")
    today = datetime.now(UTC).date()
    future, past = (today + timedelta(days=400)).isoformat(), today - timedelta(days=30)
    with pytest.raises(AirflowFailException, match=f"param day={future} is in the future"):
        land.python_callable({}, params={"day": future})
    with pytest.raises(AirflowFailException, match="param day='tomorrow' is not a date"):
        land.python_callable({}, params={"day": "tomorrow"})
    assert not (tmp_path / "landing").exists()
    landed = land.python_callable({}, params={"day": past.isoformat(), "training_window_days": 3})
    assert landed["path"] == f"{tmp_path.as_uri()}/landing/{past}.parquet" and landed["file_name"] == f"{past}.parquet"
    assert landed["train_from"] == f"{past - timedelta(days=2)}T00:00:00+00:00"
