"""Data validation gate: structural checks, the pipeline contract and a Great Expectations 1.x suite, then a verdict.

The operator returns a small verdict (XCom) in the pack's gate shape ``{passed, reasons, metrics, evidence_uri,
...}``. A failing batch is moved (copy, fsync, md5 check, then delete) to a quarantine folder with a
``quarantine.json`` that says why, and ``DataValidationError`` is raised with a message an on-call engineer can act
on: the batch, its md5 and rows, the failing contract checks and expectations with counts and example values,
where the batch and the full result went, and the next step.

The operator composes private modules: ``_validation_structural`` (file missing, empty, unreadable, a repeated CSV
header, zero rows, timestamps without a timezone), ``_validation_contract`` (the pipeline contract of
``mlops_airflow.validation``), ``_validation_gx`` (reading and running the suite, describing its failures),
``_validation_quarantine`` (the verified move, its manifest, the DVC version) and ``_validation_report`` (the result
JSON, the HTML summary, the evidence link, the failure message). ``RESULT_FILE``, ``SUMMARY_FILE``,
``QUARANTINE_FILE`` and ``MAX_REASONS_IN_MESSAGE`` stay importable from here.

great_expectations, pandas and pyarrow are imported inside functions only: DAG files that use this operator parse
without them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow import storage
from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.links.mlflow import EvidenceLink
from mlops_airflow.operators._common import run_identity, run_uri
from mlops_airflow.operators._validation_contract import (
    check_contract,
    contract_reasons,
    contract_spec,
    contract_summary,
    not_run_contract,
)
from mlops_airflow.operators._validation_gx import expectation_configs, failure_reasons, load_suite, run_suite
from mlops_airflow.operators._validation_quarantine import QUARANTINE_FILE, FailedBatch, dispose
from mlops_airflow.operators._validation_report import (
    MAX_REASONS_IN_MESSAGE,
    RESULT_FILE,
    SUMMARY_FILE,
    Evidence,
    failure_message,
    not_run_result,
    persist_link,
    result_metrics,
    write_evidence,
)
from mlops_airflow.operators._validation_structural import check_batch
from mlops_airflow.validation.spec import DEFAULT_ALLOWED_LATENESS, DEFAULT_CLOCK_SKEW

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MAX_REASONS_IN_MESSAGE", "QUARANTINE_FILE", "RESULT_FILE", "SUMMARY_FILE", "DataValidationGateOperator"]


class DataValidationGateOperator(BaseOperator):
    """Validate a landed batch: structural checks, the pipeline contract, a Great Expectations suite; else quarantine.

    Order of checks:

    1. Structural (each a one-line reason; the first that fails stops the rest): the file is missing, empty
       (0 bytes) or unreadable ("corrupt Parquet: ..."), a CSV whose header row repeats inside the data, zero
       rows, or ``timestamp_column`` holding timestamps without a timezone (a CSV value without an offset such as
       ``Z`` or ``+00:00`` is naive).
    2. The pipeline contract (``mlops_airflow.validation.contract``), always on, whatever the suite says:
       ``entity_keys_present``, ``entity_keys_not_null``, ``timestamp_present``, ``timestamp_not_future`` (after
       now + ``clock_skew``), ``timestamp_in_interval`` (``[interval_start, interval_end + allowed_lateness]``),
       ``features_not_null`` (missing, entirely null, or over ``max_null_share``), ``features_finite`` (no +/-inf),
       ``label_present``, ``label_in_domain`` (``{0, 1}``/bool for binary classification, finite numbers for
       regression), ``label_not_constant`` and ``extra_columns``. A check that does not apply is ``skipped`` with
       the reason in the result. A Parquet batch is read a row group at a time for it.
    3. The suite (JSON, ``{"name", "expectations": [{"type", "kwargs", "meta"}]}``) on an ephemeral GX context.
       With ``key_columns``, ``expect_column_values_to_not_be_null`` for each of ``key_columns`` +
       ``timestamp_column`` and ``expect_compound_columns_to_be_unique`` on them are added.

    The full result (``validation_result.json``: the GX result plus ``contract``) and an HTML summary
    (``validation_summary.html``) go to ``results_dir/<dag_id>/<run_id>/<task_id>/`` whatever the outcome. On
    success returns (XCom)::

        {"passed": True, "reasons": [], "warnings": [], "metrics": {"evaluated", "successful", "failed", "rows"},
         "contract": {"evaluated", "successful", "failed", "warnings", "skipped", "failed_checks", "warned_checks"},
         "evidence_uri": "file://.../validation_result.json", "summary_uri": "file://.../validation_summary.html",
         "data_md5": "<md5 of the file, or of the sorted md5s of a directory's Parquet files>",
         "suite_rows": <rows the suite ran on>, "quarantined_to": None, "quarantine_version": None}

    On failure, with ``quarantine_on_failure``, the batch is moved byte-identical to
    ``quarantine_dir/<YYYYmmddTHHMMSS>_<md5[:12]>/<original name>`` next to a ``quarantine.json`` (reasons, source,
    ids, that verdict); with ``quarantine_dvc_conn_id`` that folder is also versioned in the data repository; then
    ``DataValidationError`` is raised. A structural failure quarantines too. A suite that cannot be read or built,
    or a contract parameter that is wrong, raises ``MLOpsError`` and leaves the batch where it is.

    :param data_path: the batch: a Parquet or CSV file, or a directory of Parquet files (templated); a URI
        (``s3://...``, ``file://...``) or a local path. A remote batch is staged in the task's temporary folder.
    :param suite_path: the expectation suite, a JSON file (templated). Relative paths resolve against the worker's
        working directory.
    :param quarantine_dir: where failed batches are moved (templated): a URI or a local folder.
    :param results_dir: where the result JSON and the HTML summary go (templated): a URI or a local folder.
    :param key_columns: entity key columns (templated); nulls in them or in ``timestamp_column``, and duplicate
        (``key_columns`` + ``timestamp_column``) rows, are failures. None = no key checks.
    :param entity_columns: alias of ``key_columns`` (the name the model metadata uses); give one of the two.
    :param timestamp_column: the event time column (templated); it must be timezone-aware, not in the future and
        inside the interval. Required when entity columns or an interval are given. None = no timestamp checks.
    :param interval_start: the batch's claimed interval start, an ISO string with an offset or an aware datetime
        (templated, e.g. ``"{{ data_interval_start }}"``). None/"" = no lower bound.
    :param interval_end: the claimed interval end (templated). None/"" = no upper bound.
    :param allowed_lateness: how long after ``interval_end`` an event may be stamped (timedelta or seconds; 6 h).
    :param clock_skew: how far past now a timestamp may be (timedelta or seconds; 5 min).
    :param label_column: the label (templated); None = no label checks (reported as skipped).
    :param task_type: ``binary_classification`` (default) or ``regression`` (templated, stored as
        ``model_task_type``: ``BaseOperator.task_type`` is Airflow's): the label's domain.
    :param feature_columns: the feature columns (templated); None = every column not a key, timestamp or label.
    :param max_null_share: a feature column with a larger share of nulls fails (0..1; 1.0 = only entirely null).
    :param extra_columns: columns outside keys + timestamp + label + features + the suite's columns:
        ``"fail"``, ``"warn"`` or ``"ignore"`` (templated). None = ``"fail"`` when ``feature_columns`` is given
        or the suite names columns, else ``"ignore"`` (said in the result).
    :param suite_sample_rows: None (default) = the suite runs on the whole batch, read into memory. N = a Parquet
        batch of more rows is read only up to its first N rows (row groups) for the suite, said in the result
        and the verdict (``suite_rows``); the contract checks still read every row, a row group at a time.
    :param quarantine_on_failure: move a failing batch to ``quarantine_dir`` (default); False leaves it in place.
    :param max_examples: unexpected values kept per expectation and per contract check, shown in the message.
    :param quarantine_dvc_conn_id: a ``dvc`` connection: the quarantine folder is also copied into that data
        repository under ``quarantine_dataset_path/<folder>/`` and versioned there (dvc add + git commit + dvc
        push); the verdict then carries ``quarantine_version`` ``{repo, rev, path, md5, entry}``. None = local only.
    :param quarantine_dataset_path: the tracked folder in the data repository (default ``quarantine``).
    :param evidence_url_prefix: base URL under which ``results_dir`` is served; the task's "Evidence report" link
        then points to the HTML summary there. None = ``file://`` URI.
    """

    template_fields: Sequence[str] = (
        "data_path",
        "suite_path",
        "quarantine_dir",
        "results_dir",
        "key_columns",
        "timestamp_column",
        "interval_start",
        "interval_end",
        "label_column",
        "model_task_type",
        "feature_columns",
        "extra_columns",
    )
    ui_color = "#ff6f59"
    operator_extra_links = (EvidenceLink(),)

    def __init__(
        self,
        *,
        data_path: str,
        suite_path: str,
        quarantine_dir: str,
        results_dir: str,
        key_columns: list[str] | None = None,
        entity_columns: list[str] | None = None,
        timestamp_column: str | None = "event_timestamp",
        interval_start: str | datetime | None = None,
        interval_end: str | datetime | None = None,
        allowed_lateness: timedelta | float = DEFAULT_ALLOWED_LATENESS,
        clock_skew: timedelta | float = DEFAULT_CLOCK_SKEW,
        label_column: str | None = None,
        task_type: str | None = None,
        feature_columns: list[str] | None = None,
        max_null_share: float = 1.0,
        extra_columns: str | None = None,
        suite_sample_rows: int | None = None,
        quarantine_on_failure: bool = True,
        max_examples: int = 5,
        quarantine_dvc_conn_id: str | None = None,
        quarantine_dataset_path: str = "quarantine",
        evidence_url_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_examples < 0:
            raise ValueError(f"max_examples must be >= 0, got {max_examples}")
        if key_columns and entity_columns and list(key_columns) != list(entity_columns):
            raise ValueError(
                f"key_columns={key_columns!r} and entity_columns={entity_columns!r} differ: they are the same "
                "parameter (entity_columns is the alias), give one"
            )
        if suite_sample_rows is not None and suite_sample_rows < 1:
            raise ValueError(f"suite_sample_rows must be >= 1 (or None for the whole batch), got {suite_sample_rows}")
        self.data_path = data_path
        self.suite_path = suite_path
        self.quarantine_dir = quarantine_dir
        self.results_dir = results_dir
        keys = key_columns or entity_columns
        self.key_columns = list(keys) if keys else None
        self.timestamp_column = timestamp_column
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.allowed_lateness = allowed_lateness
        self.clock_skew = clock_skew
        self.label_column = label_column
        self.model_task_type = task_type  # BaseOperator.task_type is Airflow's (the class name)
        self.feature_columns = list(feature_columns) if feature_columns is not None else None
        self.max_null_share = max_null_share
        self.extra_columns = extra_columns
        self.suite_sample_rows = suite_sample_rows
        self.quarantine_on_failure = quarantine_on_failure
        self.max_examples = max_examples
        self.quarantine_dvc_conn_id = quarantine_dvc_conn_id
        self.quarantine_dataset_path = quarantine_dataset_path.strip("/")
        self.evidence_url_prefix = evidence_url_prefix

    @property
    def entity_columns(self) -> list[str] | None:
        """The entity key columns (``key_columns``)."""
        return self.key_columns

    def execute(self, context: Context) -> dict[str, Any]:
        source_uri = storage.to_uri(self.data_path)
        suite_spec = self._suite()
        spec = contract_spec(
            suite_spec,
            entity_columns=self.key_columns,
            timestamp_column=self.timestamp_column or None,
            interval_start=self.interval_start,
            interval_end=self.interval_end,
            allowed_lateness=self.allowed_lateness,
            clock_skew=self.clock_skew,
            label_column=self.label_column or None,
            task_type=self.model_task_type or None,
            feature_columns=self.feature_columns,
            max_null_share=self.max_null_share,
            extra_columns=self.extra_columns or None,
        )
        with _staged(source_uri) as (source, landed):  # a remote batch is read from this task's temp folder
            return self._gate(context, source_uri, source, landed, suite_spec, spec)

    def _suite(self) -> dict[str, Any]:
        if storage.is_local(self.suite_path):
            return load_suite(storage.local_path(self.suite_path))
        with storage.local_copy(self.suite_path) as local:
            return load_suite(local)

    def _gate(self, context: Context, source_uri: str, source: Path, landed: bool, suite_spec: dict[str, Any],
              spec: Any) -> dict[str, Any]:
        ident = run_identity(context)
        timestamp_column = self.timestamp_column or None
        batch = check_batch(
            source,
            landed,
            source_uri=source_uri,
            timestamp_column=timestamp_column,
            quarantine_dir=self.quarantine_dir,
            suite_sample_rows=self.suite_sample_rows,
        )
        frame, data_md5, structural, rows = batch.frame, batch.data_md5, batch.reasons, batch.rows
        warnings: list[str] = []
        if structural:
            result = not_run_result(structural, suite_spec["name"])
            result["contract"] = not_run_contract("structural failure: " + structural[0])
            reasons = list(structural)
        else:
            contract = check_contract(spec, batch, source, max_examples=self.max_examples)
            configs = expectation_configs(suite_spec, self.key_columns, timestamp_column, type(self).__name__)
            result = run_suite(frame, suite_spec, configs, self.max_examples)
            contract_failures, warnings = contract_reasons(contract)
            reasons = contract_failures + failure_reasons(result, frame, self.max_examples)
            result["suite_success"] = bool(result.get("success"))
            result["success"] = result["suite_success"] and contract["success"]
            result["contract"] = contract
            result["suite_rows"] = len(frame)
            if batch.sampled:
                result["suite_sample"] = (
                    f"the suite ran on the first {len(frame)} of {rows} rows (suite_sample_rows="
                    f"{self.suite_sample_rows}); the contract checks read every row"
                )
        for warning in warnings:
            self.log.warning("contract warning: %s", warning)
        metrics = result_metrics(result, rows)
        passed = not structural and bool(result.get("success"))
        evidence = Evidence(result, source_uri, data_md5, metrics, reasons, passed, self.suite_path, self.max_examples)
        result_uri, summary_uri = write_evidence(run_uri(self.results_dir, context), evidence)
        self.log.info("validation result: %s", result_uri)
        self.log.info("validation summary: %s", summary_uri)
        persist_link(context, summary_uri, self.results_dir, self.evidence_url_prefix)
        verdict: dict[str, Any] = {
            "passed": passed,
            "reasons": reasons,
            "warnings": warnings,
            "metrics": metrics,
            "contract": contract_summary(result["contract"]),
            "evidence_uri": result_uri,
            "summary_uri": summary_uri,
            "data_md5": data_md5,
            "suite_rows": result.get("suite_rows", 0),
            "quarantined_to": None,
            "quarantine_version": None,
        }
        checks = verdict["contract"]
        if passed:
            log_summary(
                self.log, "data-validation", passed="true", batch=source_uri, md5=data_md5, rows=rows,
                expectations=metrics["evaluated"], failed=0, contract_checks=checks["evaluated"],
                contract_warnings=checks["warnings"], evidence=result_uri,
            )
            return verdict

        for reason in reasons:
            self.log.error("reason: %s", reason)
        where = dispose(
            FailedBatch(source_uri, _batch_files(source) if landed else [], data_md5, verdict, ident),
            log=self.log,
            quarantine_on_failure=self.quarantine_on_failure,
            quarantine_dir=self.quarantine_dir,
            suite_path=self.suite_path,
            dvc_conn_id=self.quarantine_dvc_conn_id,
            dataset_path=self.quarantine_dataset_path,
        )
        message = failure_message(
            source_uri,
            landed,
            data_md5,
            rows if frame is not None else None,
            metrics,
            reasons,
            structural,
            where,
            result_uri,
            self.suite_path,
            contract=result["contract"],
        )
        self.log.error("%s", message)
        log_summary(
            self.log, "data-validation", logging.ERROR, passed="false", batch=source_uri, md5=data_md5, rows=rows,
            expectations=metrics["evaluated"], failed=metrics["failed"], contract_failed=checks["failed"],
            quarantined_to=verdict["quarantined_to"], evidence=result_uri,
        )
        raise DataValidationError(
            message, cause="; ".join(reasons[:1]) or "validation failed",
            counts={"failed": metrics["failed"], "evaluated": metrics["evaluated"],
                    "contract_failed": checks["failed"]},
            evidence_uri=result_uri, next_step=message.rsplit("Next step: ", 1)[-1],
        )


def _batch_files(source: Path) -> list[tuple[Path, str]]:
    """Every file of the staged batch as ``(path, relative path)``; a single file has ``""``."""
    if source.is_dir():
        return [(p, p.relative_to(source).as_posix()) for p in sorted(source.rglob("*")) if p.is_file()]
    return [(source, "")] if source.is_file() else []


@contextlib.contextmanager
def _staged(source_uri: str) -> Iterator[tuple[Path, bool]]:
    """The batch on this worker's disk and whether it landed (a ``file://`` batch is read where it is)."""
    if not storage.exists(source_uri):
        local = storage.local_path(source_uri) if storage.is_local(source_uri) else Path(storage.name(source_uri))
        yield local, False
        return
    with storage.local_copy(source_uri) as local:
        yield local, True
