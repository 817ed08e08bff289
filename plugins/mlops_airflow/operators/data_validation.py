"""Data validation gate: structural checks, then a Great Expectations 1.x suite, then pass or quarantine.

The operator returns a small verdict (XCom) in the pack's gate shape ``{passed, reasons, metrics, evidence_uri,
...}``. A failing batch is moved (copy, fsync, md5 check, then delete) to a quarantine folder with a
``quarantine.json`` that says why, and ``DataValidationError`` is raised with a message an on-call engineer can act
on: the batch, its md5 and rows, the failing expectations with counts and example values, where the batch and the
full result went, and the next step.

The operator composes four private modules: ``_validation_structural`` (file missing, empty, unreadable, zero rows,
timestamps without a timezone), ``_validation_gx`` (reading and running the suite, describing its failures),
``_validation_quarantine`` (the verified move, its manifest, the DVC version) and ``_validation_report`` (the result
JSON, the HTML summary, the evidence link, the failure message). ``RESULT_FILE``, ``SUMMARY_FILE``,
``QUARANTINE_FILE`` and ``MAX_REASONS_IN_MESSAGE`` stay importable from here.

great_expectations, pandas and pyarrow are imported inside functions only: DAG files that use this operator parse
without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import DataValidationError
from mlops_airflow.links.mlflow import EvidenceLink
from mlops_airflow.operators._common import run_dir, run_identity
from mlops_airflow.operators._validation_gx import expectation_configs, failure_reasons, load_suite, run_suite
from mlops_airflow.operators._validation_quarantine import QUARANTINE_FILE, dispose
from mlops_airflow.operators._validation_report import (
    MAX_REASONS_IN_MESSAGE,
    RESULT_FILE,
    SUMMARY_FILE,
    failure_message,
    not_run_result,
    persist_link,
    result_metrics,
    write_evidence,
)
from mlops_airflow.operators._validation_structural import check_batch

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MAX_REASONS_IN_MESSAGE", "QUARANTINE_FILE", "RESULT_FILE", "SUMMARY_FILE", "DataValidationGateOperator"]


class DataValidationGateOperator(BaseOperator):
    """Validate a landed batch with a Great Expectations suite; quarantine it and fail if it does not pass.

    Order of checks:

    1. Structural, before GX (each a one-line reason): the file is missing, empty (0 bytes) or unreadable
       ("corrupt Parquet: ..."), has zero rows, or ``timestamp_column`` holds timestamps without a timezone.
       CSV timestamps are parsed with pandas; a value without an offset (``Z``, ``+00:00``) is naive and fails.
    2. The suite (JSON, ``{"name", "expectations": [{"type", "kwargs", "meta"}]}``) on an ephemeral GX context.
       With ``key_columns``, ``expect_column_values_to_not_be_null`` for each of ``key_columns`` +
       ``timestamp_column`` and ``expect_compound_columns_to_be_unique`` on them are added, so nulls and
       duplicate keys show up in the result like the suite's own expectations.

    The full GX result (``validation_result.json``) and an HTML summary (``validation_summary.html``) go to
    ``results_dir/<dag_id>/<run_id>/<task_id>/`` whatever the outcome. On success returns (XCom)::

        {"passed": True, "reasons": [], "metrics": {"evaluated", "successful", "failed", "rows"},
         "evidence_uri": "file://.../validation_result.json", "summary_uri": "file://.../validation_summary.html",
         "data_md5": "<md5 of the file, or of the sorted md5s of a directory's Parquet files>",
         "quarantined_to": None, "quarantine_version": None}

    On failure, with ``quarantine_on_failure``, the batch is moved to
    ``quarantine_dir/<YYYYmmddTHHMMSS>_<md5[:12]>/<original name>`` next to a ``quarantine.json`` (reasons, source, ids,
    that verdict); with ``quarantine_dvc_conn_id`` that folder is also versioned in the data repository
    (``quarantine/<YYYYmmddTHHMMSS>_<md5[:12]>/``, see below); then ``DataValidationError`` is raised. A structural
    failure quarantines too: a corrupt file is still kept. A suite that cannot be read or built raises ``MLOpsError``
    and leaves the batch where it is (the data is not at fault). Retrying a failed validation finds the batch gone; the
    message of that try points to the quarantine folder of the earlier one.

    :param data_path: the batch: a Parquet or CSV file, or a directory of Parquet files (templated).
    :param suite_path: the expectation suite, a JSON file such as ``include/gx/customer_events.json``
        (templated). Relative paths resolve against the worker's working directory.
    :param quarantine_dir: where failed batches are moved (templated).
    :param results_dir: where the result JSON and the HTML summary go (templated).
    :param key_columns: entity key columns; nulls in them or in ``timestamp_column``, and duplicate
        (``key_columns`` + ``timestamp_column``) rows, are failures. None = no key checks.
    :param timestamp_column: the event time column; it must be timezone-aware. None = no timestamp check.
    :param quarantine_on_failure: move a failing batch to ``quarantine_dir`` (default); False leaves it in place.
    :param max_examples: unexpected values kept per expectation (GX ``partial_unexpected_count``) and shown in
        the failure message.
    :param quarantine_dvc_conn_id: a ``dvc`` connection: the quarantine folder is also copied into that data
        repository under ``quarantine_dataset_path/<folder>/`` and versioned there (dvc add + git commit + dvc
        push), so a quarantined batch survives the worker's disk and is never deleted. The verdict then carries
        ``quarantine_version`` ``{repo, rev, path, md5, entry}``. None (default) = local quarantine only.
    :param quarantine_dataset_path: the tracked folder in the data repository (default ``quarantine``).
    :param evidence_url_prefix: base URL under which ``results_dir`` is served (e.g. an S3 website or a static
        server); the task's "Evidence report" link then points to the HTML summary there. None = ``file://`` URI.

    The task's "Evidence report" extra link opens the HTML summary of the run (pass or fail).
    """

    template_fields: Sequence[str] = ("data_path", "suite_path", "quarantine_dir", "results_dir")
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
        timestamp_column: str | None = "event_timestamp",
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
        self.data_path = data_path
        self.suite_path = suite_path
        self.quarantine_dir = quarantine_dir
        self.results_dir = results_dir
        self.key_columns = list(key_columns) if key_columns else None
        self.timestamp_column = timestamp_column
        self.quarantine_on_failure = quarantine_on_failure
        self.max_examples = max_examples
        self.quarantine_dvc_conn_id = quarantine_dvc_conn_id
        self.quarantine_dataset_path = quarantine_dataset_path.strip("/")
        self.evidence_url_prefix = evidence_url_prefix

    def execute(self, context: Context) -> dict[str, Any]:
        ident = run_identity(context)
        source = Path(self.data_path)
        landed = source.exists()
        suite_spec = load_suite(Path(self.suite_path))
        batch = check_batch(source, landed, timestamp_column=self.timestamp_column, quarantine_dir=self.quarantine_dir)
        frame, data_md5, structural = batch.frame, batch.data_md5, batch.reasons
        rows = len(frame) if frame is not None else 0

        if structural:
            result = not_run_result(structural, suite_spec["name"])
            reasons = list(structural)
        else:
            configs = expectation_configs(suite_spec, self.key_columns, self.timestamp_column, type(self).__name__)
            result = run_suite(frame, suite_spec, configs, self.max_examples)
            reasons = failure_reasons(result, frame, self.max_examples)
        metrics = result_metrics(result, rows)
        passed = not structural and bool(result.get("success"))
        result_path, summary_path = write_evidence(
            run_dir(self.results_dir, context),
            result,
            source,
            data_md5,
            metrics,
            reasons,
            passed,
            suite_path=self.suite_path,
            max_examples=self.max_examples,
        )
        self.log.info("validation result: %s", result_path)
        self.log.info("validation summary: %s", summary_path)
        persist_link(context, summary_path, self.results_dir, self.evidence_url_prefix)
        verdict: dict[str, Any] = {
            "passed": passed,
            "reasons": reasons,
            "metrics": metrics,
            "evidence_uri": result_path.as_uri(),
            "summary_uri": summary_path.as_uri(),
            "data_md5": data_md5,
            "quarantined_to": None,
            "quarantine_version": None,
        }
        if passed:
            self.log.info(
                "SUMMARY data-validation passed=true batch=%s md5=%s rows=%d expectations=%d failed=0 evidence=%s",
                source,
                data_md5,
                rows,
                metrics["evaluated"],
                result_path,
            )
            return verdict

        for reason in reasons:
            self.log.error("reason: %s", reason)
        where = dispose(
            source,
            data_md5,
            verdict,
            ident,
            log=self.log,
            quarantine_on_failure=self.quarantine_on_failure,
            quarantine_dir=self.quarantine_dir,
            suite_path=self.suite_path,
            dvc_conn_id=self.quarantine_dvc_conn_id,
            dataset_path=self.quarantine_dataset_path,
        )
        message = failure_message(
            source, landed, data_md5, frame, metrics, reasons, structural, where, result_path, self.suite_path
        )
        self.log.error("%s", message)
        self.log.error(
            "SUMMARY data-validation passed=false batch=%s md5=%s rows=%d expectations=%d failed=%d "
            "quarantined_to=%s evidence=%s",
            source,
            data_md5,
            rows,
            metrics["evaluated"],
            metrics["failed"],
            verdict["quarantined_to"],
            result_path,
        )
        raise DataValidationError(message)
