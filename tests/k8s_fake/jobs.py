"""Fake training jobs for the fake kubelet: fast stand-ins for ``include/training/train.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def mlflow_training_job(seen: list[dict[str, str]] | None = None) -> Callable[[dict[str, str], Any], int]:
    """A job that honours the env contract like train.py: one FINISHED MLflow run tagged with the task.

    ``seen`` collects the env each run received (to check secret references were resolved).
    """

    def job(env: dict[str, str], write: Callable[[str], None]) -> int:
        from mlflow import MlflowClient

        if seen is not None:
            seen.append(env)
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        name = env["MLFLOW_EXPERIMENT_NAME"]
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        write("[train] fake trainer: 1 epoch")
        tags = {**json.loads(env["MLOPS_RUN_TAGS"]), "mlops.model_uri": "models:/m-fake",
                "mlops.image_digest": env.get("MLOPS_IMAGE_DIGEST", "local"), "mlops.runtime.device": "cuda"}
        run = client.create_run(experiment_id, tags=tags)
        client.log_metric(run.info.run_id, "val_auc", 0.91)
        client.set_terminated(run.info.run_id, "FINISHED")
        write(f"TRAINING DONE run_id={run.info.run_id} val_auc=0.9100 device=cuda")
        return 0

    return job
