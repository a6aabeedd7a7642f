"""Two batches in flight wait out one database outage together (a service whose batches
commute commits two at once): both apply their held batch once the database answers, and
the outage is reported and counted once. The second used to fail on the state the first
had just cleared (found by bench/outage.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg

from services.runtime.outage import DatabaseOutage
from services.runtime.telemetry import Stats


class FlakyDatabase:
    """A pool whose connections fail (a refused connection) until it is brought back."""

    def __init__(self) -> None:
        self.up = False
        self.probes = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FlakyDatabase]:
        self.probes += 1
        if not self.up:
            raise ConnectionRefusedError("database down")
        yield self

    async def fetchval(self, query: str) -> Any:
        return 1


async def test_two_waiters_both_resume_and_the_outage_counts_once() -> None:
    db = FlakyDatabase()
    stats = Stats()
    outage = DatabaseOutage(cast(asyncpg.Pool, db), stats, base_s=0.01, max_s=0.02)
    failure = ConnectionRefusedError("database down")
    waiters = [asyncio.create_task(outage.wait_out(failure)) for _ in range(2)]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in waiters)  # held while the database is down
    assert stats.database_unreachable_since is not None
    db.up = True
    assert await asyncio.gather(*waiters) == [True, True]
    assert stats.database_unreachable_since is None
    assert stats.database_outages == 1
