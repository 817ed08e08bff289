"""The pack's ``[mlops]`` configuration section, read in one place (options are declared in
``get_provider_info.py``)."""

from __future__ import annotations


def mlops_conf(key: str, fallback: str | None = None) -> str | None:
    """``[mlops] <key>`` from Airflow's configuration (env ``AIRFLOW__MLOPS__<KEY>`` included)."""
    from airflow.configuration import conf

    return conf.get("mlops", key, fallback=fallback)
