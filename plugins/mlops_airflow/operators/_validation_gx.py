"""The Great Expectations part of the data validation gate: read the suite, run it, describe its failures.

The suite is a JSON file ``{"name", "expectations": [{"type", "kwargs", "meta"}]}``, shape-checked with the stdlib
and run on an ephemeral GX 1.x context. great_expectations is imported inside ``run_suite`` only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import MLOpsError

if TYPE_CHECKING:
    import pandas as pd

# kwargs that say where an expectation applies, not what it expects.
DOMAIN_KWARGS = ("column", "column_list", "column_A", "column_B", "batch_id", "result_format")


# ---------------------------------------------------------------------- suite


def load_suite(path: Path) -> dict[str, Any]:
    """Read and shape-check the suite JSON (stdlib only; GX builds it later)."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MLOpsError(
            f"expectation suite {path} not found (cwd {Path.cwd()}): check suite_path; the batch was not touched."
        ) from None
    except (OSError, ValueError) as err:
        raise MLOpsError(f"expectation suite {path} is not readable JSON: {err}; the batch was not touched.") from err
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


def expectation_configs(
    suite_spec: dict[str, Any], key_columns: list[str] | None, timestamp_column: str | None, added_by: str
) -> list[dict[str, Any]]:
    """The suite's expectations, plus not-null and uniqueness checks on ``key_columns`` (+ ``timestamp_column``).

    ``added_by`` names the operator (class name) in the ``meta`` of the added checks.
    """
    configs = [
        {
            "type": item.get("type", item.get("expectation_type")),
            "kwargs": dict(item["kwargs"]),
            "meta": dict(item.get("meta") or {}),
            **({"notes": item["notes"]} if item.get("notes") else {}),
        }
        for item in suite_spec["expectations"]
    ]
    if key_columns:
        keys = [*key_columns, *([timestamp_column] if timestamp_column else [])]
        meta = {"added_by": f"{added_by}(key_columns={key_columns})"}
        for column in keys:
            configs.append({"type": "expect_column_to_exist", "kwargs": {"column": column}, "meta": meta})
            configs.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}, "meta": meta})
        if len(keys) > 1:
            configs.append(
                {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": keys}, "meta": meta}
            )
        else:
            configs.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": keys[0]}, "meta": meta})
    return configs


def run_suite(
    frame: pd.DataFrame, suite_spec: dict[str, Any], configs: list[dict[str, Any]], max_examples: int
) -> dict[str, Any]:
    """Validate ``frame`` with ``configs`` on an ephemeral GX context; the GX result as a JSON dict."""
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
    for config in configs:
        try:
            # add_expectation keeps only one of equal expectations (meta ignored), so a key check the suite
            # already has is not doubled; add_expectation_configuration would instead *replace* any
            # expectation of the same type and column.
            suite.add_expectation(ExpectationConfiguration(**config).to_domain_obj())
        except (GreatExpectationsError, ValueError, TypeError) as err:
            raise MLOpsError(
                f"expectation suite {suite_spec['path']}: cannot build "
                f"{config['type']}({domain(config['kwargs'])}): {err}; fix the suite. The batch was not touched."
            ) from err
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": max_examples})
    return result.to_json_dict()


# ---------------------------------------------------------------------- describing results


def failure_reasons(result: dict[str, Any], frame: pd.DataFrame, max_examples: int) -> list[str]:
    """One line per failed expectation of ``result``; those GX could not evaluate come last."""
    failed = [r for r in result.get("results", []) if not r.get("success")]
    # Failures GX could not evaluate (usually a missing column) come last: the cause is listed before.
    failed.sort(key=lambda r: exception_message(r.get("exception_info")) is not None)
    dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
    return [describe(r, max_examples, dtypes) for r in failed]


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def examples(values: list[Any] | None, max_examples: int) -> list[str]:
    """Distinct unexpected values, short; a row of a multi-column check (a dict) becomes a tuple of its values."""
    shown: list[str] = []
    for value in values or []:
        text = "(" + ", ".join(short(v, 40) for v in value.values()) + ")" if isinstance(value, dict) else short(value)
        if text not in shown:
            shown.append(text)
        if len(shown) >= max_examples:
            break
    return shown


def domain(kwargs: dict[str, Any]) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_list" in kwargs:
        return ", ".join(str(c) for c in kwargs["column_list"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs.get('column_B')}"
    return ""


def exception_message(info: Any) -> str | None:
    """The first exception message in a GX ``exception_info`` (flat, or keyed by metric id when a metric failed)."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message") or "error") if info.get("raised_exception") else None
    for value in info.values():
        message = exception_message(value)
        if message:
            return message
    return None


def describe(result: dict[str, Any], max_examples: int, dtypes: dict[str, str]) -> str:
    """One line for a failed expectation: ``type(domain): 12 unexpected (0.30%), e.g. [-5.0, 900.1]``.

    ``dtypes`` (column -> pandas dtype) names a missing column and the real dtype of a type failure: GX reports
    ``dtype.type.__name__``, which is ``int64`` for a nullable ``Int64`` column that fails ``type_list: [int64]``.
    """
    config = result.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    label = f"{config.get('type', 'expectation')}({domain(kwargs)})"
    error = exception_message(result.get("exception_info"))
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
        shown = examples(detail.get("partial_unexpected_list"), max_examples)
        if shown:
            text += ", e.g. [" + ", ".join(shown) + "]"
        return text
    if config.get("type") == "expect_column_to_exist":
        return f"{label}: column missing"
    expected = {k: v for k, v in kwargs.items() if k not in DOMAIN_KWARGS}
    column = str(kwargs.get("column"))
    if "observed_value" in detail and column in dtypes and "type" in str(config.get("type")):
        wanted = kwargs.get("type_list") or [kwargs.get("type_")]
        return f"{label}: column dtype is {dtypes[column]}, expected {short(wanted, 120)}"
    if "observed_value" in detail:
        text = f"{label}: observed {short(detail['observed_value'])}"
        return text + (f", expected {short(expected, 120)}" if expected else "")
    return f"{label}: failed" + (f" (expected {short(expected, 120)})" if expected else "")
