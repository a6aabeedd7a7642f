"""The checkpointer's background parts, started by the worker before its consumers: the
pool the queries read with, and the loops that sweep parked messages and prune history."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.checkpointer.prune import prune_exclusively
from services.checkpointer.queries import create_query_pool
from services.checkpointer.writer import StateWriter
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import Roles, act_for_all_tenants
from services.runtime.loop import Loop
from services.runtime.own_pool import OwnPool
from services.runtime.settings import WorkerSettings

log = logging.getLogger("engram.checkpointer")


class QueryPool(OwnPool):
    """The connections query.state.* read with (the reader role)."""

    name = "query-pool"

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        return await create_query_pool(settings.database_url, settings.roles.reader, self.size)


PoolWork = Callable[[asyncpg.Pool], Awaitable[bool | None]]  # True: more is waiting


class PoolLoop:
    """A ``Loop`` whose step works with the worker's pool (known once the worker starts)."""

    def __init__(self, name: str, work: PoolWork, *, every_s: float) -> None:
        self.name = name
        self._work = work
        self._pool: asyncpg.Pool | None = None
        # The first step one period after start, as each period's: the consumer (whose ack
        # floor the sweep reads) is created after the components start.
        self.loop = Loop(name, self._step, every_s=every_s, first_after_s=every_s)

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = ctx.pool
        await self.loop.start(ctx)

    async def stop(self) -> None:
        await self.loop.stop()
        self._pool = None

    def health(self) -> Health:
        return self.loop.health()

    async def _step(self) -> bool | None:
        if self._pool is None:
            raise NotStarted(f"the {self.name} loop")
        return await self._work(self._pool)


def parked_sweep(writer: StateWriter, every_s: float, roles: Roles) -> PoolLoop:
    """Applies parked messages whose predecessors were dead-lettered (see ordering.py):
    no later message of their state may come to apply them."""

    async def sweep(pool: asyncpg.Pool) -> bool:
        async with pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, roles)  # parked messages of every tenant
            await writer.sweep(conn)
        return False  # what is left still waits: the next period looks again

    return PoolLoop("parked-sweep", sweep, every_s=every_s)


def periodic_prune(keep_days: float, every_s: float, compress_above: int, roles: Roles) -> PoolLoop:
    """The worker's own retention run (``prune_keep_days``), one replica at a time."""

    async def prune(pool: asyncpg.Pool) -> bool:
        report = await prune_exclusively(
            pool, keep_days, roles=roles, compress_above=compress_above
        )
        if report is not None:
            log.info("pruned %s", report)
        return False

    return PoolLoop("retention", prune, every_s=every_s)
