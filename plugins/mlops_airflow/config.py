"""The pack's ``[mlops]`` configuration section, read in one place.

Every option is declared (description, example, default) in ``get_provider_info._OPTIONS``, which Airflow shows
in its configuration reference; ``mlops_conf`` refuses a name that is not declared, so an option cannot be read
without being documented. The include folder and the project root are found here, one way each.
"""

from __future__ import annotations

from pathlib import Path


def mlops_conf(key: str, fallback: str | None = None) -> str | None:
    """``[mlops] <key>`` from Airflow's configuration (env ``AIRFLOW__MLOPS__<KEY>`` included).

    :raises KeyError: ``key`` is not a declared option (add it to ``get_provider_info._OPTIONS``).
    """
    from airflow.configuration import conf

    from mlops_airflow.get_provider_info import _OPTIONS

    if key not in _OPTIONS:
        raise KeyError(f"[mlops] {key} is not a declared option; declare it in get_provider_info._OPTIONS")
    return conf.get("mlops", key, fallback=fallback)


def dags_folder_parent() -> Path:
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).resolve().parent


def include_dir() -> Path:
    """``[mlops] include_dir``, else ``include/`` beside the DAGs folder (the Astro project layout)."""
    configured = mlops_conf("include_dir")
    return Path(configured) if configured else dags_folder_parent() / "include"


def project_root() -> Path:
    """``[mlops] project_root`` (the deployed project: its locks are hashed into the record), else the DAGs
    folder's parent."""
    configured = mlops_conf("project_root")
    return Path(configured) if configured else dags_folder_parent()


def training_envs_dir() -> Path:
    """``[mlops] training_envs_dir``: where the local backend builds one virtual environment per training
    requirements file. A per-worker cache, not an artefact, so always a local folder: unset, it is
    ``<data_root>/training_envs`` when ``data_root`` is on this disk (``file://`` or a plain path), and
    ``$XDG_CACHE_HOME/mlops-airflow/training_envs`` (default ``~/.cache/mlops-airflow/training_envs``) when
    ``data_root`` is an object store (``s3://...``): each worker then builds its own environments once."""
    configured = mlops_conf("training_envs_dir")
    if configured:
        return Path(configured)
    import os
    from urllib.parse import urlsplit

    root = mlops_conf("data_root") or "/tmp/mlops-data"  # storage.DEFAULT_DATA_ROOT (storage reads this module)
    if "://" not in root:
        return Path(root).expanduser() / "training_envs"
    parts = urlsplit(root)
    if parts.scheme in ("file", "local"):
        return Path(parts.path) / "training_envs"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlops-airflow" / "training_envs"
