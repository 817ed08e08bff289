"""Feast operators, kept importable from their first home for one release.

The operators now live in one module per job:

- ``operators.feast_apply``: ``FeastApplyOperator`` (``feast apply`` / ``feast plan``, CI/CD DAGs only);
- ``operators.feast_materialize``: ``plan_windows``, ``FeastMaterializationWindowsOperator``,
  ``FeastMaterializeOperator`` and ``FeastMaterializationRecordOperator`` (offline -> online store in bounded
  windows);
- ``operators.feast_training_set``: ``FeastTrainingSetOperator`` with ``definitions_hash`` and ``frame_hash``
  (point-in-time training sets);
- ``operators.feast_skew``: ``FeatureSkewCheckOperator`` (training-serving skew);
- ``operators._feast_common``: ``parse_instant`` and the ``feast://`` asset event they share.

Import from those; this module only re-exports them.
"""

from __future__ import annotations

from mlops_airflow.operators._feast_common import parse_instant
from mlops_airflow.operators.feast_apply import FeastApplyOperator
from mlops_airflow.operators.feast_materialize import (
    FeastMaterializationRecordOperator,
    FeastMaterializationWindowsOperator,
    FeastMaterializeOperator,
    plan_windows,
)
from mlops_airflow.operators.feast_skew import FeatureSkewCheckOperator
from mlops_airflow.operators.feast_training_set import FeastTrainingSetOperator, definitions_hash, frame_hash

__all__ = [
    "FeastApplyOperator",
    "FeastMaterializationRecordOperator",
    "FeastMaterializationWindowsOperator",
    "FeastMaterializeOperator",
    "FeastTrainingSetOperator",
    "FeatureSkewCheckOperator",
    "definitions_hash",
    "frame_hash",
    "parse_instant",
    "plan_windows",
]
