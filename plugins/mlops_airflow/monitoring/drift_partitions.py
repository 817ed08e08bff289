"""One drift check as map-reduce over partitions: the fast engine's statistics, summarised per partition and
reduced to the verdict the single pass (``drift_engine.detect_drift``) gives.

A *partition* is part of one side (reference or current): a Parquet file or directory, a list of files, a
row-group range of one file (``{"path": file, "row_groups": [start, stop]}``, see ``split_partitions``), or, for
tests, a mapping column -> values. Every step is a plain function of JSON-serialisable documents, so each can be
an Airflow task (mapped over partitions for the two maps), and ``save``/``load`` put a document behind a path or
fsspec URI so that XCom carries only the URI::

    round 1 map     summarize(partition, columns, side)          -> summary   (one per partition and side)
    reduce 1        plan(ref_summaries, cur_summaries, columns)  -> plan      (types, methods, edges)
    round 2 map     count(partition, plan, side)                 -> counts    (one per partition and side)
    [refinement     refine(plan, ref_counts, cur_counts)         -> plan'     then count(partition, plan', side)]
    reduce 2        finish(plan, ref_counts, cur_counts)         -> DriftResult

``detect_drift_partitioned`` runs all of it in one process (tests, small data). As Airflow tasks (a sketch; the
documents live under a run folder, XCom carries URIs)::

    parts = split_partitions(current_path, rows_per_partition=5_000_000)            # footers only
    summaries = summarize_task.partial(side="current").expand(partition=parts)       # save(summarize(...), uri)
    plan_uri = plan_task(ref_summaries, summaries)                                   # save(plan(...), uri)
    counts = count_task.partial(plan=plan_uri, side="current").expand(partition=parts)
    plan_uri = refine_task(plan_uri, ref_counts, counts)       # as many refine/count rounds as the DAG allows;
    result = finish_task(plan_uri)                             # count tasks return at once when none is needed

**Round 1** summarises each column of a partition: rows, nulls, finite non-null count ``n``, mean and sum of
squared deviations (merged with Chan et al.'s formula), min, max, whether an Arrow null was seen, all value counts
while the column has at most 21 distinct values (numerical types; categorical types: always all), and a
deterministic strided sample of at most ``sample_size`` values with the weight each sample value stands for.

**Reduce 1** merges the summaries exactly (counts, extremes, nulls; moments in a fixed partition order, so the
merge does not depend on the order the summaries come in), types every column from the merged **current** side
with ``column_types.classify`` (Evidently 0.7's typing, or the declared ``column_types``; text, datetime and
unknown columns go to ``DriftResult.unchecked`` with the reason), resolves each column's stattest and threshold as
``detect_drift`` does (``drift_engine.resolve_stattest``: per column, per type, for all) and picks the automatic
method with ``default_stattest`` from the merged counts, exactly as the single pass does (``reference_count`` =
merged finite non-null ``n``, ``n_unique`` = distinct values of both sides' merged counts). Columns decided by
counts already known (chisquare, z, jensenshannon, psi on few values; Wasserstein/KS when both sides have at most
21 distinct values: every value is an edge) are finished here. The others get a second pass:

- numerical jensenshannon/psi with more than 20 reference values: Sturges edges from the merged ``n``/min/max
  (``drift_engine._sturges_edges``, the same edges as the single pass, so the same counts and score);
- Wasserstein/KS: ``bins`` equal-mass edges from the merged, weighted samples of both sides, plus min and max
  (and every value of a side that has at most 21);
- value counts of a side that has more distinct values than the summary keeps (a categorical integer column whose
  reference has more than 21 values; jensenshannon/psi on a numerical column with few reference values), or whose
  NaN/inf a categorical count must include (a float column declared categorical; chisquare or z is then chosen
  from the counted values).

**Round 2** counts per partition: Sturges histograms, or the engine's two counters per edge (values equal to it,
values between it and the previous one), or value counts; the counts of all partitions add up to the counts of
the whole side, so **reduce 2** is exact for the counts-based tests (the same score as the single pass, up to
summation order ~1e-16) and, for Wasserstein/KS, gives the engine's certified interval ``[low, high]`` that holds
the exact statistic: the verdict is the exact one when the threshold lies outside it (``certain``). ``refine``
splits the intervals that carry the slack of the uncertain columns (``refine_splits`` parts, within
``max_edges``), exactly as the single pass refines, for another count round; after ``max_refinements`` rounds an
uncertain column is decided on the midpoint with ``certain=False``, as in the single pass.

**Memory.** A map task holds one record batch, one column's accumulators (the sample: ``sample_size`` float64;
the edges and their counters: 24 bytes an edge) and the documents it writes; reduce 1 holds the samples of every
partition (``partitions x columns x sample_size x 8`` bytes; compacted to ``_PLAN_SAMPLE`` weighted values per
column above ``_PLAN_SAMPLE_MAX``), reduce 2 one counts document at a time plus the summed counters. Categorical
value counts grow with the number of distinct values, as in the single pass and in Evidently.

**Differences from the single pass.** Wasserstein/KS are always bounded (the single pass holds the values and is
exact below ``max_exact_rows``); with ``bins`` at least the number of distinct values, every value is an edge and
the bound is exact. The edges are other quantiles than the single pass's (its sample is one stride over both
sides), so a streamed interval differs, never its validity. Per-column ``seconds`` are 0 (the work is spread over
tasks). All NaN of a categorical float column are one value (the single pass may count one per batch).

No Airflow import; numpy, scipy and pyarrow are imported inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlops_airflow.monitoring.drift_engine import (
    ArraySource,
    DriftResult,
)
from mlops_airflow.monitoring.partition_counts import count, finish, refine
from mlops_airflow.monitoring.partition_docs import (
    DISTINCT_LIMIT,
    FORMAT,
    SAMPLE_SIZE,
    _is_columns,
    load,
    open_partition,
    save,
    split_partitions,
)
from mlops_airflow.monitoring.partition_plan import plan
from mlops_airflow.monitoring.partition_summary import summarize

__all__ = [
    "DISTINCT_LIMIT",
    "FORMAT",
    "SAMPLE_SIZE",
    "count",
    "detect_drift_partitioned",
    "finish",
    "load",
    "open_partition",
    "plan",
    "refine",
    "save",
    "split_partitions",
    "summarize",
]

if TYPE_CHECKING:
    pass


def detect_drift_partitioned(
    reference_partitions: Sequence[Any],
    current_partitions: Sequence[Any],
    columns: Sequence[str] | None = None,
    *,
    batch_size: int = 1 << 18,
    sample_size: int = SAMPLE_SIZE,
    **options: Any,
) -> DriftResult:
    """All rounds in this process (tests, small data): the result the mapped tasks reduce to.

    :param reference_partitions: partition specs (see ``open_partition``) of the reference side.
    :param options: ``plan``'s options (``stattest``, ``threshold``, ``cat_stattest``, ``num_stattest``,
        ``per_column_stattest``, the thresholds alike, ``column_types``, ``bins``, ``max_refinements``, ...).
    """
    started = time.perf_counter()
    # In-memory partitions become sources once (not again for every round).
    ref_parts = [ArraySource(p) if _is_columns(p) else p for p in reference_partitions]
    cur_parts = [ArraySource(p) if _is_columns(p) else p for p in current_partitions]
    ref_sum = [summarize(p, columns, "reference", batch_size=batch_size, sample_size=sample_size) for p in ref_parts]
    cur_sum = [summarize(p, columns, "current", batch_size=batch_size, sample_size=sample_size) for p in cur_parts]
    doc = plan(ref_sum, cur_sum, columns, **options)
    del ref_sum, cur_sum
    while doc["needs_count"]:
        ref_counts = [count(p, doc, "reference", batch_size=batch_size) for p in ref_parts]
        cur_counts = [count(p, doc, "current", batch_size=batch_size) for p in cur_parts]
        doc = refine(doc, ref_counts, cur_counts)
    result = finish(doc)
    result.seconds = time.perf_counter() - started
    return result
