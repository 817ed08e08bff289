"""The training contract of the pack, for entry points of any framework (scikit-learn, xgboost, torch ...).

Imported in the *training* environment: no Airflow, and only the standard library at import time.

- :func:`context` / :class:`TrainingContext` (``context.py``): the training set, its columns, the config and a
  tagged MLflow run, read from the environment contract the training operators set;
- ``python -m mlops_airflow.training.run package.module:function`` (``run.py``): runs ``function(ctx)``;
- ``python -m mlops_airflow.training.score`` (``score.py``): the batch scorer of any MLflow (pyfunc) model;
- ``data.py``: tables at a URI (local path, ``file://``, ``s3://``) read and written with pyarrow's filesystems, the
  same code in a worker's subprocess and in a pod;
- ``env.py``: a virtual environment per requirements file (used by the local backend, Airflow side).
"""

from __future__ import annotations

from mlops_airflow.training.context import TrainingContext, TrainingInputError, context

__all__ = ["TrainingContext", "TrainingInputError", "context"]
