"""Drift verdicts in the pack's gate shape, from per-column results or from an Evidently 0.7 snapshot.

No Airflow import: the engine, the benchmark and the operators share these functions.
"""

from __future__ import annotations

import math
from typing import Any


class SnapshotError(ValueError):
    """An Evidently snapshot that holds no drift result this module can read."""


# Evidently 0.7 writes the *display* name of a stattest it picked itself into the snapshot (``ValueDrift`` config
# ``method``), and the registry name of one the caller chose. Map display names back to the registry names the
# ``stattest`` parameter takes (evidently/legacy/calculations/stattests/*.py, 0.7.23).
_STATTEST_NAMES = {
    "Anderson-Darling": "anderson",
    "chi-square p_value": "chisquare",
    "Cramer-von Mises": "cramer_von_mises",
    "Energy-distance": "ed",
    "Epps-Singleton": "es",
    "Fisher's Exact test": "fisher_exact",
    "g_test": "g_test",
    "Hellinger distance": "hellinger",
    "Jensen-Shannon distance": "jensenshannon",
    "Kullback-Leibler divergence": "kl_div",
    "K-S p_value": "ks",
    "Mann-Whitney U-rank test": "mannw",
    "empirical_mmd": "empirical_mmd",
    "PSI": "psi",
    "t_test": "t_test",
    "Percentile text content drift": "perc_text_content_drift",
    "Absolute text content drift": "abs_text_content_drift",
    "Total-Variation-Distance": "TVD",
    "Wasserstein distance (normed)": "wasserstein",
    "Z-test p_value": "z",
}
# Stattests whose score is a distance (drift when score >= threshold); every other one returns a p-value (drift
# when p-value < threshold). Only needed when a snapshot carries no per-column test results.
_DISTANCE_STATTESTS = frozenset(
    {
        "wasserstein",
        "psi",
        "jensenshannon",
        "kl_div",
        "hellinger",
        "ed",
        "perc_text_content_drift",
        "abs_text_content_drift",
    }
)


def _stattest_name(method: Any) -> str:
    name = str(method) if method is not None else "unknown"
    return _STATTEST_NAMES.get(name, name)


def _is_distance(method: str) -> bool:
    return method in _DISTANCE_STATTESTS


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _column_reason(col: str, info: dict[str, Any]) -> str:
    score, threshold, method = info["score"], info["threshold"], info["method"]
    if score is None or threshold is None:
        return f"{col} ({method})"
    if _is_distance(method):
        return f"{col} ({method} {score:.2f} >= {threshold:.2f})"
    return f"{col} ({method} p={score:.3g} < {threshold:.2f})"


def _parse_snapshot(snapshot_dict: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, float] | None]:
    """Per-column drift results and Evidently's drifted-columns count/share from ``Snapshot.dict()``.

    The structure this expects (Evidently 0.7, a ``Report([DataDriftPreset(...)], include_tests=True)``)::

        {"metrics": [
            {"id": "<metric id>",
             "config": {"type": "evidently:metric_v2:DriftedColumnsCount", "columns": [...], "drift_share": 0.5},
             "value": {"count": 3.0, "share": 0.6}},
            {"id": "<metric id>",
             "config": {"type": "evidently:metric_v2:ValueDrift", "column": "feature_a",
                        "method": "Wasserstein distance (normed)" | "ks" | ..., "threshold": 0.1},
             "value": 0.41},                          # the drift score (a distance or a p-value)
            ...],
         "tests": [
            {"metric_config": {"metric_id": "<ValueDrift metric id>", "params": {"column": ...}},
             "bound_test": {"type": "evidently:bound_test:ValueDriftBoundTest", ...},
             "status": "FAIL" | "SUCCESS"},           # FAIL = the column drifted
            {"metric_config": {"metric_id": "<DriftedColumnsCount metric id>", ...},
             "test_config": {"type": "evidently:test_v2:LessThanMetricTest", "threshold": 0.5},
             "status": "FAIL" | "SUCCESS"},           # FAIL = dataset drift (share >= drift_share)
            ...]}

    A column's ``drifted`` flag comes from its ValueDrift test status. Without tests (a report run with
    ``include_tests=False``) it is inferred from score and threshold: a distance drifts when ``score >= threshold``,
    a p-value when ``score < threshold``. ``method`` is normalised to the stattest's registry name
    (``wasserstein``, ``ks``, ``psi``, ...). Metric types are matched on their suffix, so a renamed prefix
    (``metric_v2``) does not break the parser.

    :return: ``({column: {score, threshold, method, drifted}}, {"count": n, "share": s} or None)``.
    """
    metrics = snapshot_dict.get("metrics") or []
    tests = snapshot_dict.get("tests") or []
    status_by_metric: dict[str, str] = {}
    for test in tests:
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        bound_type = str((test.get("bound_test") or {}).get("type", ""))
        if metric_id and bound_type.endswith("ValueDriftBoundTest"):
            status_by_metric[metric_id] = str(test.get("status", "")).upper()

    per_column: dict[str, dict[str, Any]] = {}
    counts: dict[str, float] | None = None
    for metric in metrics:
        config = metric.get("config") or {}
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            column = str(config.get("column"))
            method = _stattest_name(config.get("method"))
            score = finite(metric.get("value"))
            threshold = finite(config.get("threshold"))
            status = status_by_metric.get(str(metric.get("id")))
            if status in ("FAIL", "SUCCESS"):
                drifted = status == "FAIL"
            elif score is None or threshold is None:
                drifted = False
            else:
                drifted = score >= threshold if _is_distance(method) else score < threshold
            per_column[column] = {"score": score, "threshold": threshold, "method": method, "drifted": drifted}
        elif kind == "DriftedColumnsCount":
            value = metric.get("value") or {}
            counts = {"count": float(value.get("count", 0) or 0), "share": float(value.get("share", 0) or 0)}
    return per_column, counts


def verdict_from_columns(per_column: dict[str, dict[str, Any]], drift_share_threshold: float) -> dict[str, Any]:
    """The drift part of the verdict from per-column results ``{col: {score, threshold, method, drifted}}``.

    Dataset drift means ``share of drifted columns >= drift_share_threshold``; ``reasons`` then names each drifted
    column with its test. Shared by both engines, so their verdicts have one shape.
    """
    n_columns = len(per_column)
    drifted = [col for col, info in per_column.items() if info["drifted"]]
    share = len(drifted) / n_columns if n_columns else 0.0
    return drift_verdict(per_column, drifted, n_columns, len(drifted), share, drift_share_threshold)


def drift_verdict(
    per_column: dict[str, dict[str, Any]],
    drifted: list[str],
    n_columns: int,
    n_drifted: int,
    share: float,
    drift_share_threshold: float,
) -> dict[str, Any]:
    reasons = []
    dataset_drift = n_columns > 0 and share >= drift_share_threshold
    if dataset_drift:
        detail = ", ".join(_column_reason(col, per_column[col]) for col in drifted)
        reasons.append(
            f"dataset drift: {n_drifted} of {n_columns} columns drifted "
            f"(share {share:.2f} >= {drift_share_threshold:.2f})" + (f": {detail}" if detail else "")
        )
    return {
        "passed": not dataset_drift,
        "reasons": reasons,
        "drifted_columns": drifted,
        "drift_share": round(share, 6),
        "metrics": {"n_columns": n_columns, "n_drifted": n_drifted, "per_column": per_column},
    }


def drift_verdict_from_snapshot(snapshot_dict: dict[str, Any], drift_share_threshold: float) -> dict[str, Any]:
    """The drift part of the verdict from an Evidently 0.7 ``Snapshot.dict()`` (see ``_parse_snapshot``).

    Dataset drift means ``share of drifted columns >= drift_share_threshold``. The share comes from the per-column
    results (the same stattests Evidently's ``DriftedColumnsCount`` uses); when a snapshot holds only the count
    metric, its count/share are used.

    :return: ``{"passed", "reasons", "drifted_columns", "drift_share",
        "metrics": {"n_columns", "n_drifted", "per_column": {col: {score, threshold, method, drifted}}}}``;
        ``passed`` is False on dataset drift, and ``reasons`` then names each drifted column with its test.
    """
    per_column, counts = _parse_snapshot(snapshot_dict)
    if per_column:
        return verdict_from_columns(per_column, drift_share_threshold)
    if counts is None:
        raise SnapshotError(
            "the Evidently snapshot holds no ValueDrift or DriftedColumnsCount metric: was it produced by "
            "Report([DataDriftPreset(...)]) with Evidently 0.7? Re-run the drift task."
        )
    n_drifted = int(counts["count"])
    share = counts["share"]
    n_columns = round(n_drifted / share) if share else 0
    return drift_verdict({}, [], n_columns, n_drifted, share, drift_share_threshold)
