"""monitoring.drift_options: the stattest options' checks (shared by detect_drift and the partitioned plan)."""

from __future__ import annotations

import pytest
from mlops_airflow.monitoring.drift_engine import DriftEngineError, detect_drift
from mlops_airflow.monitoring.drift_options import STATTEST_OPTIONS, check_stattest_options, resolve_stattest
from mlops_airflow.monitoring.partition_plan import plan

pytestmark = pytest.mark.unit


def test_unknown_names_unsupported_stattests_and_uncompared_columns_are_refused() -> None:
    check_stattest_options(dict.fromkeys(STATTEST_OPTIONS))
    with pytest.raises(TypeError, match=r"unknown stattest options \['stat_test'\]"):
        check_stattest_options({"stat_test": "ks"})
    with pytest.raises(DriftEngineError, match=r"stattest 'anderson' is not implemented.*engine='evidently'"):
        check_stattest_options({"per_column_stattest": {"x": "anderson"}})
    with pytest.raises(DriftEngineError, match=r"names columns that are not compared: \['y'\]"):
        check_stattest_options({"per_column_threshold": {"y": 0.2}}, ["x"])
    check_stattest_options({"per_column_threshold": {"x": 0.2}}, ["x"])


def test_the_engine_and_the_plan_refuse_alike() -> None:
    with pytest.raises(DriftEngineError, match="stattest 'anderson' is not implemented"):
        detect_drift({"x": [1.0, 2.0]}, {"x": [1.0, 2.0]}, num_stattest="anderson")
    with pytest.raises(DriftEngineError, match="stattest 'anderson' is not implemented"):
        plan([], [], num_stattest="anderson")
    with pytest.raises(TypeError, match="unknown stattest options"):
        plan([], [], stattests="ks")


def test_resolution_order_is_per_column_then_per_type_then_for_all() -> None:
    options = {"stattest": "psi", "num_stattest": "ks", "per_column_stattest": {"a": "wasserstein"},
               "threshold": 0.3, "num_threshold": 0.2, "per_column_threshold": {"a": 0.15}}
    assert resolve_stattest("a", "numerical", **options) == ("wasserstein", 0.15)
    assert resolve_stattest("b", "numerical", **options) == ("ks", 0.2)
    assert resolve_stattest("c", "categorical", **options) == ("psi", 0.3)
