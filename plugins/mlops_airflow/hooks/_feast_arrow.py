"""Arrow helpers of ``FeastHook.materialize_window``: the collector paused while a window is written, and the
entities of a window that come back later in the interval (no heavy import at module level)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while one window's rows become protobufs and online-store rows.

    The conversion allocates a few objects per feature value and no reference cycles; every allocation burst
    triggers collections that walk the whole heap of the task process (Airflow and Feast imports included), which
    cost a quarter of the CPU time of a window in our benchmark. Reference counting still frees everything; the
    collector is back on (if it was on) when the window is written, also on error.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def keys_seen_later(batches: Any, frame: Any, keys: list[str]) -> Any:
    """Boolean mask over ``frame``: entities that also occur in ``batches`` (the rows after this window).

    Only this window's entities are looked for, and the scan stops as soon as every one of them was seen later
    (with data in time order, usually a few days into the rest of the interval): memory is bounded by the
    window's entities and the time by how soon they come back, not by the length of the rest of the interval.
    One join key (the common case) stays in Arrow; several go through pandas.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(keys) == 1:
        wanted = pa.array(frame[keys[0]].to_numpy())
        remaining = pc.unique(wanted)
        for record_batch in batches:
            column = record_batch.column(0).cast(remaining.type)
            found = pc.unique(column.filter(pc.is_in(column, value_set=remaining)))
            if len(found):
                remaining = remaining.filter(pc.invert(pc.is_in(remaining, value_set=found)))
                if len(remaining) == 0:
                    break
        seen = pc.invert(pc.is_in(wanted, value_set=remaining))
        return np.asarray(seen.to_numpy(zero_copy_only=False), dtype=bool)
    remaining_set = set(frame[keys].itertuples(index=False, name=None))
    for record_batch in batches:
        part = record_batch.to_pandas()
        remaining_set -= set(part[keys].itertuples(index=False, name=None))
        if not remaining_set:
            break
    return np.asarray([row not in remaining_set for row in frame[keys].itertuples(index=False, name=None)],
                      dtype=bool)
