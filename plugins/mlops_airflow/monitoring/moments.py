"""Streaming moments: count, mean, sum of squared deviations and extremes of the finite values of one column,
merged batch by batch and partition by partition with Chan et al.'s parallel formula.

One implementation for the single pass (``drift_stats._Side``) and the partitioned check
(``partition_summary``): both must give the same floating-point result. Numpy is imported inside functions only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def merge_moments(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Chan et al.'s parallel merge of two (count, mean, sum of squared deviations): ``(n, mean, m2)`` of both."""
    total = n_a + n_b
    delta = mean_b - mean_a
    return total, mean_a + delta * n_b / total, m2_a + (m2_b + delta * delta * n_a * n_b / total)


class _Moments:
    """Count, mean, sum of squared deviations and extremes of the finite values seen, batch by batch, and a
    deterministic strided sample of them (the state of ``drift_stats._Side`` and of a partition's
    ``partition_summary._Summary``, which must agree to the last bit)."""

    n: int
    mean: float
    m2: float
    min: float
    max: float
    stride: int
    sample: list[np.ndarray]
    _seen: int

    def _add_finite(self, x: np.ndarray, sample: bool = True) -> None:
        """Merge the finite values ``x`` (non-empty) into the moments and extremes; with ``sample``, keep every
        ``stride``-th value (counted over all batches) in ``sample``."""
        import numpy as np

        mean_b = float(x.mean())
        dev = x - mean_b
        m2_b = float(np.dot(dev, dev))
        del dev
        self.n, self.mean, self.m2 = merge_moments(self.n, self.mean, self.m2, int(x.size), mean_b, m2_b)
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        if sample:
            start = (-self._seen) % self.stride
            self.sample.append(x[start :: self.stride].copy())
        self._seen += int(x.size)

    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0  # np.std's default ddof=0
