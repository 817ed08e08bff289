"""``FeastApplyOperator``: ``feast apply`` / ``feast plan`` on a feature repository (CI/CD DAGs only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.hooks.feast_store import FeastHook
from mlops_airflow.operators._feast_common import announce

if TYPE_CHECKING:
    from airflow.sdk import Context


class FeastApplyOperator(BaseOperator):
    """``feast apply`` on the connection's feature repository (``plan_only=True``: ``feast plan``, no change).

    Belongs in a CI/CD DAG that runs when definitions change, never inside the scheduled
    materialisation (applying there resets incremental state, feast#2905).

    Returns ``{repo_path, command, changes}`` (``changes``: the CLI's lines that describe a change).

    :param feast_conn_id: Airflow connection of the feature repository.
    :param repo_path: the feature repository (a folder with ``feature_store.yaml``); wins over the connection.
    :param plan_only: ``feast plan`` only (nothing changes).
    """

    ui_color = "#e8734a"

    def __init__(
        self, *, feast_conn_id: str = FeastHook.default_conn_name, plan_only: bool = False,
        repo_path: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id
        self.repo_path = repo_path
        self.plan_only = plan_only

    def execute(self, context: Context) -> dict[str, Any]:
        hook = FeastHook(feast_conn_id=self.feast_conn_id, repo_path=self.repo_path)
        command = "plan" if self.plan_only else "apply"
        with hook.feature_repo() as repo:  # per task: a clone of the data repository (apply may read the sources)
            output = hook.plan() if self.plan_only else hook.apply()
        repo_name = str(repo) if not hook.per_task else f"{hook.dvc_hook.settings.repo_url}:{hook.repo_subdir}"
        lines = [line.rstrip() for line in output.strip().splitlines() if line.strip()]
        for line in lines:
            self.log.info("feast: %s", line)
        markers = ("Created", "Deleted", "Updated", "+", "-", "~")
        changes = [ln.strip() for ln in lines if ln.strip().startswith(markers)]
        result = {"repo_path": repo_name, "command": command, "changes": changes[:200]}
        if not self.plan_only:
            announce(self, context, {**result, "changes": len(changes)})
        log_summary(self.log, f"feast-{command}", repo=repo_name, changes=len(changes))
        return result
