"""Data validation gate: structural checks, then a Great Expectations 1.x suite, then pass or quarantine.

The operator returns a small verdict (XCom) in the pack's gate shape ``{passed, reasons, metrics, evidence_uri,
...}``. A failing batch is moved (copy, fsync, md5 check, then delete) to a quarantine folder with a
``quarantine.json`` that says why, and ``DataValidationError`` is raised with a message an on-call engineer can act
on: the batch, its md5 and rows, the failing expectations with counts and example values, where the batch and the
full result went, and the next step.

great_expectations, pandas and pyarrow are imported inside functions only: DAG files that use this operator parse
without them.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow.exceptions import DataValidationError, MLOpsError
from mlops_airflow.links.mlflow import EvidenceLink
from mlops_airflow.operators._common import run_dir, run_identity, safe_part

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

RESULT_FILE = "validation_result.json"
SUMMARY_FILE = "validation_summary.html"
QUARANTINE_FILE = "quarantine.json"
# A failure message names at most this many expectations; the full result file has them all.
MAX_REASONS_IN_MESSAGE = 8
# An offset (Z, UTC, +hh, +hh:mm, +hhmm) after a time of day: a CSV timestamp string that carries a timezone.
_TZ_SUFFIX = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
# kwargs that say where an expectation applies, not what it expects.
_DOMAIN_KWARGS = ("column", "column_list", "column_A", "column_B", "batch_id", "result_format")


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _examples(values: list[Any] | None, max_examples: int) -> list[str]:
    """Distinct unexpected values, short; a row of a multi-column check (a dict) becomes a tuple of its values."""
    shown: list[str] = []
    for value in values or []:
        text = (
            "(" + ", ".join(_short(v, 40) for v in value.values()) + ")" if isinstance(value, dict) else _short(value)
        )
        if text not in shown:
            shown.append(text)
        if len(shown) >= max_examples:
            break
    return shown


def _domain(kwargs: dict[str, Any]) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_list" in kwargs:
        return ", ".join(str(c) for c in kwargs["column_list"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs.get('column_B')}"
    return ""


def _exception_message(info: Any) -> str | None:
    """The first exception message in a GX ``exception_info`` (flat, or keyed by metric id when a metric failed)."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message") or "error") if info.get("raised_exception") else None
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _describe(result: dict[str, Any], max_examples: int, dtypes: dict[str, str]) -> str:
    """One line for a failed expectation: ``type(domain): 12 unexpected (0.30%), e.g. [-5.0, 900.1]``.

    ``dtypes`` (column -> pandas dtype) names a missing column and the real dtype of a type failure: GX reports
    ``dtype.type.__name__``, which is ``int64`` for a nullable ``Int64`` column that fails ``type_list: [int64]``.
    """
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    label = f"{config.get('type', 'expectation')}({_domain(kwargs)})"
    error = _exception_message(result.get("exception_info"))
    if error:
        columns = kwargs.get("column_list") or [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
        missing = [str(c) for c in columns if c is not None and str(c) not in dtypes]
        if missing:
            return f"{label}: could not run, column {', '.join(missing)} missing"
        return f"{label}: could not run ({error.strip().splitlines()[0]})"
    detail = result.get("result") or {}
    if detail.get("unexpected_count") is not None:
        text = f"{label}: {detail['unexpected_count']} unexpected"
        if detail.get("unexpected_percent") is not None:
            text += f" ({float(detail['unexpected_percent']):.2f}%)"
        examples = _examples(detail.get("partial_unexpected_list"), max_examples)
        if examples:
            text += ", e.g. [" + ", ".join(examples) + "]"
        return text
    if config.get("type") == "expect_column_to_exist":
        return f"{label}: column missing"
    expected = {k: v for k, v in kwargs.items() if k not in _DOMAIN_KWARGS}
    column = str(kwargs.get("column"))
    if "observed_value" in detail and column in dtypes and "type" in str(config.get("type")):
        wanted = kwargs.get("type_list") or [kwargs.get("type_")]
        return f"{label}: column dtype is {dtypes[column]}, expected {_short(wanted, 120)}"
    if "observed_value" in detail:
        text = f"{label}: observed {_short(detail['observed_value'])}"
        return text + (f", expected {_short(expected, 120)}" if expected else "")
    return f"{label}: failed" + (f" (expected {_short(expected, 120)})" if expected else "")


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

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        ident = run_identity(context)
        source = Path(self.data_path)
        landed = source.exists()
        suite_spec = self._load_suite(Path(self.suite_path))

        frame: pd.DataFrame | None = None
        data_md5: str | None = None
        data_files: list[Path] = []
        structural: list[str] = []
        if not landed:
            structural.append(self._missing_reason(source))
        else:
            data_files, structural = self._list_files(source)
            if data_files:
                data_md5 = self._batch_md5(data_files, source.is_dir())
            if not structural:
                frame, structural = self._read(source, data_files)
            if frame is not None and not structural:
                frame, structural = self._check_timestamp(frame, source.suffix.lower() == ".csv")
        rows = len(frame) if frame is not None else 0

        if structural:
            result: dict[str, Any] = {
                "success": False,
                "structural_failures": structural,
                "results": [],
                "statistics": {
                    "evaluated_expectations": 0,
                    "successful_expectations": 0,
                    "unsuccessful_expectations": 0,
                },
                "suite_name": suite_spec["name"],
            }
            reasons = list(structural)
        else:
            result = self._run_gx(frame, suite_spec)
            failed = [r for r in result.get("results", []) if not r.get("success")]
            # Failures GX could not evaluate (usually a missing column) come last: the cause is listed before.
            failed.sort(key=lambda r: _exception_message(r.get("exception_info")) is not None)
            dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
            reasons = [_describe(r, self.max_examples, dtypes) for r in failed]
        stats = result.get("statistics") or {}
        metrics = {
            "evaluated": int(stats.get("evaluated_expectations") or 0),
            "successful": int(stats.get("successful_expectations") or 0),
            "failed": int(stats.get("unsuccessful_expectations") or 0),
            "rows": rows,
        }
        passed = not structural and bool(result.get("success"))
        result_path, summary_path = self._write_evidence(
            run_dir(self.results_dir, context), result, source, data_md5, metrics, reasons, passed
        )
        self.log.info("validation result: %s", result_path)
        self.log.info("validation summary: %s", summary_path)
        self._persist_link(context, summary_path)
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
        where = self._dispose(source, data_files, data_md5, verdict, ident)
        message = self._failure_message(
            source, landed, data_md5, frame, metrics, reasons, structural, where, result_path
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

    # ------------------------------------------------------------------ suite

    def _load_suite(self, path: Path) -> dict[str, Any]:
        """Read and shape-check the suite JSON (stdlib only; GX builds it later)."""
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MLOpsError(
                f"expectation suite {path} not found (cwd {Path.cwd()}): check suite_path; the batch was not touched."
            ) from None
        except (OSError, ValueError) as err:
            raise MLOpsError(
                f"expectation suite {path} is not readable JSON: {err}; the batch was not touched."
            ) from err
        expectations = spec.get("expectations") if isinstance(spec, dict) else None
        if not isinstance(expectations, list):
            raise MLOpsError(
                f"expectation suite {path} must be an object with an 'expectations' list; the batch was not touched."
            )
        for i, item in enumerate(expectations):
            kind = item.get("type", item.get("expectation_type")) if isinstance(item, dict) else None
            if not isinstance(kind, str) or not kind.startswith("expect_") or not isinstance(item.get("kwargs"), dict):
                raise MLOpsError(
                    f"expectation suite {path}: entry {i} needs 'type' (expect_...) and a 'kwargs' object, got "
                    f"{item!r:.200}; the batch was not touched."
                )
        return {"name": str(spec.get("name") or path.stem), "expectations": expectations, "path": str(path)}

    def _expectation_configs(self, suite_spec: dict[str, Any]) -> list[dict[str, Any]]:
        configs = [
            {
                "type": item.get("type", item.get("expectation_type")),
                "kwargs": dict(item["kwargs"]),
                "meta": dict(item.get("meta") or {}),
                **({"notes": item["notes"]} if item.get("notes") else {}),
            }
            for item in suite_spec["expectations"]
        ]
        if self.key_columns:
            keys = [*self.key_columns, *([self.timestamp_column] if self.timestamp_column else [])]
            meta = {"added_by": f"{type(self).__name__}(key_columns={self.key_columns})"}
            for column in keys:
                configs.append({"type": "expect_column_to_exist", "kwargs": {"column": column}, "meta": meta})
                configs.append(
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}, "meta": meta}
                )
            if len(keys) > 1:
                configs.append(
                    {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": keys}, "meta": meta}
                )
            else:
                configs.append(
                    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": keys[0]}, "meta": meta}
                )
        return configs

    # ------------------------------------------------------------------ structural checks

    def _missing_reason(self, source: Path) -> str:
        reason = f"file missing: {source}"
        earlier = self._earlier_quarantine(source)
        if earlier:
            reason += f" (an earlier try quarantined it to {earlier})"
        return reason

    def _earlier_quarantine(self, source: Path) -> str | None:
        """The newest quarantine folder whose ``quarantine.json`` names ``source``, so a retry points to it."""
        root = Path(self.quarantine_dir)
        if not root.is_dir():
            return None
        wanted = str(source.absolute())
        for manifest in sorted(root.glob(f"*/{QUARANTINE_FILE}"), reverse=True)[:500]:
            try:
                if json.loads(manifest.read_text(encoding="utf-8")).get("source") == wanted:
                    return str(manifest.parent)
            except (OSError, ValueError):
                continue
        return None

    def _list_files(self, source: Path) -> tuple[list[Path], list[str]]:
        if source.is_dir():
            files = sorted(p for p in source.rglob("*.parquet") if p.is_file())
            if not files:
                return [], [f"no Parquet files in directory {source}"]
        else:
            files = [source]
            if source.suffix.lower() not in (".parquet", ".csv"):
                return files, [
                    f"unsupported file type {source.suffix or '(none)'!r}: expected .parquet, .csv or a "
                    "directory of Parquet files"
                ]
        empty = [p for p in files if p.stat().st_size == 0]
        if empty:
            return files, [f"empty file (0 bytes): {p}" for p in empty]
        return files, []

    @staticmethod
    def _batch_md5(files: list[Path], is_dir: bool) -> str:
        if not is_dir:
            return _file_md5(files[0])
        joined = "\n".join(sorted(_file_md5(p) for p in files))
        return hashlib.md5(joined.encode(), usedforsecurity=False).hexdigest()

    def _read(self, source: Path, files: list[Path]) -> tuple[pd.DataFrame | None, list[str]]:
        if source.is_file() and source.suffix.lower() == ".csv":
            frame, reasons = self._read_csv(source)
        else:
            frame, reasons = self._read_parquet(files, source)
        if frame is not None and not reasons and len(frame) == 0:
            reasons = [f"zero rows in {source.name} (the file has a header/schema but no data)"]
        return frame, reasons

    @staticmethod
    def _read_parquet(files: list[Path], source: Path) -> tuple[pd.DataFrame | None, list[str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for path in files:
            try:
                tables.append(pq.read_table(path))
            except (pa.ArrowException, OSError, ValueError) as err:
                return None, [f"corrupt Parquet: {path.name}: {err}"]
        try:
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowException, ValueError) as err:
            return None, [f"Parquet files in {source} have incompatible schemas: {err}"]
        try:
            return table.to_pandas(), []
        except (pa.ArrowException, ValueError) as err:
            return None, [f"corrupt Parquet: {source.name}: cannot convert to pandas: {err}"]

    @staticmethod
    def _read_csv(source: Path) -> tuple[pd.DataFrame | None, list[str]]:
        import pandas as pd

        try:
            return pd.read_csv(source), []
        except pd.errors.EmptyDataError:
            return None, [f"empty CSV (no header): {source.name}"]
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            return None, [f"malformed CSV: {source.name}: {str(err).strip().splitlines()[0]}"]

    def _check_timestamp(self, frame: pd.DataFrame, is_csv: bool) -> tuple[pd.DataFrame, list[str]]:
        """Timestamps must carry a timezone; CSV strings are parsed to UTC. A missing column is left to GX."""
        import pandas as pd

        column = self.timestamp_column
        if not column or column not in frame.columns:
            return frame, []
        series = frame[column]
        naive = f"timestamps without a timezone in column {column}: write them as UTC"
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return frame, []
        if pd.api.types.is_datetime64_dtype(series.dtype):
            return frame, [f"{naive} (the column is {series.dtype}, tz-naive)"]
        if series.isna().all():
            if is_csv:
                frame = frame.assign(**{column: pd.to_datetime(series, utc=True)})
            return frame, []  # all null: the not-null expectations report it
        if is_csv and (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
            values = series.dropna().astype(str).str.strip()
            without_tz = values[~values.str.contains(_TZ_SUFFIX)]
            if len(without_tz):
                return frame, [f"{naive} ({len(without_tz)} of {len(values)} values, e.g. {without_tz.iloc[0]!r})"]
            try:
                parsed = pd.to_datetime(series, utc=True, format="ISO8601")
            except (ValueError, TypeError) as err:
                return frame, [f"unparseable timestamps in column {column}: {str(err).strip().splitlines()[0]}"]
            return frame.assign(**{column: parsed}), []
        return frame, [f"column {column} has type {series.dtype}, not a timezone-aware timestamp: write it as UTC"]

    # ------------------------------------------------------------------ Great Expectations

    def _run_gx(self, frame: pd.DataFrame, suite_spec: dict[str, Any]) -> dict[str, Any]:
        # GX 1.x logs one INFO line per public API function it registers at import time (hundreds of lines in a
        # task log); keep its registry quiet.
        logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.exceptions import GreatExpectationsError
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        gx_context = gx.get_context(mode="ephemeral")
        gx_context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_definition = (
            gx_context.data_sources.add_pandas("landed_batch")
            .add_dataframe_asset("batch")
            .add_batch_definition_whole_dataframe("whole_batch")
        )
        suite = gx.ExpectationSuite(name=suite_spec["name"])
        for config in self._expectation_configs(suite_spec):
            try:
                # add_expectation keeps only one of equal expectations (meta ignored), so a key check the suite
                # already has is not doubled; add_expectation_configuration would instead *replace* any
                # expectation of the same type and column.
                suite.add_expectation(ExpectationConfiguration(**config).to_domain_obj())
            except (GreatExpectationsError, ValueError, TypeError) as err:
                raise MLOpsError(
                    f"expectation suite {suite_spec['path']}: cannot build "
                    f"{config['type']}({_domain(config['kwargs'])}): {err}; fix the suite. The batch was not touched."
                ) from err
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": self.max_examples}
        )
        return result.to_json_dict()

    # ------------------------------------------------------------------ evidence

    def _write_evidence(
        self,
        out_dir: Path,
        result: dict[str, Any],
        source: Path,
        data_md5: str | None,
        metrics: dict[str, int],
        reasons: list[str],
        passed: bool,
    ) -> tuple[Path, Path]:
        out_dir = out_dir.absolute()
        out_dir.mkdir(parents=True, exist_ok=True)
        result_path = out_dir / RESULT_FILE
        summary_path = out_dir / SUMMARY_FILE
        document = {**result, "batch": {"path": str(source.absolute()), "md5": data_md5, "rows": metrics["rows"]}}
        _write_atomic(result_path, json.dumps(document, indent=2, default=str))
        _write_atomic(summary_path, self._render_html(result, source, data_md5, metrics, reasons, passed))
        return result_path, summary_path

    def _render_html(
        self,
        result: dict[str, Any],
        source: Path,
        data_md5: str | None,
        metrics: dict[str, int],
        reasons: list[str],
        passed: bool,
    ) -> str:
        esc = html.escape
        rows = []
        for item in result.get("results", []):
            config = item.get("expectation_config") or {}
            kwargs = config.get("kwargs") or {}
            detail = item.get("result") or {}
            error = _exception_message(item.get("exception_info"))
            expected = {k: v for k, v in kwargs.items() if k not in _DOMAIN_KWARGS}
            if error:
                observed = f"error: {error.strip().splitlines()[0]}"
            elif detail.get("unexpected_count") is not None:
                observed = (
                    f"{detail['unexpected_count']} unexpected ({float(detail.get('unexpected_percent') or 0):.2f}%)"
                )
            elif "observed_value" in detail:
                observed = f"observed {_short(detail['observed_value'])}"
            else:
                observed = ""
            examples = ", ".join(_examples(detail.get("partial_unexpected_list"), self.max_examples))
            ok = bool(item.get("success"))
            rows.append(
                f'<tr class="{"ok" if ok else "bad"}"><td>{esc(str(config.get("type")))}</td>'
                f"<td>{esc(_domain(kwargs))}</td><td>{esc(_short(expected, 200) if expected else '')}</td>"
                f"<td>{'pass' if ok else 'FAIL'}</td><td>{esc(observed)}</td><td>{esc(examples)}</td></tr>"
            )
        table_rows = "\n".join(rows) or '<tr><td colspan="6">not run (structural failure)</td></tr>'
        reason_items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
        verdict = "PASSED" if passed else "FAILED"
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Data validation {esc(verdict)}: {esc(source.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 0.9em; }}
tr.bad td {{ background: #fde8e8; }}
tr.ok td {{ background: #eef8ee; }}
.verdict {{ font-weight: bold; color: {"#1a7f37" if passed else "#c62828"}; }}
</style></head><body>
<h1>Data validation: <span class="verdict">{esc(verdict)}</span></h1>
<p>Batch <code>{esc(str(source.absolute()))}</code>, md5 <code>{esc(str(data_md5))}</code>, {metrics["rows"]} rows.<br>
Suite <code>{esc(str(result.get("suite_name", "")))}</code> ({esc(self.suite_path)}):
{metrics["evaluated"]} expectations evaluated, {metrics["successful"]} passed, {metrics["failed"]} failed.</p>
{f"<h2>Reasons</h2><ul>{reason_items}</ul>" if reasons else ""}
<h2>Expectations</h2>
<table><tr><th>Expectation</th><th>Column(s)</th><th>Expected</th><th>Result</th><th>Observed</th>
<th>Examples of unexpected values</th></tr>
{table_rows}
</table></body></html>
"""

    # ------------------------------------------------------------------ failure handling

    def _dispose(
        self,
        source: Path,
        data_files: list[Path],
        data_md5: str | None,
        verdict: dict[str, Any],
        ident: dict[str, str],
    ) -> str:
        """Quarantine the batch if asked and possible; return the sentence the failure message uses for it."""
        if not source.exists():
            return "Nothing to quarantine."
        if not self.quarantine_on_failure:
            return f"Batch left in place at {source} (quarantine_on_failure=False)."
        try:
            target = self._quarantine(source, data_md5, verdict, ident)
        except (OSError, DataValidationError) as err:
            self.log.exception("quarantine of %s failed", source)
            return f"Quarantine FAILED ({err}); the batch is still at {source}."
        verdict["quarantined_to"] = str(target)
        self.log.warning("batch quarantined to %s", target)
        sentence = f"Batch quarantined to {target}."
        if self.quarantine_dvc_conn_id:
            try:
                version = self._version_quarantine(target.parent, ident)
            except (OSError, MLOpsError) as err:
                self.log.exception("versioning the quarantine folder %s in DVC failed", target.parent)
                return (
                    f"{sentence} Versioning it in DVC ({self.quarantine_dvc_conn_id}) FAILED: {err}; the local copy "
                    f"is intact - version it by hand (`dvc add {self.quarantine_dataset_path}` in the data repository)."
                )
            verdict["quarantine_version"] = version
            self._update_manifest(target.parent, version)
            sentence += (
                f" Versioned in DVC as {version['entry']} (dataset {version['path']} rev {version['rev'][:12]}, "
                f"md5 {version['md5']})."
            )
        return sentence

    def _version_quarantine(self, folder: Path, ident: dict[str, str]) -> dict[str, Any]:
        """Copy the quarantine folder into the data repository and version ``quarantine_dataset_path``.

        The tracked folder only ever grows (one sub-folder per quarantined batch, names never reused), so every
        earlier quarantined batch stays reachable at HEAD and at every older revision.
        """
        import shutil

        from mlops_airflow.hooks.dvc_repo import DvcHook

        hook = DvcHook(dvc_conn_id=self.quarantine_dvc_conn_id)
        repo = hook.ensure_repo()
        entry = f"{self.quarantine_dataset_path}/{folder.name}"
        dest = repo / entry
        with hook.locked():
            if dest.exists():  # a name clash with another run's folder: never merge or overwrite
                raise DataValidationError(
                    f"{dest} already exists in the data repository (a quarantine folder of the same name from "
                    f"another run); not overwriting it. Version {folder} by hand under another name"
                )
            tmp = repo / f".{safe_part(self.quarantine_dataset_path)}.{folder.name}.tmp"  # outside the tracked folder
            dest.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            shutil.copytree(folder, tmp)
            for src in (p for p in folder.rglob("*") if p.is_file()):
                if _file_md5(src) != _file_md5(tmp / src.relative_to(folder)):
                    raise DataValidationError(
                        f"md5 mismatch copying {src} into {tmp}: the disk of the data repository may be full or "
                        f"failing; check it (df -h, dmesg), then version {folder} by hand"
                    )
            tmp.replace(dest)
            message = (
                f"quarantine: {folder.name} from {ident['dag_id']}/{safe_part(ident['run_id'])} "
                f"({ident['task_id']}, try {ident['try_number']})"
            )
            version = hook.version_path(self.quarantine_dataset_path, message)
        keep = ("repo", "rev", "path", "md5", "size", "nfiles", "new_commit")
        return {**{k: version[k] for k in keep}, "entry": entry}

    @staticmethod
    def _update_manifest(folder: Path, version: dict[str, Any]) -> None:
        """Record the DVC version next to the local quarantine manifest (the copy in DVC has the original)."""
        side = folder / "quarantine_version.json"
        _write_atomic(side, json.dumps(version, indent=2))

    def _persist_link(self, context: Any, summary_path: Path) -> None:
        """The "Evidence report" extra link: the HTML summary (under ``evidence_url_prefix`` when given)."""
        url = summary_path.as_uri()
        if self.evidence_url_prefix:
            try:
                rel = summary_path.relative_to(Path(self.results_dir).absolute())
                url = f"{self.evidence_url_prefix.rstrip('/')}/{rel.as_posix()}"
            except ValueError:
                pass
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None and hasattr(ti, "xcom_push"):
            EvidenceLink.persist(context, url)

    def _quarantine(self, source: Path, data_md5: str | None, verdict: dict[str, Any], ident: dict[str, str]) -> Path:
        """Copy every file of the batch into a fresh folder, fsync, verify md5s, write the manifest, then delete."""
        source = source.absolute()
        root = Path(self.quarantine_dir).absolute()
        root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        base = f"{stamp}_{(data_md5 or 'no-md5')[:12]}"
        folder = None
        for attempt in range(1000):
            candidate = root / (base if attempt == 0 else f"{base}_{attempt}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            folder = candidate
            break
        if folder is None:
            raise DataValidationError(
                f"no free quarantine folder name under {root} for {base} (1000 taken): archive old quarantine "
                "folders or set another quarantine_dir, then retry the task"
            )

        if source.is_dir():
            pairs = [
                (p, folder / source.name / p.relative_to(source)) for p in sorted(source.rglob("*")) if p.is_file()
            ]
        else:
            pairs = [(source, folder / source.name)]
        manifest_files = []
        for src, dst in pairs:
            expected = _file_md5(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as fin, open(dst, "xb") as fout:  # "x": never overwrite a quarantined file
                for chunk in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            copied = _file_md5(dst)
            if copied != expected:
                raise DataValidationError(
                    f"md5 mismatch copying {src} to {dst} ({expected} != {copied}): the original is untouched; the "
                    f"disk of {root} may be full or failing - check it (df -h, dmesg), then retry the task"
                )
            _fsync_dir(dst.parent)
            manifest_files.append({"path": str(dst.relative_to(folder)), "md5": copied, "bytes": dst.stat().st_size})

        manifest = {
            "source": str(source),
            "quarantined_to": str(folder / source.name),
            "quarantined_at": datetime.now(UTC).isoformat(),
            "data_md5": data_md5,
            "reasons": verdict["reasons"],
            "dag_id": ident["dag_id"],
            "run_id": ident["run_id"],
            "task_id": ident["task_id"],
            "try_number": ident["try_number"],
            "suite_path": self.suite_path,
            "verdict": {**verdict, "quarantined_to": str(folder / source.name)},
            "files": manifest_files,
        }
        with open(folder / QUARANTINE_FILE, "x", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(folder)

        # Only now, with every copy verified and on disk, remove the original.
        for src, _dst in pairs:
            src.unlink()
        if source.is_dir():
            for sub in sorted((p for p in source.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()
            source.rmdir()
        _fsync_dir(source.parent)
        return folder / source.name

    def _failure_message(
        self,
        source: Path,
        landed: bool,
        data_md5: str | None,
        frame: pd.DataFrame | None,
        metrics: dict[str, int],
        reasons: list[str],
        structural: list[str],
        where: str,
        result_path: Path,
    ) -> str:
        facts = []
        if data_md5:
            facts.append(f"md5 {data_md5[:12]}")
        if frame is not None:
            facts.append(f"{len(frame)} rows")
        head = f"Data validation failed for {source.name}" + (f" ({', '.join(facts)})" if facts else "")
        shown = [r.rstrip(".") for r in reasons[:MAX_REASONS_IN_MESSAGE]]
        more = f"; and {len(reasons) - len(shown)} more (see the full result)" if len(reasons) > len(shown) else ""
        if structural:
            body = "; ".join(shown) + more
            if not landed:
                step = (
                    f"check that the upstream task wrote {source} (and that the path template rendered as "
                    "expected), then rerun this task."
                )
            else:
                step = "fix the upstream export and re-land the batch."
        else:
            body = f"{metrics['failed']} of {metrics['evaluated']} expectations failed - " + "; ".join(shown) + more
            step = (
                f"fix the upstream export and re-land the batch, or adjust the suite {self.suite_path} if the data "
                "is right."
            )
        return f"{head}: {body}. {where} Full result: {result_path}. Next step: {step}"
