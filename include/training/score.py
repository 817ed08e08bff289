"""Batch scoring: a thin shim over the pack's generic scorer, ``python -m mlops_airflow.training.score``.

    python include/training/score.py --model-uri models:/churn_classifier@champion \
        --input in.parquet --output out.parquet [--features a,b,c] [--task-type ...] [--result result.json]

Kept so that ``[mlops] scoring_entrypoint=include/training/score.py`` and the image's
``/opt/training/score.py`` keep working; see ``mlops_airflow/training/score.py`` for the output columns and
exit codes. The pack comes from PYTHONPATH (the image sets it); from a checkout, ``plugins/`` beside this
folder is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from mlops_airflow.training.score import main
except ImportError:  # run from a checkout without the pack on PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from mlops_airflow.training.score import main

if __name__ == "__main__":
    sys.exit(main())
