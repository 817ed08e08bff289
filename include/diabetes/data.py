"""Daily batches of scikit-learn's bundled diabetes data (the regression example; no download).

``sklearn.datasets.load_diabetes(as_frame=True, scaled=False)`` has 442 patients, ten baseline measurements
(age, sex, bmi, bp, s1..s6) and the label ``target`` (disease progression one year later). Every patient keeps a
stable ``patient_id`` (row number + 1). A fixed fifth of the patients (by a hash of the id) is reserved for
``holdout_batch``; ``daily_batch`` draws from the other four fifths, so the evaluation holdout never contains a
patient the model trained on.

A day's batch resamples its patients with replacement (300-500 rows, seeded by the day) and adds small noise,
with a distinct ``event_timestamp`` within the day for every row (so ``patient_id`` + ``event_timestamp`` is
unique). Scenario knobs, as in ``include/data/generator.py``:

- ``covariate_shift`` moves ``bmi``, ``bp`` and ``s5`` by ``shift * std`` (data drift) and moves ``target`` the
  way the data's own linear relation says, so the concept is unchanged;
- ``concept_drift`` changes the relation: at 1.0 the effect of ``bmi`` on ``target`` is reversed (features do not
  drift; a model trained before loses accuracy).

Deterministic: the same day and knobs give the same rows. As a script:
``python include/diabetes/data.py --day 2026-11-01 --out batch.parquet``.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

ENTITY = "patient_id"
TIMESTAMP = "event_timestamp"
LABEL = "target"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
SCHEMA_COLUMNS = [ENTITY, TIMESTAMP, *FEATURES, LABEL]
SHIFTED = ["bmi", "bp", "s5"]  # the columns covariate_shift moves
NOISE = 0.05  # feature / label noise, in standard deviations of the base data
DECIMALS = {"s5": 4}  # the other measurements keep 2 decimals
HOLDOUT_SHARE = 5  # one patient in 5 is holdout-only


def _seed(day: date, salt: str) -> int:
    return int(hashlib.sha256(f"{day.isoformat()}:{salt}".encode()).hexdigest()[:8], 16)


def is_holdout_patient(patient_id: int) -> bool:
    """True for the fixed fifth of the patients reserved for ``holdout_batch``."""
    digest = hashlib.sha256(f"diabetes-holdout:{int(patient_id)}".encode()).hexdigest()
    return int(digest[:8], 16) % HOLDOUT_SHARE == 0


@lru_cache(maxsize=1)
def _base() -> tuple[Any, dict[str, float], dict[str, float], dict[str, float]]:
    """The 442 patients with their ids; feature means/stds; the linear effect of each shifted column on target."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.astype("float64")
    frame.insert(0, ENTITY, np.arange(1, len(frame) + 1, dtype="int64"))
    means = {c: float(frame[c].mean()) for c in [*FEATURES, LABEL]}
    stds = {c: float(frame[c].std()) for c in [*FEATURES, LABEL]}
    design = np.c_[frame[SHIFTED].to_numpy(), np.ones(len(frame))]
    coef = np.linalg.lstsq(design, frame[LABEL].to_numpy(), rcond=None)[0]
    slopes = {c: float(b) for c, b in zip(SHIFTED, coef[:-1], strict=True)}
    return frame, means, stds, slopes


def _batch(day: date, salt: str, holdout: bool, covariate_shift: float, concept_drift: float) -> Any:
    import numpy as np
    import pandas as pd

    base, means, stds, slopes = _base()
    pool = base[base[ENTITY].map(is_holdout_patient) == holdout].reset_index(drop=True)
    rng = np.random.default_rng(_seed(day, salt))
    n = int(rng.integers(300, 501))
    df = pool.iloc[rng.integers(0, len(pool), n)].reset_index(drop=True)
    for col in FEATURES:
        if col != "sex":  # sex is categorical (1 or 2): no noise
            df[col] = df[col] + rng.normal(0.0, NOISE * stds[col], n)
    target = df[LABEL].to_numpy() + rng.normal(0.0, NOISE * stds[LABEL], n)
    for col in SHIFTED:  # data drift; target follows the data's linear relation, so the concept holds
        df[col] = df[col] + covariate_shift * stds[col]
        target = target + covariate_shift * stds[col] * slopes[col]
    # Concept drift: the effect of bmi on target is reversed at concept_drift=1.
    target = target - concept_drift * 2.0 * slopes["bmi"] * (df["bmi"].to_numpy() - means["bmi"])
    df[LABEL] = np.clip(target, 1.0, 499.0).round(1)
    df["age"] = df["age"].clip(18.0, 99.0)
    for col in FEATURES:
        df[col] = df[col].round(DECIMALS.get(col, 2)).astype("float64")

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = np.sort(rng.choice(86_400, size=n, replace=False))
    df[TIMESTAMP] = (pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s")).as_unit("us")
    return df[SCHEMA_COLUMNS]


def daily_batch(day: date, *, covariate_shift: float = 0.0, concept_drift: float = 0.0, **_: Any) -> Any:
    """One day's batch (pandas DataFrame, 300-500 rows) of the training patients.

    :param day: the batch day (UTC); seeds the sample, so the same day gives the same rows.
    :param covariate_shift: moves ``bmi``, ``bp`` and ``s5`` by this many standard deviations (data drift).
    :param concept_drift: 0..1, how far the effect of ``bmi`` on ``target`` is reversed.
    :param _: other scenario parameters (ignored), so one parameter set can drive several sources.
    """
    return _batch(day, "diabetes", False, covariate_shift, concept_drift)


def holdout_batch(day: date, *, covariate_shift: float = 0.0, concept_drift: float = 0.0, **_: Any) -> Any:
    """The day's evaluation holdout: same distribution and knobs as ``daily_batch``, holdout patients only.

    :param day: the batch day (UTC).
    :param covariate_shift: as in ``daily_batch``.
    :param concept_drift: as in ``daily_batch``.
    :param _: other scenario parameters (ignored).
    """
    return _batch(day, "diabetes-holdout", True, covariate_shift, concept_drift)


def write_batch(df: Any, out: Path) -> Path:
    """Write deterministically (no pandas index, fixed compression) so equal data gives equal bytes; atomically."""
    from mlops_airflow._io import write_atomic

    return write_atomic(out, lambda tmp: df.to_parquet(tmp, index=False, compression="snappy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--holdout", action="store_true", help="write the day's holdout batch instead")
    parser.add_argument("--covariate-shift", type=float, default=0.0)
    parser.add_argument("--concept-drift", type=float, default=0.0)
    args = parser.parse_args()
    make = holdout_batch if args.holdout else daily_batch
    df = make(args.day, covariate_shift=args.covariate_shift, concept_drift=args.concept_drift)
    print(write_batch(df, args.out), len(df))


if __name__ == "__main__":
    main()
