"""File helpers of the data validation gate; they live in ``mlops_airflow._io`` (one implementation)."""

from __future__ import annotations

from mlops_airflow._io import file_md5, fsync_dir, write_atomic

__all__ = ["file_md5", "fsync_dir", "write_atomic"]
