"""The drift engine's statistics: Evidently 0.7's stattest table and automatic choice, option precedence, and the
computations checked against scipy and statsmodels on generated samples."""

from __future__ import annotations

import pytest
from mlops_airflow.monitoring import verdict
from mlops_airflow.monitoring.drift_options import resolve_stattest
from mlops_airflow.monitoring.drift_sources import CATEGORICAL, NUMERICAL
from mlops_airflow.monitoring.drift_stats import (
    STATTESTS,
    StatTestSpec,
    _bins_histogram,
    _chisquare,
    _jensenshannon,
    _ks_pvalue,
    _psi,
    _values_histogram,
    _wasserstein_merged,
    _z_test,
    default_stattest,
)

pytestmark = pytest.mark.unit


def test_the_stattest_table_agrees_with_the_snapshot_reader():
    assert set(STATTESTS) == {"wasserstein", "ks", "jensenshannon", "psi", "chisquare", "z"}
    for name, spec in STATTESTS.items():
        assert spec.name == name
        # An Evidently snapshot names the test by its display name: the verdict reader maps it back, and agrees on
        # whether the score is a distance.
        assert verdict._STATTEST_NAMES[spec.display_name] == name
        assert (name in verdict._DISTANCE_STATTESTS) is spec.distance
    assert {n: s.default_threshold for n, s in STATTESTS.items()} == {
        "wasserstein": 0.1,
        "ks": 0.05,
        "jensenshannon": 0.1,
        "psi": 0.1,
        "chisquare": 0.05,
        "z": 0.05,
    }
    assert STATTESTS["ks"].kinds == (NUMERICAL,) and STATTESTS["chisquare"].kinds == (CATEGORICAL,)
    assert set(STATTESTS["psi"].kinds) == {NUMERICAL, CATEGORICAL}


def test_drift_decision_at_the_threshold():
    ks, chisquare, wasserstein = STATTESTS["ks"], STATTESTS["chisquare"], STATTESTS["wasserstein"]
    assert ks.drifted(0.05, 0.05) and not ks.drifted(0.0501, 0.05)  # ks: p <= threshold
    assert not chisquare.drifted(0.05, 0.05) and chisquare.drifted(0.0499, 0.05)  # chisquare, z: p < threshold
    assert wasserstein.drifted(0.1, 0.1) and not wasserstein.drifted(0.0999, 0.1)  # distances: score >= threshold
    custom = StatTestSpec("x", "X", 0.5, distance=False, strict=True, kinds=(NUMERICAL,))
    assert custom.drifted(0.1, 0.5) is True and custom.drifted(0.9, 0.5) is False


@pytest.mark.parametrize(
    ("kind", "count", "unique", "expected"),
    [
        (NUMERICAL, 1000, 6, "ks"),
        (NUMERICAL, 1000, 5, "chisquare"),
        (NUMERICAL, 1000, 2, "z"),
        (CATEGORICAL, 1000, 50, "chisquare"),
        (CATEGORICAL, 10, 3, "chisquare"),
        (CATEGORICAL, 10, 2, "z"),
        (CATEGORICAL, 10, 1, "z"),
        (NUMERICAL, 1001, 6, "wasserstein"),
        (NUMERICAL, 1001, 5, "jensenshannon"),
        (CATEGORICAL, 50_000, 3, "jensenshannon"),
        (CATEGORICAL, 50_000, 2, "jensenshannon"),
    ],
)
def test_evidently_s_automatic_choice(kind, count, unique, expected):
    assert default_stattest(kind, count, unique) == expected


def test_option_precedence_per_column_then_type_then_all():
    assert resolve_stattest("a", NUMERICAL) == (None, None)
    assert resolve_stattest("a", NUMERICAL, stattest="psi", threshold=0.2) == ("psi", 0.2)
    assert resolve_stattest("a", NUMERICAL, stattest="psi", num_stattest="ks", cat_stattest="z") == ("ks", None)
    assert resolve_stattest("a", CATEGORICAL, stattest="psi", num_stattest="ks", cat_stattest="z") == ("z", None)
    per = {"per_column_stattest": {"a": "wasserstein"}, "per_column_threshold": {"a": 0.3}}
    assert resolve_stattest("a", NUMERICAL, stattest="psi", num_stattest="ks", num_threshold=0.01, **per) == (
        "wasserstein",
        0.3,
    )
    assert resolve_stattest(
        "b", NUMERICAL, stattest="psi", num_stattest="ks", num_threshold=0.01, threshold=0.5, **per
    ) == ("ks", 0.01)
    assert resolve_stattest("b", CATEGORICAL, threshold=0.5, num_threshold=0.01, cat_threshold=0.02) == (None, 0.02)


@pytest.fixture(scope="module")
def samples():
    import numpy as np

    rng = np.random.default_rng(11)
    return rng.normal(0, 1, 700), rng.normal(0.2, 1.3, 450)


def test_wasserstein_and_ks_equal_scipy(samples):
    import numpy as np
    from scipy.stats import ks_2samp, wasserstein_distance

    x, y = samples
    merged = np.concatenate([np.sort(x), np.sort(y)])
    for block in (64, 1 << 18):
        assert _wasserstein_merged(merged, x.size, block=block) == pytest.approx(wasserstein_distance(x, y), rel=1e-12)
    result = ks_2samp(x, y)
    assert _ks_pvalue(result.statistic, x.size, y.size) == pytest.approx(result.pvalue, rel=1e-9)
    big = ks_2samp(np.tile(x, 20), np.tile(y, 30))  # above scipy's exact limit: the asymptotic distribution
    assert _ks_pvalue(big.statistic, 14_000, 13_500) == pytest.approx(big.pvalue, rel=1e-6, abs=1e-300)


def test_category_tests_equal_scipy_and_statsmodels():
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chisquare
    from statsmodels.stats.proportion import proportions_ztest

    ref, cur = {"a": 70, "b": 20, "c": 10}, {"a": 40, "b": 35, "c": 45}
    keys = sorted(ref)
    r, c = np.array([ref[k] for k in keys], float), np.array([cur[k] for k in keys], float)
    assert _chisquare(ref, cur, 100, 120) == pytest.approx(chisquare(c, r * 120 / 100)[1], rel=1e-12)
    assert _chisquare(ref, {**cur, "new": 5}, 100, 125) == 0.0  # a value new in current: p = 0, as Evidently
    assert _jensenshannon(r / 100, c / 120) == pytest.approx(jensenshannon(r / 100, c / 120), rel=1e-12)
    assert _jensenshannon(r, r) == 0.0

    two_ref, two_cur = {"no": 70, "yes": 30}, {"no": 50, "yes": 50}
    assert _z_test(two_ref, two_cur, 100, 100) == pytest.approx(proportions_ztest([30, 50], [100, 100])[1], rel=1e-9)
    assert _z_test({"x": 5}, {"x": 9}, 5, 9) == 1.0  # one and the same value on both sides


def test_psi_fills_empty_bins_like_evidently():
    import numpy as np

    ref, cur = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    filled = np.array([0.5, 0.5, 0.0001])
    expected = float(np.sum((filled - cur) * np.log(filled / cur)))
    assert _psi(ref, cur) == pytest.approx(expected)
    assert _psi(cur, cur) == 0.0
    assert ref[2] == 0.0  # the inputs are left as they were


def test_report_histograms():
    import numpy as np

    ref = {f"v{i}": 30 - i for i in range(25)}
    values = _values_histogram(ref, {"v0": 1, "new": 99}, sum(ref.values()), 100)
    assert values["kind"] == "values" and len(values["values"]) == 21
    assert values["values"][-1] == "other (6 values)" and "new" in values["values"]
    assert sum(values["reference"]) == pytest.approx(1.0) and sum(values["current"]) == pytest.approx(1.0)
    mixed = _values_histogram({1: 2, "a": 2}, {1: 1}, 4, 1)  # unorderable keys keep frequency order
    assert set(mixed["values"]) == {"1", "a"}

    edges = np.linspace(0, 1, 11)
    small = _bins_histogram(edges, np.full(10, 0.1), np.full(10, 0.1))
    assert small["edges"] == pytest.approx(list(edges)) and len(small["reference"]) == 10
    many = _bins_histogram(np.linspace(0, 1, 201), np.full(200, 0.005), np.full(200, 0.005))
    assert len(many["reference"]) <= 60 and len(many["edges"]) == len(many["reference"]) + 1
    assert sum(many["reference"]) == pytest.approx(1.0) and many["edges"][0] == 0.0 and many["edges"][-1] == 1.0
