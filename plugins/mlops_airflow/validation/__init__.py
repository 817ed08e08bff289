"""Data contract of a landed batch: the checks the pipeline itself needs, whatever the user's suite says.

``spec`` holds the specification (:class:`~mlops_airflow.validation.spec.ContractSpec`), ``contract`` the checks;
``_contract_scan`` accumulates the per-column counts chunk by chunk (Parquet row groups), so a batch is checked
without being held whole; ``reading`` streams batches (Parquet row groups, CSV rows) for the gate. No Airflow
import; pyarrow and numpy are imported inside functions.
"""

from __future__ import annotations

from mlops_airflow.validation.contract import CHECKS, ContractSpec, build_spec, run_contract

__all__ = ["CHECKS", "ContractSpec", "build_spec", "run_contract"]
