"""``query.langgraph.delete_thread`` / ``delete_for_runs`` / ``copy_thread`` / ``prune``:
each one transaction on the worker's role, scoped to the request's tenant.

Blobs go only when no remaining checkpoint reads them, directly or as the base of a delta
it reads (``DELETE_ORPHAN_BLOBS``): retention never breaks a chain. The cache forgets the
threads touched, here; another replica's stale entry is caught by the foreign key of the
next delta it writes (lg_commands.put).
"""

from __future__ import annotations

import asyncpg

from contracts.errors import ErrorCode
from contracts.langgraph import CopyThreadRequest, DeleteForRunsRequest, PruneRequest
from services.checkpointer import lg_maintain_sql as sql
from services.checkpointer.lg_delta import BlobCache
from services.runtime.db import Connection, scope_tenant
from services.runtime.replies import QueryFailed


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _collect(conn: Connection, tenant: str, threads: list[str]) -> None:
    await conn.execute(sql.DELETE_ORPHAN_WRITES, tenant, threads)
    await conn.execute(sql.DELETE_ORPHAN_BLOBS, tenant, threads)


async def delete_threads(
    pool: asyncpg.Pool, cache: BlobCache, tenant: str, threads: list[str]
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenant(conn, tenant)
        deleted = _count(await conn.execute(sql.DELETE_CHECKPOINTS, tenant, threads))
        for statement in sql.DELETE_THREAD:
            await conn.execute(statement, tenant, threads)
    cache.drop_threads(tenant, set(threads))
    return deleted


async def delete_for_runs(pool: asyncpg.Pool, cache: BlobCache, req: DeleteForRunsRequest) -> int:
    if not req.run_ids:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenant(conn, req.tenant_id)
        rows = await conn.fetch(sql.DELETE_RUNS, req.tenant_id, req.run_ids)
        threads = sorted({r["thread_id"] for r in rows})
        if threads:
            await _collect(conn, req.tenant_id, threads)
    cache.drop_threads(req.tenant_id, set(threads))
    return len(rows)


async def copy_thread(pool: asyncpg.Pool, req: CopyThreadRequest) -> int:
    src, dst = req.source_thread_id, req.target_thread_id
    if src == dst:
        raise QueryFailed(ErrorCode.invalid, "source and target thread are the same")
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenant(conn, req.tenant_id)
        ids = [r["blob_id"] for r in await conn.fetch(sql.COPY_BLOBS, req.tenant_id, src, dst)]
        if ids:
            await conn.execute(sql.LINK_COPIED_BLOBS, req.tenant_id, src, dst, ids)
        copied = _count(await conn.execute(sql.COPY_CHECKPOINTS, req.tenant_id, src, dst))
        await conn.execute(sql.COPY_WRITES, req.tenant_id, src, dst)
    return copied


async def prune(pool: asyncpg.Pool, cache: BlobCache, req: PruneRequest) -> int:
    if not req.thread_ids:
        return 0
    if req.strategy == "delete":
        return await delete_threads(pool, cache, req.tenant_id, req.thread_ids)
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenant(conn, req.tenant_id)
        delta = [
            r["thread_id"]
            for r in await conn.fetch(sql.DELTA_THREADS, req.tenant_id, req.thread_ids)
        ]
        if delta:
            raise QueryFailed(
                ErrorCode.invalid,
                f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(delta)}",
                hint="prune them with strategy 'delete', or not at all",
            )
        deleted = _count(
            await conn.execute(sql.DELETE_ALL_BUT_LATEST, req.tenant_id, req.thread_ids)
        )
        await _collect(conn, req.tenant_id, req.thread_ids)
    cache.drop_threads(req.tenant_id, set(req.thread_ids))
    return deleted
