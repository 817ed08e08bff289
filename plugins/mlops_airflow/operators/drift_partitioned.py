"""One drift check as mapped tasks over partitions: ``partitioned_drift_check`` builds the task group.

A dataset too large for one task (hundreds of millions of rows) is checked the way ``DataDriftOperator`` checks
a small one, with the same verdict (``monitoring.drift_partitions``): each partition is summarised in its own
mapped task, one task plans the second pass (column types, stattests, edges), each partition is counted in its
own mapped task, and the last task reduces the counts to the verdict, the report, the MLflow run and the
retraining event. Summaries, plan and counts are JSON documents under ``work_dir`` (a local folder or a URI
through ``mlops_airflow.storage``: ``s3://...`` when the workers share no disk); XCom carries their URIs only.
Partitions on an object store are streamed through the same store's filesystem (a map task reads its own row
groups only). Memory per task is one
record batch and one column's counters, whatever the row count.

::

    drift = partitioned_drift_check(
        group_id="feature_drift",
        reference_partitions=["s3://lake/train/part-0.parquet", ...],   # or an XComArg (list_partitions)
        current_partitions=list_partitions("s3://lake/events/2026-11-08/", rows_per_partition=5_000_000),
        work_dir="s3://lake/mlops/drift",
        columns=[...], model_name="my_model", report_dir="/tmp/mlops-reports",
    )

A refinement round (a streamed Wasserstein/KS score whose bracket still holds the threshold) is counted by the
verdict task itself, for the uncertain columns only, reading the partitions again one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_airflow._summary import log_summary
from mlops_airflow.exceptions import MonitoringError
from mlops_airflow.monitoring.drift_options import STATTEST_OPTIONS
from mlops_airflow.operators._common import safe_part, task_key
from mlops_airflow.operators.drift import DataDriftOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

_PLAN_OPTIONS = (*STATTEST_OPTIONS, "column_types", "bins", "max_refinements")


def _doc_uri(work_dir: str, context: Any, task_id: str, name: str) -> str:
    """``work_dir/<dag_id>/<run_id>/<task key>.<name>.json`` as a URI (a plain path becomes ``file://``)."""
    from mlops_airflow import storage

    dag_id = getattr(context.get("dag"), "dag_id", "dag") if hasattr(context, "get") else "dag"
    run_id = str(context.get("run_id", "run")) if hasattr(context, "get") else "run"
    return storage.join(str(work_dir), safe_part(dag_id), safe_part(run_id),
                        f"{safe_part(task_key(context, task_id))}.{name}.json")


def _parse_list(value: Any) -> list[Any]:
    """A list rendered from a template may arrive as its JSON text."""
    if isinstance(value, str):
        text = value.strip()
        return list(json.loads(text)) if text.startswith("[") else [text]
    return list(value or [])


class DriftPartitionsOperator(BaseOperator):
    """The partitions of a Parquet file or folder: row-group ranges of about ``rows_per_partition`` rows (footers
    only are read). Returns (XCom) a list of partition specs for ``.expand(partition=...)``.

    :param path: Parquet file or directory, local or a URI (templated).
    :param rows_per_partition: rows per partition (row groups are never split).
    """

    template_fields: Sequence[str] = ("path",)

    def __init__(self, *, path: str, rows_per_partition: int = 5_000_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if rows_per_partition < 1:
            raise ValueError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
        self.path, self.rows_per_partition = path, rows_per_partition

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from mlops_airflow.monitoring.drift_partitions import split_partitions

        try:
            parts = split_partitions(str(self.path), self.rows_per_partition)
        except (OSError, ValueError) as err:
            raise MonitoringError(
                f"cannot list the Parquet partitions of {self.path!r}: {err}; check the path"
            ) from err
        if not parts:
            raise MonitoringError(f"{self.path!r} holds no Parquet rows: nothing to check; check the upstream step")
        from mlops_airflow import storage

        parts = [{**p, "path": storage.to_uri(p["path"])} for p in parts]  # XCom carries URIs
        log_summary(self.log, "drift-partitions", path=self.path, partitions=len(parts),
                    rows=sum(int(p.get("rows", 0)) for p in parts))
        return parts


class _PartitionTask(BaseOperator):
    """A map task over one partition of one side: its document saved under ``work_dir``; returns (XCom) its URI."""

    _what = ""

    def __init__(self, *, partition: Any, side: str, work_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if side not in ("reference", "current"):
            raise ValueError(f"side must be 'reference' or 'current', got {side!r}")
        self.partition, self.side, self.work_dir = partition, side, work_dir

    def _document(self) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, context: Context) -> str:
        from mlops_airflow.monitoring.drift_engine import DriftEngineError
        from mlops_airflow.monitoring.drift_partitions import save

        try:
            doc = self._document()
        except (DriftEngineError, OSError) as err:
            raise MonitoringError(
                f"cannot {self._what} the {self.side} partition {self.partition!r}: {err}; check that the partition "
                "is readable Parquet, then clear this task"
            ) from err
        name = "summary" if self._what == "summarise" else "counts"
        uri = save(doc, _doc_uri(str(self.work_dir), context, self.task_id, f"{self.side}.{name}"))
        log_summary(self.log, f"drift-{'summary' if name == 'summary' else 'count'}", side=self.side,
                    partition=self.partition, doc=uri)
        return uri


class DriftSummarizeOperator(_PartitionTask):
    """Round 1 on one partition: the column summaries, saved under ``work_dir``; returns (XCom) their URI.

    :param partition: a partition spec: a Parquet path/URI, a list of them, or ``{"path", "row_groups"}``
        (templated; usually mapped). An object-store URI is streamed through ``storage``'s filesystem (only the
        partition's row groups are read).
    :param side: ``reference`` or ``current``.
    :param work_dir: folder or URI (``s3://...``) for the documents (templated).
    :param columns: the columns to check; None = every column.
    """

    template_fields: Sequence[str] = ("partition", "work_dir", "columns")
    _what = "summarise"

    def __init__(self, *, columns: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = columns

    def _document(self) -> dict[str, Any]:
        from mlops_airflow.monitoring.drift_partitions import summarize

        return summarize(self.partition, self.columns, self.side)


class DriftPlanOperator(BaseOperator):
    """Reduce 1: merges every summary, types the columns as Evidently 0.7 does, picks the stattests and the second
    pass's edges; returns (XCom) the plan's URI.

    :param reference_summaries: URIs from the reference side's summarize tasks (templated / XComArg).
    :param current_summaries: the same for the current side.
    :param work_dir: folder or URI (``s3://...``) for the plan (templated).
    :param plan_options: ``stattest``, ``threshold``, per-type / per-column stattests and thresholds,
        ``column_types``, ``bins``, ``max_refinements`` (as ``DataDriftOperator`` takes them).
    """

    template_fields: Sequence[str] = ("reference_summaries", "current_summaries", "work_dir", "columns")

    def __init__(
        self,
        *,
        reference_summaries: Any,
        current_summaries: Any,
        work_dir: str,
        columns: list[str] | None = None,
        plan_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = sorted(set(plan_options or {}) - set(_PLAN_OPTIONS))
        if unknown:
            raise ValueError(f"unknown plan options {unknown}; known: {list(_PLAN_OPTIONS)}")
        self.reference_summaries, self.current_summaries = reference_summaries, current_summaries
        self.work_dir, self.columns, self.plan_options = work_dir, columns, dict(plan_options or {})

    def execute(self, context: Context) -> str:
        from mlops_airflow.monitoring.drift_engine import DriftEngineError
        from mlops_airflow.monitoring.drift_partitions import load, plan, save

        refs, curs = _parse_list(self.reference_summaries), _parse_list(self.current_summaries)
        if not refs or not curs:
            raise MonitoringError(
                f"the drift plan needs summaries of both sides (reference {len(refs)}, current {len(curs)}); "
                "check that the summarize tasks ran over at least one partition each"
            )
        try:
            doc = plan([load(u) for u in refs], [load(u) for u in curs], self.columns, **self.plan_options)
        except DriftEngineError as err:
            raise MonitoringError(f"drift plan over {len(refs)} + {len(curs)} partitions failed: {err}") from err
        uri = save(doc, _doc_uri(str(self.work_dir), context, self.task_id, "plan"))
        log_summary(self.log, "drift-plan", partitions=f"{len(refs)}/{len(curs)}", needs_count=doc.get("needs_count"),
                    doc=uri)
        return uri


class DriftCountOperator(_PartitionTask):
    """Round 2 on one partition: the counts the plan asks for; returns (XCom) their URI (nothing is read when the
    plan needs no count).

    :param partition: the same spec its summarize task had (templated; usually mapped).
    :param side: ``reference`` or ``current``.
    :param plan: the plan's URI (templated / XComArg).
    :param work_dir: folder or URI (``s3://...``) for the counts (templated).
    """

    template_fields: Sequence[str] = ("partition", "plan", "work_dir")
    _what = "count"

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def _document(self) -> dict[str, Any]:
        from mlops_airflow.monitoring.drift_partitions import count, load

        return count(self.partition, load(str(self.plan)), self.side)


class DriftVerdictOperator(DataDriftOperator):
    """Reduce 2: the verdict of a partitioned drift check, with everything ``DataDriftOperator`` does after its
    engine ran (reasons, unchecked columns, the report drawn from the statistics, MLflow logging, the retraining
    event on dataset drift). Refinement rounds, when a streamed score's bracket holds the threshold, are counted
    here over ``reference_partitions``/``current_partitions`` (the uncertain columns only).

    :param plan: the plan's URI (templated / XComArg).
    :param reference_counts: URIs from the reference side's count tasks (templated / XComArg).
    :param current_counts: the same for the current side.
    :param reference_partitions: the reference partition specs (for refinement; templated / XComArg).
    :param current_partitions: the current partition specs.
    Other parameters: ``DataDriftOperator``'s (``reference_path``/``current_path`` are labels in messages and
    the report here).
    """

    template_fields: Sequence[str] = (
        *DataDriftOperator.template_fields,
        "plan",
        "reference_counts",
        "current_counts",
        "reference_partitions",
        "current_partitions",
    )

    def __init__(
        self,
        *,
        plan: Any,
        reference_counts: Any,
        current_counts: Any,
        reference_partitions: Any = (),
        current_partitions: Any = (),
        reference_path: str = "reference partitions",
        current_path: str = "current partitions",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("report") == "evidently" or kwargs.get("engine") == "evidently":
            raise ValueError("a partitioned drift check has no Evidently report or engine: use report='engine'")
        super().__init__(reference_path=reference_path, current_path=current_path, **kwargs)
        self.plan, self.reference_counts, self.current_counts = plan, reference_counts, current_counts
        self.reference_partitions, self.current_partitions = reference_partitions, current_partitions

    def _execute_fast(self, report_path: Path) -> dict[str, Any]:
        from mlops_airflow.monitoring.drift_engine import DriftEngineError
        from mlops_airflow.monitoring.drift_partitions import count, finish, load, refine

        doc = load(str(self.plan))
        ref_docs = [load(u) for u in _parse_list(self.reference_counts)]
        cur_docs = [load(u) for u in _parse_list(self.current_counts)]
        try:
            rounds = 0
            while True:
                doc = refine(doc, ref_docs, cur_docs) if doc.get("needs_count") else doc
                if not doc.get("needs_count"):
                    break
                rounds += 1
                self.log.info("refinement round %d: counting the uncertain columns again", rounds)
                ref_docs = [count(p, doc, "reference") for p in _parse_list(self.reference_partitions)]
                cur_docs = [count(p, doc, "current") for p in _parse_list(self.current_partitions)]
            result = finish(doc)
        except DriftEngineError as err:
            raise MonitoringError(
                f"the partitioned drift check could not be reduced: {err}; clear the summarize/count tasks of this "
                "run (their documents are under work_dir) and retry"
            ) from err
        self._check_rows(result.reference_rows, result.current_rows, str(self.reference_path), str(self.current_path))
        return self._verdict_from_result(result, {}, report_path, str(self.reference_path), str(self.current_path))


def partitioned_drift_check(
    *,
    group_id: str,
    reference_partitions: Any,
    current_partitions: Any,
    work_dir: str,
    columns: list[str] | None = None,
    plan_options: dict[str, Any] | None = None,
    **verdict_kwargs: Any,
) -> Any:
    """A task group: summarize[] per side -> plan -> count[] per side -> verdict. Returns the group; its
    ``verdict`` task's XCom is the drift verdict (``DataDriftOperator``'s shape).

    :param reference_partitions: partition specs (a list, or an XComArg such as a ``DriftPartitionsOperator``'s).
    :param current_partitions: the same for the current side.
    :param work_dir: folder or URI for the documents (``s3://...`` when workers share no disk).
    :param plan_options: stattests, thresholds, ``column_types``, ``bins`` (see ``DriftPlanOperator``).
    :param verdict_kwargs: ``DriftVerdictOperator``'s: ``report_dir``, ``model_name``, ``drift_share_threshold``,
        ``tracking_uri``, ``experiment_name``, ``log_to_mlflow``, ``emit_retrain_event``, ...
    """
    from airflow.sdk import TaskGroup

    with TaskGroup(group_id=group_id) as group:
        summaries = {
            side: DriftSummarizeOperator.partial(
                task_id=f"summarize_{side}", side=side, work_dir=work_dir, columns=columns
            ).expand(partition=parts)
            for side, parts in (("reference", reference_partitions), ("current", current_partitions))
        }
        plan = DriftPlanOperator(
            task_id="plan",
            reference_summaries=summaries["reference"].output,
            current_summaries=summaries["current"].output,
            work_dir=work_dir,
            columns=columns,
            plan_options=plan_options,
        )
        counts = {
            side: DriftCountOperator.partial(
                task_id=f"count_{side}", side=side, plan=plan.output, work_dir=work_dir
            ).expand(partition=parts)
            for side, parts in (("reference", reference_partitions), ("current", current_partitions))
        }
        DriftVerdictOperator(
            task_id="verdict",
            plan=plan.output,
            reference_counts=counts["reference"].output,
            current_counts=counts["current"].output,
            reference_partitions=reference_partitions,
            current_partitions=current_partitions,
            **verdict_kwargs,
        )
    return group
