"""The one-call pipeline API: a typed :class:`ModelSpec` and task-group factories that build the loop from it.

```python
from mlops_airflow.pipeline import ModelSpec, continuous_training, model_monitoring

spec = ModelSpec(name="my_model", label="y", entity_columns=["id"], source="include/data.py:daily_batch",
                 features=["x1", "x2"], entrypoint="include/train.py", min_metrics={"auc": 0.7},
                 holdout="include/data.py:holdout_batch")
with DAG("my_model_ct", schedule=None, render_template_as_native_obj=True):
    continuous_training(spec)
```

Exports are lazy (``__getattr__``): importing the spec does not import the Task SDK's operators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_airflow.pipeline.ct import continuous_training
    from mlops_airflow.pipeline.monitoring import model_monitoring
    from mlops_airflow.pipeline.spec import ModelSpec, SpecError, load_spec

__all__ = ["ModelSpec", "SpecError", "continuous_training", "load_spec", "model_monitoring"]

_HOMES = {"ModelSpec": "spec", "SpecError": "spec", "load_spec": "spec", "continuous_training": "ct",
          "model_monitoring": "monitoring"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"mlops_airflow.pipeline.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'mlops_airflow.pipeline' has no attribute {name!r}")
