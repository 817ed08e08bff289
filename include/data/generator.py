"""Synthetic customer-events data for the reference pipeline (churn classification).

One row per customer and day: the features the model uses plus the label ``churned``.
Scenario knobs reproduce what monitoring must catch:
- ``covariate_shift`` moves the feature distributions (data drift);
- ``concept_drift`` changes how features relate to the label (quality drops, features may not drift).

Deterministic: the same day and knobs give the same rows, so a retried landing task writes the same
bytes. Run as a script: ``python include/data/generator.py --day 2026-11-01 --out batch.parquet``.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_hours", "payment_delay_days"]
LABEL = "churned"
SCHEMA_COLUMNS = ["customer_id", "event_timestamp", *FEATURES, LABEL]


def _seed(day: date, salt: str) -> int:
    return int(hashlib.sha256(f"{day.isoformat()}:{salt}".encode()).hexdigest()[:8], 16)


def generate_batch(
    day: date,
    n_customers: int = 4000,
    covariate_shift: float = 0.0,
    concept_drift: float = 0.0,
    salt: str = "mlops",
) -> Any:
    """A pandas DataFrame of ``n_customers`` events on ``day`` (UTC)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(_seed(day, salt))
    n = n_customers
    tenure = rng.gamma(2.0, 14.0, n).clip(0, 240) * (1 - 0.5 * covariate_shift)
    charges = (rng.normal(70, 25, n) + 40 * covariate_shift).clip(5, 500)
    calls = rng.poisson(1.5 + 3.0 * covariate_shift, n).clip(0, 50)
    usage = rng.gamma(3.0, 40.0, n).clip(0, 744)
    delay = rng.exponential(4.0 + 6.0 * covariate_shift, n).clip(0, 365)

    # Standardised contributions; concept drift flips usage and weakens tenure.
    z = (
        -1.0 * (tenure - 28) / 20 * (1 - concept_drift)
        + 0.8 * (charges - 70) / 25
        + 0.9 * (calls - 1.5) / 1.2
        - 0.6 * (usage - 120) / 70 * (1 - 2 * concept_drift)
        + 0.7 * (delay - 4) / 4
        - 0.4
    )
    p = 1 / (1 + np.exp(-z))
    churned = (rng.random(n) < p).astype("int64")

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = np.sort(rng.integers(0, 86_400, n))
    ts = pd.to_datetime([start + timedelta(seconds=int(s)) for s in seconds], utc=True).as_unit("us")
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "event_timestamp": ts,
            "tenure_months": tenure.round(2),
            "monthly_charges": charges.round(2),
            "support_calls": calls.astype("int64"),
            "usage_hours": usage.round(2),
            "payment_delay_days": delay.round(2),
            LABEL: churned,
        }
    )


def write_batch(df: Any, out: Path) -> Path:
    """Write deterministically (no pandas index, fixed compression) so equal data gives equal bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    df.to_parquet(tmp, index=False, compression="snappy")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--covariate-shift", type=float, default=0.0)
    parser.add_argument("--concept-drift", type=float, default=0.0)
    args = parser.parse_args()
    df = generate_batch(args.day, args.customers, args.covariate_shift, args.concept_drift)
    print(write_batch(df, args.out), len(df))


if __name__ == "__main__":
    main()
