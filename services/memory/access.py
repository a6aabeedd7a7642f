"""Access counts of the memories searches return, written in the background.

A search only records what it returned (in memory); a ``Loop`` writes the counts in one
statement every ``access_flush_s``, so a reply never waits for that write. Counts that
could not be written are kept for the next round, and the loop's last step at shutdown
writes what is left.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import scope_tenants
from services.runtime.loop import Loop


class AccessLog:
    """A component: ``record`` from searches, flushed by its loop."""

    name = "memory-access"

    def __init__(self, flush_s: float) -> None:
        self._pending: Counter[tuple[str, UUID]] = Counter()
        self._last: dict[tuple[str, UUID], datetime] = {}
        self._pool: asyncpg.Pool | None = None
        self._loop = Loop(self.name, self.flush, every_s=flush_s, final_step=True)

    def record(self, tenant_id: str, ids: list[UUID]) -> None:
        now = datetime.now(UTC)
        for memory_id in ids:
            self._pending[(tenant_id, memory_id)] += 1
            self._last[(tenant_id, memory_id)] = now

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = ctx.pool
        await self._loop.start(ctx)

    async def stop(self) -> None:
        await self._loop.stop()  # its last step writes what is pending

    def health(self) -> Health:
        return self._loop.health()

    async def flush(self) -> bool:
        """Write the pending counts; False: nothing more is waiting."""
        if not self._pending:
            return False
        if self._pool is None:
            raise NotStarted("the access log")
        pending, last = self._pending, self._last
        self._pending, self._last = Counter(), {}
        keys = sorted(pending, key=lambda k: (k[0], str(k[1])))  # one lock order
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await scope_tenants(conn, {k[0] for k in keys})
                await conn.execute(
                    """UPDATE memory.memories m
                          SET access_count = m.access_count + a.n,
                              last_accessed_at = greatest(m.last_accessed_at, a.at)
                         FROM unnest($1::text[], $2::uuid[], $3::int[], $4::timestamptz[])
                              AS a(tenant_id, memory_id, n, at)
                        WHERE m.tenant_id = a.tenant_id AND m.memory_id = a.memory_id""",
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [pending[k] for k in keys],
                    [last[k] for k in keys],
                )
        except Exception:
            self._pending.update(pending)  # put them back for the next round
            for k, at in last.items():
                self._last[k] = max(at, self._last.get(k, at))
            raise
        return False
