"""A database outage as the pipeline waits it out: a batch whose transaction failed while
the database does not answer is held (its messages kept alive, nothing more pulled) until
it answers, then applied again, so no delivery is spent on an outage however long."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from services.runtime.errors import describe, is_transient, retry_delay
from services.runtime.telemetry import Stats

# The pipeline's logger: an operator reads the outage among the batches it held.
log = logging.getLogger("engram.pipeline")
PROBE_TIMEOUT_S = 5.0  # a database that does not answer a SELECT 1 in this is unreachable


class DatabaseOutage:
    """Probes the database for the batches of one consumer; ``stats`` is the worker's, so
    an outage is reported and counted once however many batches wait it out."""

    def __init__(self, pool: asyncpg.Pool, stats: Stats, *, base_s: float, max_s: float) -> None:
        self._pool = pool
        self._stats = stats
        self._base_s = base_s
        self._max_s = max_s  # the probes back off to this: resume soon after it is back

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except Exception as exc:
            if not is_transient(exc):
                raise
            return False
        return True

    async def wait_out(self, failure: BaseException) -> bool:
        """After a transient failure: when the database does not answer, hold the batch
        (its messages kept alive, nothing more pulled) until it does, and return True;
        False when it answers at once (the failure was the batch's: retried by nak)."""
        if await self.reachable():
            return False
        # Batches in flight together (a service whose batches commute) all wait here; the
        # first one to notice the outage reports it, the first one to see the end closes it.
        if self._stats.database_unreachable_since is None:
            self._stats.database_unreachable_since = time.time()
            log.error(
                "the database is unreachable (%s): holding the batch, pulling nothing until "
                "it is back",
                describe(failure),
            )
        waits = 0
        while not await self.reachable():
            waits += 1
            await asyncio.sleep(retry_delay(waits, self._base_s, self._max_s))
        if self._stats.database_unreachable_since is not None:
            down_s = time.time() - self._stats.database_unreachable_since
            self._stats.database_unreachable_since = None
            self._stats.database_outages += 1
            log.warning("the database is back after %.1fs; applying the held batch", down_s)
        return True
