"""Garbage-collector settings for a worker process, applied once it has started.

A worker allocates many short-lived containers per message (the message, its headers,
the decoded event), so with Python's default young-generation threshold (700) it
collects every few messages and promotes each batch in flight to the older
generations, whose collections then rescan everything imported at start-up (pydantic
schemas, FastStream, asyncpg, the embedder's model). Freezing what exists after
start-up takes that heap out of every later collection, and a larger young threshold
makes collections rare enough that most of a batch is freed by reference counting
before one runs. Reference cycles are still collected, only less often.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("engram.gc")


def tune_gc(*, freeze: bool, young_threshold: int) -> None:
    """Apply the settings to this process (the collector is process-wide: with several
    workers in one process, as in `engram dev`, the last one started sets it)."""
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    if freeze:
        # Unfreeze and collect first, so that only live objects are frozen (garbage frozen
        # now would never be freed) and a second start in one process (`engram dev`, the
        # tests) also frees what the first froze and has since dropped.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    log.debug("gc thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
