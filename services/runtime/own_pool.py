"""A component's own database connections, apart from the worker's batch pool."""

from __future__ import annotations

import asyncpg

from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.settings import WorkerSettings


class OwnPool:
    """Connections of a part of the worker (its queries or commands) apart from the pool
    its batches use: a burst of requests never waits for a batch's connection, nor a batch
    for a request. A subclass names itself and says how its pool opens (role, session
    settings); used before start or after stop it raises ``NotStarted`` (``unavailable``)."""

    name = "own-pool"

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: asyncpg.Pool | None = None

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        raise NotImplementedError

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = await self.open(ctx.settings)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None  # requests from now on: unavailable
        if pool is not None:
            await pool.close()

    def health(self) -> Health:
        if self._pool is None:
            return Health(self.name, False, "closed")
        return Health(self.name, True, f"{self._pool.get_size()}/{self.size} connections")

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted(f"{self.name} (its connections)")
        return self._pool
