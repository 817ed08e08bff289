"""Monitoring operators, kept importable from their first home for one release.

The operators now live in their own modules: ``operators.drift`` (``DataDriftOperator``), ``operators.quality``
(``QualityCheckOperator``) and ``operators.retrain_guard`` (``RetrainGuardOperator``); the statistics, with no
Airflow import, in ``monitoring.verdict`` and ``monitoring.quality_stats``. Import from those; this module only
re-exports them.
"""

from __future__ import annotations

from mlops_airflow.monitoring.quality_stats import (
    QUALITY_METRICS,
    classification_quality,
    confidence_stats,
    outcome_stats,
)
from mlops_airflow.monitoring.verdict import verdict_from_columns
from mlops_airflow.operators.drift import (
    ENGINES,
    REPORT_FILE,
    VERDICT_FILE,
    DataDriftOperator,
    drift_verdict_from_snapshot,
)
from mlops_airflow.operators.quality import QUALITY_REPORT_FILE, QUALITY_VERDICT_FILE, QualityCheckOperator
from mlops_airflow.operators.retrain_guard import RetrainGuardOperator

__all__ = [
    "ENGINES",
    "QUALITY_METRICS",
    "QUALITY_REPORT_FILE",
    "QUALITY_VERDICT_FILE",
    "REPORT_FILE",
    "VERDICT_FILE",
    "DataDriftOperator",
    "QualityCheckOperator",
    "RetrainGuardOperator",
    "classification_quality",
    "confidence_stats",
    "drift_verdict_from_snapshot",
    "outcome_stats",
    "verdict_from_columns",
]
