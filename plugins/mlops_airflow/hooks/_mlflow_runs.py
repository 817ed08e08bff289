"""The MLflow calls the operators make on runs, experiments and the registry, as methods of ``MlflowHook``.

``MlflowRunsMixin`` is mixed into ``MlflowHook`` (``class MlflowHook(MlflowRunsMixin, BaseHook)``): operators call
``self.hook.find_run(...)`` instead of holding an ``MlflowClient`` (the official providers' shape: Databricks'
operators call ``self._hook.run_now``). Every method goes through one client per hook instance (``client``), built
by the hook's ``get_client()`` (credentials applied there). ``mlflow`` is imported inside the methods only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MAX_METRICS_PER_BATCH", "MODEL_URI_TAG", "MlflowRunsMixin", "tag_filter"]

# MLflow's log_batch takes at most 1000 metrics a call; 900 leaves room.
MAX_METRICS_PER_BATCH = 900
# The run tag the training helper writes with the logged model's URI (``mlops_airflow.training``).
MODEL_URI_TAG = "mlops.model_uri"


def _filterable(value: Any) -> bool:
    """A tag value an MLflow filter can hold (no quote, no backslash)."""
    return "'" not in str(value) and "\\" not in str(value)


def tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow search filter on ``tags`` (``tags.`k` = 'v' and ...``); a value holding a quote or a backslash is
    left out (it cannot be written in a filter) and must be checked on the results (:meth:`MlflowRunsMixin.
    search_runs` does)."""
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items() if _filterable(value))


class MlflowRunsMixin:
    """Runs, experiments, logged models, aliases and versions, for ``MlflowHook``.

    Needs ``get_client()`` from the class it is mixed into (``MlflowHook``).
    """

    if TYPE_CHECKING:

        def get_client(self) -> MlflowClient: ...

    @cached_property
    def client(self) -> MlflowClient:
        """The ``MlflowClient`` of this hook instance (built once by ``get_client()``)."""
        return self.get_client()

    # -- experiments --------------------------------------------------------------------------------------------
    def experiment_id(self, name: str, *, create: bool = False) -> str | None:
        """The id of experiment ``name``; None when there is none and ``create`` is False.

        :param name: the experiment's name.
        :param create: create the experiment when missing (a concurrent creation by another task is fine), and
            refuse a deleted one (nothing can be logged to it).
        :raises RegistryError: ``create`` and the experiment is deleted (names how to restore it).
        """
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if create and experiment.lifecycle_stage == "deleted":
                raise RegistryError(
                    f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or choose "
                    "another experiment_name"
                )
            return str(experiment.experiment_id)
        if not create:
            return None
        try:
            return str(self.client.create_experiment(name))
        except Exception:
            # Another task created it in the meantime (RESOURCE_ALREADY_EXISTS).
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    # -- runs ---------------------------------------------------------------------------------------------------
    def search_runs(
        self,
        experiment_name: str,
        tags: Mapping[str, str],
        *,
        finished_only: bool = False,
        max_results: int = 100,
    ) -> list[Any]:
        """The runs of ``experiment_name`` carrying every tag of ``tags``, newest first ([] without the experiment).

        :param experiment_name: the experiment searched.
        :param tags: tag -> value; every one must match exactly (also those a filter cannot express).
        :param finished_only: only runs whose status is FINISHED.
        :param max_results: at most this many runs are searched.
        """
        experiment_id = self.experiment_id(experiment_name)
        if experiment_id is None:
            return []
        clauses = [clause for clause in [tag_filter(tags)] if clause]
        if finished_only:
            clauses.append("attributes.status = 'FINISHED'")
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=" and ".join(clauses),
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [r for r in runs if all(r.data.tags.get(key) == str(value) for key, value in tags.items())]

    def find_run(
        self,
        experiment_name: str,
        tags: Mapping[str, str],
        *,
        finished_only: bool = False,
        prefer_finished: bool = False,
    ) -> Any | None:
        """The newest run of ``experiment_name`` tagged with ``tags``, or None.

        :param experiment_name: the experiment searched.
        :param tags: tag -> value the run carries (e.g. the ``mlops.dag_id``/``run_id``/``task_id`` of a task).
        :param finished_only: only a FINISHED run.
        :param prefer_finished: the newest FINISHED run when there is one, else the newest of any status (the run
            a crashed earlier try left, which a retry reuses).
        """
        exact = all(_filterable(value) for value in tags.values())  # the server's filter is the whole check
        runs = self.search_runs(experiment_name, tags, finished_only=finished_only,
                                max_results=1 if exact and not prefer_finished else 100)
        if prefer_finished:
            runs = [r for r in runs if r.info.status == "FINISHED"] or runs
        return runs[0] if runs else None

    def create_run(self, experiment_id: str, tags: Mapping[str, str], *, run_name: str | None = None) -> Any:
        """A new run in ``experiment_id`` with ``tags`` (and the ``mlflow.runName`` tag when ``run_name``).

        :param experiment_id: from :meth:`experiment_id`.
        :param tags: the run's tags.
        :param run_name: the name the MLflow UI shows.
        """
        all_tags = {**tags, **({"mlflow.runName": run_name} if run_name else {})}
        return self.client.create_run(experiment_id, tags=all_tags)

    def set_run_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set each tag of ``tags`` on run ``run_id`` (values as text).

        :param run_id: the run.
        :param tags: tag -> value.
        """
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], *, step: int = 0) -> None:
        """Log ``metrics`` on run ``run_id`` at one timestamp, in batches MLflow accepts.

        :param run_id: the run.
        :param metrics: metric -> value (the caller leaves out values that are not finite, when it must).
        :param step: the step of every metric.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[start : start + MAX_METRICS_PER_BATCH])

    def log_run_artifact(self, run_id: str, local_path: str, artifact_dir: str | None = None) -> None:
        """Upload the file ``local_path`` to run ``run_id`` under ``artifact_dir``.

        :param run_id: the run.
        :param local_path: the file.
        :param artifact_dir: the folder in the run's artifacts (None: the root).
        """
        self.client.log_artifact(run_id, local_path, artifact_dir)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark run ``run_id`` ended with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``).

        :param run_id: the run.
        :param status: its final status.
        """
        self.client.set_terminated(run_id, status)

    def logged_model_uri(self, run: Any) -> str | None:
        """The URI of the model ``run`` logged: its ``mlops.model_uri`` tag, else ``models:/<id>`` of a logged
        model whose source run it is; None when it logged none.

        :param run: an MLflow ``Run`` (from :meth:`find_run`).
        """
        uri = run.data.tags.get(MODEL_URI_TAG)
        if uri:
            return str(uri)
        models = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        return f"models:/{models[0].model_id}" if models else None

    # -- the registry -------------------------------------------------------------------------------------------
    def find_registered_model(self, name: str) -> Any | None:
        """The registered model ``name``, or None when the registry has none of that name.

        :param name: the registered model.
        """
        try:
            return self.client.get_registered_model(name)
        except Exception as err:  # MLflow raises MlflowException(RESOURCE_DOES_NOT_EXIST)
            if "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err).lower():
                return None
            raise

    def model_versions(self, name: str, *, max_results: int = 1000) -> list[Any]:
        """The versions of registered model ``name`` (at most ``max_results``; [] for a name a filter cannot hold).

        :param name: the registered model.
        :param max_results: at most this many versions.
        """
        if "'" in name:
            return []
        return list(self.client.search_model_versions(f"name = '{name}'", max_results=max_results))

    def alias_versions(self, name: str, aliases: Sequence[str]) -> dict[str, str]:
        """``{alias: version}`` for the aliases of ``aliases`` that exist on registered model ``name``.

        :param name: the registered model.
        :param aliases: the aliases looked up (missing ones are left out).
        """
        from mlflow.exceptions import MlflowException

        found: dict[str, str] = {}
        for alias in aliases:
            try:
                found[alias] = str(self.client.get_model_version_by_alias(name, alias).version)
            except MlflowException:
                continue
        return found

    def version_run(self, name: str, version: str | int) -> Any:
        """The MLflow run that produced version ``version`` of registered model ``name``.

        :param name: the registered model.
        :param version: the version.
        """
        return self.client.get_run(self.client.get_model_version(name, str(version)).run_id)
