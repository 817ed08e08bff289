"""Wait for a new version of a DVC-tracked dataset (deferrable by default)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import DatasetVersionError
from mlops_airflow.triggers.dvc import DvcNewVersionTrigger, probe_dataset

if TYPE_CHECKING:
    from airflow.sdk import Context


class DvcNewVersionSensor(BaseSensorOperator):
    """Succeed when ``<dataset_path>.dvc`` on the data repository's branch records a new content hash.

    "New" means: different from ``since_md5`` (e.g. the md5 the last training used, templated), or, without it,
    different from the version found when the sensor starts. Commits that do not change the dataset do not count.
    Returns (XCom) ``{repo, path, rev, md5, size, nfiles, previous_md5}``, ready for ``DvcResolveVersionOperator``.

    Deferrable by default: the wait runs in the triggerer as ``DvcNewVersionTrigger`` (no worker slot held).
    For event-driven scheduling without a running DAG, put the same trigger in an ``AssetWatcher`` instead.

    :param dataset_path: the tracked path inside the repository (templated), e.g. ``data/events``.
    :param since_md5: the already-known version (templated); None = the version present at start.
    :param dvc_conn_id: connection of type ``dvc`` (``extra.repo_url`` is watched when set, else ``repo_path``).
    :param branch: branch to watch (default: the connection's, else ``main``).
    :param deferrable: wait in the triggerer (default); False pokes from a worker (``mode="poke"`` keeps the
        start-time baseline; ``mode="reschedule"`` needs ``since_md5``).
    :param mirror_dir: where the trigger keeps its bare mirror of a remote repository.
    """

    template_fields: Sequence[str] = ("dataset_path", "since_md5", "branch")
    ui_color = "#945dd6"

    def __init__(
        self,
        *,
        dataset_path: str,
        since_md5: str | None = None,
        dvc_conn_id: str = "dvc_default",
        branch: str | None = None,
        deferrable: bool = True,
        mirror_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not deferrable and self.mode == "reschedule" and since_md5 is None:
            raise ValueError(
                "DvcNewVersionSensor in reschedule mode needs since_md5: each reschedule starts afresh and would "
                "take the newest version as its baseline (use deferrable=True or mode='poke')"
            )
        self.dataset_path = dataset_path
        self.since_md5 = since_md5
        self.dvc_conn_id = dvc_conn_id
        self.branch = branch
        self.deferrable = deferrable
        self.mirror_dir = mirror_dir
        self._baseline: str | None = None

    def _target(self) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.dvc_conn_id)
        extra = conn.extra_dejson
        return {
            "dataset_path": self.dataset_path,
            "repo_url": extra.get("repo_url"),
            "repo_path": extra.get("repo_path") or conn.host,
            "branch": self.branch or extra.get("branch") or "main",
            "mirror_dir": self.mirror_dir,
        }

    def _payload(self, target: dict[str, Any], state: dict[str, Any], previous: str | None) -> dict[str, Any]:
        return {
            "repo": target["repo_url"] or target["repo_path"],
            "path": self.dataset_path,
            "rev": state["rev"],
            "md5": state["md5"],
            "size": state["size"],
            "nfiles": state["nfiles"],
            "previous_md5": previous or None,
        }

    def _done(self, payload: dict[str, Any]) -> dict[str, Any]:
        log_summary(self.log, "dvc-new-version", path=payload["path"], rev=str(payload["rev"])[:12], md5=payload["md5"],
                    previous_md5=payload["previous_md5"], repo=payload["repo"])
        return payload

    def execute(self, context: Context) -> Any:
        target = self._target()
        state = probe_dataset(**target) or {}
        current = state.get("md5")
        if self.since_md5 is not None and current and current != self.since_md5:
            return self._done(self._payload(target, state, self.since_md5))
        self._baseline = self.since_md5 if self.since_md5 is not None else (current or "")
        self.log.info(
            "waiting for a version of %s other than md5 %s (now at %s)",
            self.dataset_path, self._baseline or "(none)", str(state.get("rev"))[:12],
        )
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=DvcNewVersionTrigger(
                dataset_path=self.dataset_path,
                dvc_conn_id=self.dvc_conn_id,
                branch=target["branch"],
                since_md5=self._baseline,
                poll_interval=float(self.poke_interval),
                once=True,
                mirror_dir=self.mirror_dir,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
        return None

    def poke(self, context: Context) -> PokeReturnValue:
        target = self._target()
        state = probe_dataset(**target) or {}
        md5 = state.get("md5")
        if md5 and md5 != self._baseline:
            return PokeReturnValue(is_done=True, xcom_value=self._done(self._payload(target, state, self._baseline)))
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or not event.get("md5"):
            raise DatasetVersionError(
                f"DvcNewVersionSensor for {self.dataset_path} resumed without a version ({event!r}); check the "
                "triggerer log"
            )
        return self._done(event)
