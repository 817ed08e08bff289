"""Feast operators against a real feature repository (the bundled one) inside a real DVC repository."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, timedelta

import pytest
from mlops_airflow import storage
from mlops_airflow.exceptions import DatasetVersionError, FeatureStoreError
from mlops_airflow.operators.dvc_version import DvcVersionDatasetOperator
from mlops_airflow.operators.feast_features import (
    FeastApplyOperator,
    FeastMaterializationRecordOperator,
    FeastMaterializationWindowsOperator,
    FeastMaterializeOperator,
    FeastTrainingSetOperator,
    FeatureSkewCheckOperator,
    parse_instant,
    plan_windows,
)

pytestmark = pytest.mark.unit
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
# The label is the spec's (ModelSpec.label) or the feature service's 'label' tag; the churn service has no tag.
TrainingSet = __import__("functools").partial(FeastTrainingSetOperator, label_column="churned")


@pytest.fixture(scope="module")
def feature_repo(generator, tmp_path_factory):
    """The bundled feature definitions in a DVC repo holding two versioned daily batches; feast applied."""
    from conftest import dvc_conn, make_context, make_dvc_repo

    tmp_path = tmp_path_factory.mktemp("feast")
    info = make_dvc_repo(tmp_path)
    os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = dvc_conn(info)
    context = make_context
    repo = info["repo"]
    for name in ("feature_store.yaml", "features.py", ".feastignore"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    versions = []
    for day in ("2026-11-01", "2026-11-02"):
        df = generator.generate_batch(date.fromisoformat(day), n_customers=200)
        src = generator.write_batch(df, tmp_path / "landing" / f"{day}.parquet")
        versions.append(DvcVersionDatasetOperator(
            task_id="v", source_path=str(src), dataset_path="data/customer_events", file_name=f"{day}.parquet",
        ).execute(context()))
    FeastApplyOperator(task_id="apply").execute(context())
    yield {"repo": repo, "versions": versions, "dvc_conn": dvc_conn(info)}
    os.environ.pop("AIRFLOW_CONN_FEAST_DEFAULT", None)
    os.environ.pop("AIRFLOW_CONN_DVC_DEFAULT", None)


@pytest.fixture(autouse=True)
def _connections(request):
    if "feature_repo" in request.fixturenames:
        repo = request.getfixturevalue("feature_repo")
        os.environ["AIRFLOW_CONN_DVC_DEFAULT"] = repo["dvc_conn"]
        os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps(
            {"conn_type": "feast", "extra": {"repo_path": str(repo["repo"])}})


def test_materialize_then_training_set_is_point_in_time_and_reproducible(feature_repo, tmp_path, context):
    window = FeastMaterializeOperator(
        task_id="m", start="2026-11-02T00:00:00+00:00", end="2026-11-03T00:00:00+00:00", overlap=timedelta(hours=6),
    ).execute(context())
    assert window["start"] == "2026-11-01T18:00:00+00:00" and window["feature_views"] == ["customer_activity"]

    v1, v2 = feature_repo["versions"]
    op = TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                  output_dir=str(tmp_path / "sets"))
    first = op.execute(context())
    assert first["rows"] == 400 and first["features"] == sorted(first["features"]) and len(first["features"]) == 5
    assert first["dataset"]["rev"] == v2["rev"] and len(first["definitions_hash"]) == 64
    again = op.execute(context(try_number=2))
    assert again["hash"] == first["hash"] and again["uri"] == first["uri"]
    # An older data version gives its own (smaller) training set, rebuilt from that revision.
    old = TrainingSet(task_id="ts", dataset_version=v1, feature_service="churn_model_v1",
                                   output_dir=str(tmp_path / "sets")).execute(context())
    assert old["rows"] == 200 and old["hash"] != first["hash"]

    import pandas as pd

    df = storage.read_table(first["uri"])
    raw = pd.read_parquet(feature_repo["repo"] / "data" / "customer_events")
    merged = df.merge(raw, on=["customer_id", "event_timestamp"], suffixes=("", "_raw"))
    assert (merged["monthly_charges"] == merged["monthly_charges_raw"]).all()  # point-in-time = same event


def test_training_window_keeps_only_recent_entity_rows_and_is_reproducible(feature_repo, tmp_path, context):
    import pandas as pd
    from mlops_airflow.record import reproduction_inputs

    v2 = feature_repo["versions"][1]
    window = {"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-03T00:00:00+00:00"}
    op = TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                  output_dir=str(tmp_path / "sets"), entity_start=window["start"],
                                  entity_end=window["end"])
    recent = op.execute(context())
    assert recent["rows"] == 200 and recent["entity_window"] == window
    assert (storage.read_table(recent["uri"])["event_timestamp"] >= pd.Timestamp(window["start"])).all()
    # The record keeps the window and the reproduce DAG passes it back: the same rows, the same hash.
    inputs = reproduction_inputs({"features": {"feature_service": "churn_model_v1"}, "training_set": recent,
                                  "dataset": {k: v2[k] for k in ("repo", "rev", "path", "md5")}})
    rebuilt = FeastTrainingSetOperator(
        task_id="ts", dataset_version=v2, feature_service="churn_model_v1", label_column=inputs["label"],
        output_dir=str(tmp_path / "again"),
        entity_start=inputs["entity_window"]["start"], entity_end=inputs["entity_window"]["end"]).execute(context())
    assert rebuilt["hash"] == recent["hash"]
    # Unset bounds (None, or a template that rendered None as text) = all history.
    everything = TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                          output_dir=str(tmp_path / "sets"), entity_start="None",
                                          entity_end=None).execute(context())
    assert everything["rows"] == 400 and everything["entity_window"] is None
    with pytest.raises(FeatureStoreError, match="no rows in the training window .* Widen the window"):
        TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                 output_dir=str(tmp_path / "sets"), entity_start="2027-01-01T00:00:00+00:00",
                                 ).execute(context())
    with pytest.raises(ValueError, match="must be before"):
        TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                 output_dir=str(tmp_path / "sets"), entity_start=window["end"],
                                 entity_end=window["start"]).execute(context())


def test_unknown_feature_service_names_the_known_ones(feature_repo, tmp_path, context):
    v = feature_repo["versions"][0]
    with pytest.raises(FeatureStoreError, match=r"'no_such_service' does not exist.*churn_model_v1") as err:
        TrainingSet(task_id="ts", dataset_version=v, feature_service="no_such_service",
                                 output_dir=str(tmp_path / "sets")).execute(context())
    print(f"BAD-INPUT | Feast feature service that does not exist | {err.value}")
    assert "run the feast apply DAG" in str(err.value)
    assert not (tmp_path / "sets").exists(), "nothing may be written for an unknown service"
    with pytest.raises(FeatureStoreError, match=r"'no_such_service' does not exist"):
        FeatureSkewCheckOperator(task_id="skew", feature_service="no_such_service",
                                 report_dir=str(tmp_path / "skew")).execute(context())
    assert not (tmp_path / "skew").exists()


def _bad_version(feature_repo, tmp_path, context, name: str, df) -> dict:
    """Version ``df`` as its own single-file dataset in the feature repo's DVC repository."""
    src = tmp_path / f"{name}.parquet"
    df.to_parquet(src, index=False)
    return DvcVersionDatasetOperator(task_id="v", source_path=str(src),
                                     dataset_path=f"data/entity_cases/{name}.parquet").execute(context())


def _null_keys(df, rows: list[int]):
    df = df.astype({"customer_id": "Int64"})
    df.loc[rows, "customer_id"] = None
    return df


@pytest.mark.parametrize(
    ("case", "mutate", "expected"),
    [
        ("missing column", lambda df: df.drop(columns=["churned"]), r"lacks entity/label columns \['churned'\]"),
        ("nulls in an entity key", lambda df: _null_keys(df, [3, 5]), r"2 of 200 rows have a null entity key"),
        ("timestamps without a timezone",
         lambda df: df.assign(event_timestamp=df["event_timestamp"].dt.tz_localize(None)),
         r"timestamps without a timezone \(dtype datetime64"),
        ("duplicate entity/timestamp rows", lambda df: __import__("pandas").concat([df, df.iloc[:2]]),
         r"4 rows share an entity key and timestamp"),
        ("empty file (zero rows)", lambda df: df.iloc[:0], r"has no rows: no training set was built"),
    ],
)
def test_training_set_rejects_bad_entity_rows_and_keeps_the_version(feature_repo, tmp_path, context, case, mutate,
                                                                      expected):
    """Bad entity rows in a data version: a clear error, nothing written, the version stays in DVC."""
    import pandas as pd
    from mlops_airflow.hooks.dvc_repo import DvcHook

    v1 = feature_repo["versions"][0]
    good = pd.read_parquet(feature_repo["repo"] / "data" / "customer_events" / "2026-11-01.parquet")
    name = case.split()[0] + "_" + case.split()[-1].strip("()")
    version = _bad_version(feature_repo, tmp_path, context, name, mutate(good.reset_index(drop=True)))
    assert version["rev"] != v1["rev"]
    out = tmp_path / "sets"
    with pytest.raises(FeatureStoreError, match=expected) as err:
        TrainingSet(task_id="ts", dataset_version=version, feature_service="churn_model_v1",
                                 output_dir=str(out)).execute(context())
    message = str(err.value)
    print(f"BAD-INPUT | {case} (training-set entity rows) | {message}")
    assert version["path"] in message and version["rev"][:12] in message
    assert not out.exists(), "a rejected training set must not be written"
    # Nothing lost: the bad version stays reachable at its revision, byte for byte.
    assert DvcHook().read_dvc_file(version["path"], version["rev"])["md5"] == version["md5"]


def test_training_set_from_a_corrupt_parquet_version(feature_repo, tmp_path, context):
    from mlops_airflow.hooks.dvc_repo import DvcHook

    # Our versioning operator refuses corrupt Parquet; a version made by another tool can still hold one.
    path = "data/entity_cases/corrupt.parquet"
    (feature_repo["repo"] / path).parent.mkdir(parents=True, exist_ok=True)
    (feature_repo["repo"] / path).write_bytes(os.urandom(4096))
    version = DvcHook().version_path(path, "a corrupt batch versioned by another tool")
    with pytest.raises(FeatureStoreError, match=r"corrupt\.parquet@\w{12} is not readable Parquet") as err:
        TrainingSet(task_id="ts", dataset_version=version, feature_service="churn_model_v1",
                                 output_dir=str(tmp_path / "sets")).execute(context())
    print(f"BAD-INPUT | corrupt Parquet (training-set entity rows) | {err.value}")
    assert not (tmp_path / "sets").exists()
    assert DvcHook().read_dvc_file(version["path"], version["rev"])["md5"] == version["md5"]


def test_training_set_for_a_revision_that_does_not_exist(feature_repo, tmp_path, context):
    bogus = {**feature_repo["versions"][0], "rev": "0" * 40}
    with pytest.raises(DatasetVersionError, match=r"revision '0{40}' does not exist") as err:
        TrainingSet(task_id="ts", dataset_version=bogus, feature_service="churn_model_v1",
                                 output_dir=str(tmp_path / "sets")).execute(context())
    print(f"BAD-INPUT | DVC revision that does not exist (training set) | {err.value}")
    assert not (tmp_path / "sets").exists()


def test_corrupt_file_in_the_offline_source_stops_the_window_and_writes_nothing(feature_repo, context):
    source = feature_repo["repo"] / "data" / "customer_events"
    FeastMaterializeOperator(task_id="m", start="2026-11-01T00:00:00+00:00",
                             end="2026-11-03T00:00:00+00:00").execute(context())
    before = _online(feature_repo["repo"])
    corrupt = source / "2026-11-02T99.parquet"
    corrupt.write_bytes(os.urandom(2048))
    try:
        with pytest.raises(FeatureStoreError, match=r"has an unreadable file .*2026-11-02T99\.parquet") as err:
            FeastMaterializeOperator(task_id="m", start="2026-11-01T00:00:00+00:00",
                                     end="2026-11-03T00:00:00+00:00").execute(context())
        print(f"BAD-INPUT | corrupt Parquet (Feast offline source) | {err.value}")
        assert "nothing was written" in str(err.value) and "clear this task" in str(err.value)
        assert corrupt.is_file(), "the corrupt file is left for inspection, never deleted"
        assert _online(feature_repo["repo"]) == before
    finally:
        corrupt.unlink()


def test_window_validation():
    with pytest.raises(FeatureStoreError, match="has no timezone"):
        parse_instant("2026-11-01T00:00:00", "start")
    with pytest.raises(FeatureStoreError, match="in the future"):
        FeastMaterializeOperator(task_id="m", start="2026-01-01T00:00:00+00:00",
                                 end="2999-01-01T00:00:00+00:00").execute({})


def test_repo_without_feature_store_yaml_is_a_clear_error(tmp_path):
    from mlops_airflow.hooks.feast_store import FeastHook

    with pytest.raises(FeatureStoreError, match="feature_store.yaml not found"):
        _ = FeastHook(repo_path=str(tmp_path)).repo_path


def test_feast_cli_module_exists():
    """The hook runs `python -m feast.cli.cli apply|plan` (the module fixture proves `apply` works end to end)."""
    import importlib.util

    assert importlib.util.find_spec("feast.cli.cli") is not None


# ---------------------------------------------------------------- bounded, mapped materialisation

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]


def _online(repo) -> dict:
    """Every customer's online values and event times (the SQLite online store, read through Feast)."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    rows = [{"customer_id": i} for i in range(1, 201)]
    refs = [f"customer_activity:{f}" for f in FEATURES]
    response = store.get_online_features(features=refs, entity_rows=rows)
    values = response.to_dict(include_event_timestamps=True)
    return {k: v for k, v in values.items() if k != "customer_id"}


def test_plan_windows_splits_and_validates():
    windows = plan_windows("2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00", overlap=timedelta(hours=6),
                           max_window=timedelta(hours=8))
    assert [(w["start"][11:16], w["end"][11:16]) for w in windows] == [("18:00", "02:00"), ("02:00", "10:00"),
                                                                       ("10:00", "18:00"), ("18:00", "00:00")]
    assert {w["count"] for w in windows} == {4} and windows[-1]["interval_end"] == "2026-11-03T00:00:00+00:00"
    json.dumps(windows)
    with pytest.raises(FeatureStoreError, match="is in the future"):
        plan_windows("2026-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00")
    with pytest.raises(FeatureStoreError, match="empty materialisation window"):
        plan_windows("2026-11-02T00:00:00+00:00", "2026-11-02T00:00:00+00:00")
    with pytest.raises(FeatureStoreError, match="needs 731 windows.*max_windows=400"):
        plan_windows("2024-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
    with pytest.raises(FeatureStoreError, match="has no timezone"):
        plan_windows("2026-11-02T00:00:00", "2026-11-03T00:00:00+00:00")


def test_mapped_windows_in_any_order_equal_feasts_own_materialize(feature_repo, context):
    from airflow.sdk import Asset
    from mlops_airflow.assets import feature_asset_uri

    plan = FeastMaterializationWindowsOperator(
        task_id="plan", start="2026-11-01T06:00:00+00:00", end="2026-11-03T00:00:00+00:00",
        overlap=timedelta(hours=6), max_window=timedelta(hours=12)).execute(context())
    assert len(plan) == 4 and plan[0]["start"] == "2026-11-01T00:00:00+00:00"
    done = []
    for window in reversed(plan):  # the last window first: as if earlier ones failed and were retried later
        done.append(FeastMaterializeOperator(task_id="materialize", window=json.dumps(window)).execute(context()))
    # Each customer is written once, by the window holding its newest row (day 2); day 1 windows skip them.
    assert sum(w["entities_written"] for w in done) == 200 and sum(w["rows_read"] for w in done) == 400
    ours = _online(feature_repo["repo"])
    # A retried early window writes nothing older over the newer values.
    FeastMaterializeOperator(task_id="materialize", window=plan[0]).execute(context(try_number=2))
    assert _online(feature_repo["repo"]) == ours

    from feast import FeatureStore

    FeatureStore(repo_path=str(feature_repo["repo"])).materialize(
        start_date=parse_instant(plan[0]["start"], "s"), end_date=parse_instant(plan[-1]["end"], "e"))
    assert _online(feature_repo["repo"]) == ours, "Feast's own materialize gives other online values"

    asset = Asset(feature_asset_uri("churn", "customer_activity"))
    ctx = context()
    record = FeastMaterializationRecordOperator(task_id="record", windows=done, outlets=[asset]).execute(ctx)
    assert [w["index"] for w in record["windows"]] == [0, 1, 2, 3]
    assert (record["start"], record["end"]) == ("2026-11-01T00:00:00+00:00", "2026-11-03T00:00:00+00:00")
    assert ctx["outlet_events"][asset].extra == record
    with pytest.raises(FeatureStoreError, match=r"windows \[1\] of 4 did not report"):
        FeastMaterializationRecordOperator(task_id="record", windows=[done[0], done[1], done[3]]).execute(context())


def test_mapped_materialisation_wiring_serialises():
    from airflow.sdk import DAG, Asset
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("mapped_materialisation", schedule=None, tags=["test"]) as dag:
        plan = FeastMaterializationWindowsOperator(task_id="plan", start="{{ data_interval_start }}",
                                                   end="{{ data_interval_end }}", overlap=timedelta(hours=6))
        windows = FeastMaterializeOperator.partial(task_id="materialize", retries=3,
                                                   max_active_tis_per_dagrun=2).expand(window=plan.output)
        FeastMaterializationRecordOperator(task_id="record", windows=windows.output,
                                           outlets=[Asset("feast://churn/customer_activity")])
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.get_task("materialize").retries == 3


def test_training_set_is_versioned_in_dvc(feature_repo, tmp_path, context):
    from mlops_airflow.hooks.dvc_repo import DvcHook, file_md5

    v2 = feature_repo["versions"][1]
    op = TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                  output_dir=str(tmp_path / "sets"), track_with_dvc=True)
    first = op.execute(context())
    tracked = first["dvc"]
    assert tracked["path"] == f"training_sets/churn_model_v1/{first['hash'][:16]}.parquet"
    assert tracked["md5"] == file_md5(storage.local_path(first["uri"])) and tracked["new_commit"]
    again = op.execute(context(try_number=2))
    assert again["dvc"]["rev"] == tracked["rev"] and not again["dvc"]["new_commit"]
    remote = __import__("pathlib").Path(json.loads(feature_repo["dvc_conn"])["extra"]["remote_url"])
    assert (remote / "files" / "md5" / tracked["md5"][:2] / tracked["md5"][2:]).is_file(), "not pushed"
    assert DvcHook().read_dvc_file(tracked["path"], tracked["rev"])["md5"] == tracked["md5"]


def test_skew_check_passes_then_finds_a_corrupted_online_value(feature_repo, tmp_path, context):
    import pandas as pd
    from feast import FeatureStore

    repo = feature_repo["repo"]
    FeastMaterializeOperator(task_id="m", start="2026-11-01T00:00:00+00:00",
                             end="2026-11-03T00:00:00+00:00").execute(context())
    check = dict(task_id="skew", feature_service="churn_model_v1", report_dir=str(tmp_path),
                 as_of="2026-11-03T00:00:00+00:00", sample_size=50)
    verdict = FeatureSkewCheckOperator(**check).execute(context())
    assert verdict["passed"], verdict["reasons"]
    assert verdict["metrics"]["sampled"] == 50 and set(verdict["metrics"]["mismatch_rate"].values()) == {0.0}
    assert len(verdict["metrics"]["mismatch_rate"]) == 5 and verdict["evidence_uri"].endswith("feature_skew.json")

    # Serving now holds another value for 10 customers, at the same event time: skew.
    store = FeatureStore(repo_path=str(repo))
    raw = pd.read_parquet(repo / "data" / "customer_events")
    latest = raw.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last").sort_values("customer_id")
    bad = latest.head(10).copy()
    bad["monthly_charges"] = bad["monthly_charges"] + 1.0
    store.write_to_online_store("customer_activity", df=bad)
    ctx = context(task_id="skew")
    failed = FeatureSkewCheckOperator(**{**check, "sample_size": 200, "fail_on_skew": False}).execute(ctx)
    rates = failed["metrics"]["mismatch_rate"]
    assert not failed["passed"] and rates["customer_activity__monthly_charges"] == 0.05
    assert rates["customer_activity__tenure_months"] == 0.0
    assert "customer_activity__monthly_charges: 10 of 200 online values differ" in failed["reasons"][0]
    evidence = json.loads(__import__("pathlib").Path(failed["evidence_uri"].removeprefix("file://")).read_text())
    example = evidence["examples"]["customer_activity__monthly_charges"][0]
    assert example["online"] == pytest.approx(example["offline"] + 1.0)
    with pytest.raises(FeatureStoreError, match=r"training-serving skew in project churn.*Next step"):
        FeatureSkewCheckOperator(**{**check, "sample_size": 200}).execute(context())
    # Entities the online store has never seen are reported as missing, not as mismatches.
    entities = tmp_path / "entities.parquet"
    pd.DataFrame({"customer_id": [5, 999_999]}).to_parquet(entities)
    missing = FeatureSkewCheckOperator(**{**check, "entity_df_path": str(entities), "fail_on_skew": False,
                                          "max_missing_rate": 0.0}).execute(context())
    assert missing["metrics"]["missing_online_rate"]["customer_activity__tenure_months"] == 0.5
    FeastMaterializeOperator(task_id="m", start="2026-11-01T00:00:00+00:00",
                             end="2026-11-03T00:00:00+00:00").execute(context())  # repair for later tests


def test_training_set_and_skew_check_on_the_object_store(feature_repo, tmp_path, context, s3_store):
    """No shared disk: a local dataset version on S3 in, the training set out to S3 (whole, content-addressed, a
    retry writes nothing) and versioned in DVC from those bytes; the skew check reads entity rows from S3 and
    writes its evidence there."""
    import pandas as pd
    from mlops_airflow.hooks.dvc_repo import DvcHook

    raw = pd.read_parquet(feature_repo["repo"] / "data" / "customer_events" / "2026-11-02.parquet")
    storage.write_table(f"{s3_store.root}/landing/day-2/batch.parquet", raw)
    version = {"repo": None, "rev": "local:" + "0" * 32, "path": f"{s3_store.root}/landing/day-2", "md5": None}
    op = TrainingSet(task_id="ts", dataset_version=version, feature_service="churn_model_v1",
                     output_dir=f"{s3_store.root}/sets", track_with_dvc=True)
    first = op.execute(context())
    assert first["uri"] == f"{s3_store.root}/sets/churn_model_v1/{first['hash'][:16]}.parquet"
    assert first["rows"] == len(raw) and s3_store.keys("sets/") == [first["uri"].split("/", 3)[3]]
    assert first["dvc"]["md5"] == storage.md5(first["uri"])
    assert DvcHook().read_dvc_file(first["dvc"]["path"], first["dvc"]["rev"])["md5"] == first["dvc"]["md5"]
    again = op.execute(context(try_number=2))
    assert again["uri"] == first["uri"] and again["dvc"]["rev"] == first["dvc"]["rev"]
    assert s3_store.keys("sets/") == [first["uri"].split("/", 3)[3]]
    with pytest.raises(FeatureStoreError, match="is not there"):
        TrainingSet(task_id="ts", dataset_version={**version, "path": f"{s3_store.root}/landing/none"},
                    feature_service="churn_model_v1", output_dir=f"{s3_store.root}/sets").execute(context())

    FeastMaterializeOperator(task_id="m", start="2026-11-01T00:00:00+00:00",
                             end="2026-11-03T00:00:00+00:00").execute(context())
    storage.write_table(f"{s3_store.root}/entities.parquet", pd.DataFrame({"customer_id": [5, 7, 11]}))
    verdict = FeatureSkewCheckOperator(
        task_id="skew", feature_service="churn_model_v1", report_dir=f"{s3_store.root}/reports",
        entity_df_path=f"{s3_store.root}/entities.parquet", as_of="2026-11-03T00:00:00+00:00",
    ).execute(context(task_id="skew"))
    assert verdict["passed"], verdict["reasons"]
    assert verdict["metrics"]["sampled"] == 3
    assert verdict["evidence_uri"].startswith(f"{s3_store.root}/reports/") and \
        verdict["evidence_uri"].endswith("/skew/feature_skew.json")
    assert storage.read_json(verdict["evidence_uri"])["entity_keys"] == ["customer_id"]


def test_reference_dag_materialises_in_bounded_mapped_windows_then_checks_skew():
    """The CT DAG: plan (run interval + 6 h overlap) -> mapped windows -> record (feast:// extra) -> skew gate."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "mlops_continuous_training.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["mlops_continuous_training"]
    plan, window = dag.get_task("plan_materialization"), dag.get_task("materialize_window")
    record, skew = dag.get_task("materialize_features"), dag.get_task("check_feature_skew")
    assert isinstance(plan, FeastMaterializationWindowsOperator) and plan.overlap == timedelta(hours=6)
    assert "land_batch" in plan.start and plan.max_window <= timedelta(days=1)
    assert window.operator_class is FeastMaterializeOperator or window.operator_name == "FeastMaterializeOperator"
    assert window.upstream_task_ids == {"plan_materialization"} and record.upstream_task_ids == {"materialize_window"}
    assert [o.uri for o in record.outlets] == ["feast://churn/customer_activity"]
    assert isinstance(skew, FeatureSkewCheckOperator) and skew.upstream_task_ids == {"materialize_features"}
    assert {"check_feature_skew", "train_model"} <= dag.get_task("register_model").upstream_task_ids
    assert "materialize_features" in dag.get_task("build_training_set").upstream_task_ids


def test_feature_asset_uri_and_its_scheme_is_registered():
    from mlops_airflow.assets import feature_asset_uri
    from mlops_airflow.get_provider_info import get_provider_info

    assert feature_asset_uri("churn", "customer_activity/") == "feast://churn/customer_activity"
    assert feature_asset_uri("churn") == "feast://churn"
    with pytest.raises(ValueError, match="contain no '/'"):
        feature_asset_uri("a/b")
    assert {"feast", "dvc"} <= {s for entry in get_provider_info()["asset-uris"] for s in entry["schemes"]}


def test_training_set_label_comes_from_the_spec_or_the_service_and_entities_from_its_views(feature_repo, tmp_path,
                                                                                           context):
    v2 = feature_repo["versions"][-1]
    with pytest.raises(FeatureStoreError, match="needs label_column: .*no 'label' tag") as err:
        FeastTrainingSetOperator(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                                 output_dir=str(tmp_path / "sets")).execute(context())
    assert not (tmp_path / "sets").exists()
    print(f"BAD-INPUT | training set without a label | {err.value}")
    built = TrainingSet(task_id="ts", dataset_version=v2, feature_service="churn_model_v1",
                        output_dir=str(tmp_path / "sets")).execute(context())
    assert built["entity_columns"] == ["customer_id"] and built["label"] == "churned"
