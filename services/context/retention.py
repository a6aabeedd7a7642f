"""Snapshot retention: the worker deletes snapshots older than ``snapshot_keep_days``,
in batches, every ``snapshot_prune_every_s`` (a runtime ``Loop``). Retention spans
tenants by design, so it acts as the service's cross-tenant role, in its own short
transactions; replicas may run it at once (a row is deleted once)."""

from __future__ import annotations

import logging

import asyncpg

from services.context.settings import ContextSettings
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import act_for_all_tenants
from services.runtime.loop import Loop

log = logging.getLogger("engram.context")
BATCH = 5000
PRUNE = """
DELETE FROM context.snapshots WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM context.snapshots
     WHERE created_at < now() - make_interval(secs => $1 * 86400) LIMIT $2))
"""


class SnapshotRetention:
    name = "snapshot-retention"

    def __init__(self, settings: ContextSettings) -> None:
        assert settings.snapshot_keep_days is not None
        self._keep_days = settings.snapshot_keep_days
        self._roles = settings.roles
        self._pool: asyncpg.Pool | None = None
        self.deleted = 0
        every = settings.snapshot_prune_every_s
        self.loop = Loop(self.name, self._step, every_s=every, first_after_s=min(every, 5.0))

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = ctx.pool
        await self.loop.start(ctx)

    async def stop(self) -> None:
        await self.loop.stop()
        self._pool = None

    def health(self) -> Health:
        return self.loop.health()

    async def _step(self) -> bool:
        if self._pool is None:
            raise NotStarted("the snapshot retention")
        async with self._pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self._roles)
            status = await conn.execute(PRUNE, self._keep_days, BATCH)
        deleted = int(status.split()[-1])
        if deleted:
            self.deleted += deleted
            log.info("deleted %d snapshots older than %s days", deleted, self._keep_days)
        return deleted == BATCH  # more may be waiting: step again at once
