"""Feast hook: connection type ``feast`` -> a ``FeatureStore`` on any feature repository.

Connection fields (explicit arguments win, then the extra):
- ``extra.repo_path`` (or host): the feature repository (the folder with ``feature_store.yaml``);
- ``extra.feature_store_yaml``: an alternative config file name inside it (e.g. for Redis in production);
- ``extra.dvc_conn_id``: the DVC connection whose data repository holds the feature repository and the files its
  ``FileSource``s read. When that connection is per task (``repo_url``, no ``repo_path``: no shared disk),
  ``FeastHook.feature_repo()`` clones it for the block and pulls the data; when it is a fixed working copy, the
  feature repository is ``<its repo_path>/<repo_subdir>`` (unless ``extra.repo_path`` names one);
- ``extra.repo_subdir``: the feature repository's folder inside the data repository (default ``.``);
- ``extra.data_paths``: the DVC-tracked paths (relative to the data repository's root) the file sources read, a
  list or a comma-separated string; default: derived from the registry's ``FileSource``s (relative paths only).
  A per-task feature repository needs a shared registry (SQL) and online store: its ``.feast/`` is the clone's.

``apply`` runs as a child process (``feast apply``), as Feast's own CLI does it, and belongs in a
CI/CD DAG: applying inside the scheduled materialisation resets incremental state (feast#2905).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from mlops_airflow.exceptions import FeatureStoreError
from mlops_airflow.hooks import _feast_repo
from mlops_airflow.hooks._feast_arrow import gc_paused, keys_seen_later

if TYPE_CHECKING:
    from feast import FeatureStore

    from mlops_airflow.hooks.dvc_repo import DvcHook


class FeastHook(BaseHook):
    """Opens a Feast feature store.

    Open the store inside ``with hook.feature_repo():`` wherever the task reads the offline source or the
    definitions: with a per-task DVC connection (``extra.dvc_conn_id``) that block has the task's own clone of the
    data repository, with the data pulled; otherwise it is the fixed repository.

    :param feast_conn_id: Airflow connection of type ``feast``.
    :param repo_path: explicit feature repository path; wins over the connection (and makes the repository fixed).
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "feast_default"
    conn_type = "feast"
    hook_name = "Feast feature store"

    def __init__(self, feast_conn_id: str = default_conn_name, repo_path: str | None = None) -> None:
        super().__init__()
        self.feast_conn_id = feast_conn_id
        self._explicit_repo_path = repo_path
        self._scoped: Path | None = None  # the clone's feature repository inside feature_repo()
        self._implicit: Path | None = None  # a definitions-only clone opened outside feature_repo()

    @cached_property
    def _extra(self) -> dict[str, Any]:
        try:
            conn = self.get_connection(self.feast_conn_id)
        except Exception:
            if self._explicit_repo_path:
                return {}
            raise
        return {"repo_path": conn.host, **conn.extra_dejson}

    @cached_property
    def dvc_conn_id(self) -> str | None:
        """The DVC connection of the data repository holding the feature repository (None: a plain folder)."""
        return None if self._explicit_repo_path else (self._extra.get("dvc_conn_id") or None)

    @cached_property
    def repo_subdir(self) -> str:
        return _feast_repo.repo_subdir(self._extra.get("repo_subdir"), self.feast_conn_id)

    @cached_property
    def data_paths(self) -> list[str] | None:
        """``extra.data_paths`` (DVC paths from the data repository's root); None = derived from the sources."""
        return _feast_repo.data_paths(self._extra.get("data_paths"), self.feast_conn_id)

    @cached_property
    def dvc_hook(self) -> DvcHook:
        from mlops_airflow.hooks.dvc_repo import DvcHook

        if not self.dvc_conn_id:
            raise ValueError(f"connection {self.feast_conn_id!r} names no extra.dvc_conn_id")
        return DvcHook(dvc_conn_id=self.dvc_conn_id)

    @cached_property
    def per_task(self) -> bool:
        """True when the feature repository is a clone per use (``dvc_conn_id`` names a per-task connection)."""
        return bool(self.dvc_conn_id) and self.dvc_hook.settings.per_task

    @property
    def repo_path(self) -> Path:
        """The feature repository: the clone's inside ``feature_repo()``, else the fixed folder.

        Outside ``feature_repo()`` a per-task connection clones the definitions only (no data pulled), kept until
        the hook goes away: enough for the registry and ``feature_store.yaml``, not for the offline source.
        """
        if self._scoped is not None:
            return self._scoped
        if self.per_task:
            return self._definitions_clone()
        return self._fixed_repo_path

    @cached_property
    def _fixed_repo_path(self) -> Path:
        path = self._explicit_repo_path or self._extra.get("repo_path")
        if not path and self.dvc_conn_id:
            path = str(self.dvc_hook.settings.repo_path / self.repo_subdir)
        if not path:
            raise ValueError(f"Connection {self.feast_conn_id!r} names no feature repository: set extra.repo_path "
                             "(a folder) or extra.dvc_conn_id (the data repository that holds it)")
        return self._checked(Path(path).expanduser().resolve())

    def _checked(self, repo: Path) -> Path:
        if not (repo / self.config_file).is_file():
            where = (f"{self.repo_subdir} of a clone of {self.dvc_hook.settings.repo_url} (connection "
                     f"{self.dvc_conn_id!r})" if self.per_task else str(repo))
            raise FeatureStoreError(
                f"{self.config_file} not found in {where}: connection {self.feast_conn_id!r} must point at a Feast "
                "feature repository (a folder with feature_store.yaml); check repo_path / repo_subdir and that the "
                "definitions are committed"
            )
        return repo

    def _definitions_clone(self) -> Path:
        if self._implicit is None:
            stack = contextlib.ExitStack()
            clone = stack.enter_context(self.dvc_hook.working_copy())
            weakref.finalize(self, stack.close)  # the clone goes with the hook (a task's process)
            self._implicit = self._checked((clone / self.repo_subdir).resolve())
        return self._implicit

    @contextlib.contextmanager
    def feature_repo(self, *, data: bool = True) -> Iterator[Path]:
        """The feature repository for the ``with`` block, with its file sources' data (re-entrant).

        Per task (``extra.dvc_conn_id`` names a per-task DVC connection): a clone of the data repository for the
        block (``DvcHook.working_copy``), ``data_paths`` pulled into it (``data=False``: definitions only, e.g.
        for registry look-ups), ``repo_path`` pointing at ``<clone>/<repo_subdir>``; the clone is removed when the
        block exits. Open stores inside the block. Otherwise: the fixed repository (nothing is cloned or pulled).
        """
        if not self.per_task or self._scoped is not None:
            yield self.repo_path
            return
        dvc = self.dvc_hook
        explicit = self.data_paths
        with dvc.working_copy(*(explicit or ()) if data else ()) as clone:
            repo = self._checked((clone / self.repo_subdir).resolve())
            self._scoped = repo
            try:
                if data and explicit is None:
                    derived = _feast_repo.source_data_paths(self.get_store(), clone, self.repo_subdir,
                                                            self.feast_conn_id)
                    self.log.info("pulling the DVC paths the file sources read: %s", derived)
                    with dvc.working_copy(*derived):  # re-entrant: pulls into this clone
                        pass
                yield repo
            finally:
                self._scoped = None

    @cached_property
    def config_file(self) -> str:
        return self._extra.get("feature_store_yaml", "feature_store.yaml")

    def get_conn(self) -> FeatureStore:
        return self.get_store()

    def get_store(self) -> FeatureStore:
        from feast import FeatureStore

        return FeatureStore(repo_path=str(self.repo_path), fs_yaml_file=self.repo_path / self.config_file)

    def _cli(self, command: str, env: dict[str, str] | None = None) -> str:
        argv = [sys.executable, "-m", "feast.cli.cli", "--chdir", str(self.repo_path)]
        if self.config_file != "feature_store.yaml":
            # Feast resolves this path against the process cwd, not --chdir: pass it absolute
            argv += ["--feature-store-yaml", str(self.repo_path / self.config_file)]
        proc = subprocess.run([*argv, command], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise FeatureStoreError(
                f"feast {command} failed in {self.repo_path}: {' | '.join(lines[-5:])}; fix the feature definitions "
                "(or feature_store.yaml) and rerun the feature-repo CI/CD DAG"
            )
        return proc.stdout

    def apply(self, env: dict[str, str] | None = None) -> str:
        """``feast apply`` in the repository (a child process); returns its output."""
        return self._cli("apply", env)

    def plan(self, env: dict[str, str] | None = None) -> str:
        """``feast plan``: what ``apply`` would change (a child process, registry untouched); returns its output."""
        return self._cli("plan", env)

    def get_feature_service(self, store: FeatureStore, name: str):
        from feast.errors import FeatureServiceNotFoundException

        try:
            return store.get_feature_service(name)
        except FeatureServiceNotFoundException:
            known = sorted(fs.name for fs in store.list_feature_services())
            raise FeatureStoreError(
                f"Feast feature service {name!r} does not exist in project {store.project!r} "
                f"({self.repo_path}); known services: {known or 'none'}. Check the name, or run the "
                "feast apply DAG if the definition is new"
            ) from None

    # -- bounded materialisation ------------------------------------------------------------
    def materialize_window(
        self,
        store: FeatureStore,
        view_name: str,
        start: datetime,
        end: datetime,
        horizon_end: datetime | None = None,
        write_batch_rows: int = 20_000,
    ) -> dict[str, Any]:
        """Materialise one feature view for ``[start, end)`` with memory bounded by that window.

        Feast's file offline store reads the *whole* source into memory for every ``materialize`` call and
        writes the result as one batch (feast#6307, #2071); so for a ``FileSource`` this reads only the window
        (Parquet predicate push-down on the timestamp column, projected columns), keeps the latest row per
        entity, and writes through ``write_to_online_store`` in batches of ``write_batch_rows``. Other sources
        (SQL warehouses push the time filter down themselves) go through ``store.materialize`` for the window.

        With ``horizon_end`` (the end of the whole interval being materialised), an entity that also has a row
        in ``[end, horizon_end)`` is left to the later window that holds its newest row. So every entity is
        written exactly once per interval and windows may run, or be retried, in any order without an older
        value overwriting a newer one (the SQLite online store upserts without comparing event times).

        Returns ``{view, mode, rows_read, entities_written, skipped_newer}``.
        """
        from feast.infra.offline_stores.file_source import FileSource

        view = store.get_feature_view(view_name)
        source = view.batch_source
        offline_type = str(getattr(store.config.offline_store, "type", ""))
        if not isinstance(source, FileSource) or offline_type not in ("file", "dask"):
            store.materialize(start_date=start, end_date=end, feature_views=[view_name])
            self._report_materialized(store, view_name)
            return {"view": view_name, "mode": "feast", "rows_read": None, "entities_written": None,
                    "skipped_newer": None}
        facts = self._materialize_file_window(store, view, start, end, horizon_end, write_batch_rows)
        store.registry.apply_materialization(view, store.project, start, end, commit=True)
        self._report_materialized(store, view_name)
        return {"view": view_name, "mode": "arrow", **facts}

    # -- lineage (Airflow's hook lineage collector; a no-op unless OpenLineage is enabled) --------------------------
    def _report_materialized(self, store: FeatureStore, view_name: str) -> None:
        from mlops_airflow.lineage import feature_view_asset, report_lineage

        report_lineage(self, outputs=[feature_view_asset(store.project, view_name)])

    def historical_features(self, store: FeatureStore, entity_df: Any, feature_service: Any) -> Any:
        """``store.get_historical_features`` for a feature service, reporting its feature views as inputs.

        :param store: the feature store (``get_store()``).
        :param entity_df: the entity rows (keys + event timestamps).
        :param feature_service: the Feast ``FeatureService`` (``get_feature_service``).
        """
        from mlops_airflow.lineage import feature_view_asset, report_lineage

        job = store.get_historical_features(entity_df=entity_df, features=feature_service)
        views = [p.name for p in feature_service.feature_view_projections]
        report_lineage(self, inputs=[feature_view_asset(store.project, v) for v in views])
        return job

    def report_training_set(self, training_set: dict[str, Any]) -> None:
        """Report a training set written from this store (a training-set task's XCom) as an output."""
        from mlops_airflow.lineage import report_lineage, training_set_asset

        report_lineage(self, outputs=[training_set_asset(training_set)])

    def _materialize_file_window(
        self, store: Any, view: Any, start: datetime, end: datetime, horizon_end: datetime | None, batch: int
    ) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as pads
        from feast.infra.offline_stores.file_source import FileSource

        source = view.batch_source
        uri = FileSource.get_uri_for_file_path(store.config.repo_path, source.file_options.uri)
        filesystem, path = FileSource.create_filesystem_and_path(uri, source.file_options.s3_endpoint_override)
        try:
            dataset = pads.dataset(path, format="parquet", filesystem=filesystem)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise FeatureStoreError(
                f"feature view {view.name}: cannot open its offline source {uri}: {err}; check the FileSource path "
                f"in the feature repository {self.repo_path} (and that the data version is checked out there"
                + (f"; the task pulled the DVC paths {self.data_paths or 'derived from the sources'} of connection "
                   f"{self.dvc_conn_id!r}: add this source's to extra.data_paths" if self.per_task else
                   "; with no shared disk set extra.dvc_conn_id so each task clones the data repository")
                + ")"
            ) from err
        to_source = {v: k for k, v in (source.field_mapping or {}).items()}  # feature name -> source column
        keys = [to_source.get(c.name, c.name) for c in view.entity_columns]
        features = [to_source.get(f.name, f.name) for f in view.features]
        ts = source.timestamp_field
        created = source.created_timestamp_column or None
        columns = list(dict.fromkeys([*keys, *features, ts, *([created] if created else [])]))
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise FeatureStoreError(
                f"feature view {view.name}: columns {missing} are missing from its offline source {uri} (it has "
                f"{dataset.schema.names}); fix the data or the feature definitions"
            )
        ts_type = dataset.schema.field(ts).type

        def bound(moment: datetime) -> Any:
            if pa.types.is_timestamp(ts_type) and ts_type.tz is None:  # naive = UTC, as Feast reads it
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return pa.scalar(moment, type=ts_type)

        in_window = (pc.field(ts) >= bound(start)) & (pc.field(ts) < bound(end))
        try:
            table = dataset.to_table(columns=columns, filter=in_window)
        except (OSError, pa.ArrowException) as err:
            raise FeatureStoreError(
                f"feature view {view.name}: the offline source {uri} has an unreadable file ({err}); nothing was "
                f"written to the online store for [{start.isoformat()}, {end.isoformat()}). Move that file out of "
                "the source (the validation gate quarantines such batches), then clear this task"
            ) from err
        rows_read = table.num_rows
        if rows_read == 0:
            return {"rows_read": 0, "entities_written": 0, "skipped_newer": 0}
        frame = table.to_pandas()
        del table
        order = [ts, *([created] if created else [])]
        frame = frame.sort_values(order, kind="stable").drop_duplicates(keys, keep="last")
        skipped = 0
        if horizon_end is not None and horizon_end > end:
            later = (pc.field(ts) >= bound(end)) & (pc.field(ts) < bound(horizon_end))
            try:
                drop = keys_seen_later(dataset.to_batches(columns=keys, filter=later), frame, keys)
            except (OSError, pa.ArrowException) as err:
                raise FeatureStoreError(
                    f"feature view {view.name}: the offline source {uri} has an unreadable file ({err}); nothing was "
                    f"written to the online store for [{start.isoformat()}, {end.isoformat()}). Move that file out "
                    "of the source (the validation gate quarantines such batches), then clear this task"
                ) from err
            skipped = int(drop.sum())
            frame = frame[~drop]
        with gc_paused():
            for begin in range(0, len(frame), batch):
                store.write_to_online_store(view.name, df=frame.iloc[begin : begin + batch], allow_registry_cache=True)
        return {"rows_read": rows_read, "entities_written": len(frame), "skipped_newer": skipped}

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.feature_repo(data=False):
                store = self.get_store()
                views = [fv.name for fv in store.list_feature_views()]
        except Exception as err:  # noqa: BLE001
            return False, str(err)
        return True, f"project {store.project}: feature views {views}"
