"""Feast hook: connection type ``feast`` -> a ``FeatureStore`` on any feature repository.

Connection fields (explicit arguments win, then the extra):
- ``extra.repo_path`` (or host): the feature repository (the folder with ``feature_store.yaml``);
- ``extra.feature_store_yaml``: an alternative config file name inside it (e.g. for Redis in production).

``apply`` runs as a child process (``feast apply``), as Feast's own CLI does it, and belongs in a
CI/CD DAG: applying inside the scheduled materialisation resets incremental state (feast#2905).
"""

from __future__ import annotations

import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from mlops_airflow.exceptions import FeatureStoreError

if TYPE_CHECKING:
    from feast import FeatureStore


class FeastHook(BaseHook):
    """Opens a Feast feature store.

    :param feast_conn_id: Airflow connection of type ``feast``.
    :param repo_path: explicit feature repository path; wins over the connection.
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "feast_default"
    conn_type = "feast"
    hook_name = "Feast feature store"

    def __init__(self, feast_conn_id: str = default_conn_name, repo_path: str | None = None) -> None:
        super().__init__()
        self.feast_conn_id = feast_conn_id
        self._explicit_repo_path = repo_path

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "password"],
            "relabeling": {"host": "Feature repository path"},
            "placeholders": {"extra": '{"repo_path": "/opt/feature_repo", "feature_store_yaml": "feature_store.yaml"}'},
        }

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
    def repo_path(self) -> Path:
        path = self._explicit_repo_path or self._extra.get("repo_path")
        if not path:
            raise ValueError(f"Connection {self.feast_conn_id!r} names no feature repository: set extra.repo_path")
        repo = Path(path).expanduser().resolve()
        if not (repo / self.config_file).is_file():
            raise FeatureStoreError(
                f"{repo / self.config_file} not found: connection {self.feast_conn_id!r} must point at a Feast "
                "feature repository (a folder with feature_store.yaml)"
            )
        return repo

    @cached_property
    def config_file(self) -> str:
        return self._extra.get("feature_store_yaml", "feature_store.yaml")

    def get_conn(self) -> FeatureStore:
        return self.get_store()

    def get_store(self) -> FeatureStore:
        from feast import FeatureStore

        return FeatureStore(repo_path=str(self.repo_path), fs_yaml_file=self.repo_path / self.config_file)

    def apply(self, env: dict[str, str] | None = None) -> str:
        """``feast apply`` in the repository (a child process); returns its output."""
        argv = [sys.executable, "-m", "feast.cli.cli", "--chdir", str(self.repo_path)]
        if self.config_file != "feature_store.yaml":
            argv += ["--feature-store-yaml", self.config_file]
        proc = subprocess.run([*argv, "apply"], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise FeatureStoreError(f"feast apply failed in {self.repo_path}: {tail}")
        return proc.stdout

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

    def test_connection(self) -> tuple[bool, str]:
        try:
            store = self.get_store()
            views = [fv.name for fv in store.list_feature_views()]
        except Exception as err:  # noqa: BLE001
            return False, str(err)
        return True, f"project {store.project}: feature views {views}"
