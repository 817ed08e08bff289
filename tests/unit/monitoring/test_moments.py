"""monitoring.moments: Chan et al.'s merge equals the moments of all values, whatever the split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mlops_airflow.monitoring.moments import _Moments, merge_moments

pytestmark = pytest.mark.unit


class _Acc(_Moments):
    def __init__(self, stride: int) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = math.inf, -math.inf
        self.stride, self.sample, self._seen = stride, [], 0


def test_batches_merge_to_the_moments_of_all_values() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 10_001)
    acc = _Acc(stride=100)
    for chunk in np.array_split(values, 7):
        acc._add_finite(chunk)
    assert acc.n == values.size and acc.mean == pytest.approx(values.mean(), rel=1e-12)
    assert acc.std() == pytest.approx(values.std(), rel=1e-12)
    assert (acc.min, acc.max) == (values.min(), values.max())
    # The strided sample does not depend on where the batches were cut: every 100th value of the whole column.
    assert np.array_equal(np.concatenate(acc.sample), values[::100])
    assert _Acc(stride=1).std() == 0.0


def test_merge_of_two_halves_is_the_whole_and_keeps_its_arithmetic() -> None:
    a, b = np.arange(10.0), np.arange(10.0, 25.0)

    def own(x: np.ndarray) -> tuple[int, float, float]:
        return x.size, float(x.mean()), float(((x - x.mean()) ** 2).sum())

    n, mean, m2 = merge_moments(*own(a), *own(b))
    whole = np.concatenate([a, b])
    assert n == 25 and mean == pytest.approx(whole.mean()) and m2 == pytest.approx(((whole - whole.mean()) ** 2).sum())
    # The formula as the single pass and the partition merge wrote it before it was shared (bit for bit).
    n_a, mean_a, m2_a = own(a)
    n_b, mean_b, m2_b = own(b)
    delta = mean_b - mean_a
    assert (mean, m2) == (mean_a + delta * n_b / 25, m2_a + (m2_b + delta * delta * n_a * n_b / 25))
