"""The Feast online store on a real Redis (127.0.0.1:6379): mapped-window materialisation, online reads, skew check.

The bundled feature definitions run in a temporary repository whose ``feature_store.yaml`` points the online store
at Redis database 13 under a project name unique to this run, so no one else's keys are touched; the project's keys
are deleted afterwards (and the test checks they are gone). Skips with the reason when Redis is absent
(``MLOPS_REQUIRE_SERVICES=1`` makes it a failure). Runtime: ~25 s on an idle 2-core machine (Feast import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import require_service

pytestmark = [pytest.mark.integration, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = 13
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory, generator):
    require_service("Redis", 6379)
    import redis
    from feast import FeatureStore

    repo = tmp_path_factory.mktemp("feast_redis")
    project = f"mlops_test_{os.getpid()}_{repo.name.replace('-', '_')}"
    for name in ("features.py", ".feastignore"):
        shutil.copyfile(ROOT / "include" / "feast_repo" / name, repo / name)
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry: .feast/registry.db\n"
        f"online_store:\n  type: redis\n  connection_string: \"127.0.0.1:6379,db={REDIS_DB}\"\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    for day in ("2026-11-01", "2026-11-02"):
        df = generator.generate_batch(date.fromisoformat(day), n_customers=150)
        generator.write_batch(df, repo / "data" / "customer_events" / f"{day}.parquet")
    spec = importlib.util.spec_from_file_location("redis_features", repo / "features.py")
    features = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(features)
    store = FeatureStore(repo_path=str(repo))
    store.apply([features.customer, features.customer_events_source, features.customer_activity,
                 features.churn_model_v1])
    old = os.environ.get("AIRFLOW_CONN_FEAST_DEFAULT")
    os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = json.dumps({"conn_type": "feast", "extra": {"repo_path": str(repo)}})
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    yield {"repo": repo, "project": project, "store": store, "client": client}
    store.teardown()  # deletes this project's keys only
    leftover = list(client.scan_iter(b"*" + project.encode()))
    if leftover:
        client.delete(*leftover)
    if old is None:
        os.environ.pop("AIRFLOW_CONN_FEAST_DEFAULT", None)
    else:
        os.environ["AIRFLOW_CONN_FEAST_DEFAULT"] = old


def test_mapped_windows_materialise_into_redis_and_serve(redis_repo, tmp_path, context):
    import pandas as pd
    from mlops_airflow.operators.feast_features import (
        FeastMaterializationWindowsOperator,
        FeastMaterializeOperator,
        FeatureSkewCheckOperator,
    )

    plan = FeastMaterializationWindowsOperator(
        task_id="plan", start="2026-11-01T00:00:00+00:00", end="2026-11-03T00:00:00+00:00",
        max_window=timedelta(hours=12)).execute(context())
    done = [FeastMaterializeOperator(task_id="materialize", window=w).execute(context()) for w in plan]
    assert sum(w["entities_written"] for w in done) == 150

    client, project = redis_repo["client"], redis_repo["project"]
    assert len(list(client.scan_iter(b"*" + project.encode()))) == 150  # one hash per customer, all ours

    raw = pd.read_parquet(redis_repo["repo"] / "data" / "customer_events")
    latest = raw.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last").set_index("customer_id")
    online = redis_repo["store"].get_online_features(
        features=[f"customer_activity:{f}" for f in FEATURES],
        entity_rows=[{"customer_id": int(i)} for i in latest.index]).to_dict()
    for feature in FEATURES:
        assert online[feature] == pytest.approx(latest[feature].tolist()), feature

    verdict = FeatureSkewCheckOperator(task_id="skew", feature_service="churn_model_v1", report_dir=str(tmp_path),
                                       as_of="2026-11-03T00:00:00+00:00", sample_size=40).execute(context())
    assert verdict["passed"], verdict["reasons"]
    assert verdict["metrics"]["sampled"] == 40 and verdict["metrics"]["max_mismatch_rate"] == 0.0
