"""The snapshots table: one row per build, written in one statement before the build is
answered and read back by id or by message. Every statement runs with the request's tenant
set (``engram.tenant_id``), which the forced row-level security checks as a second wall."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.runtime.db import create_pool, scope_session, scope_tenant

# One statement (one round trip, in its own implicit transaction): the snapshot, and the
# use of the template it named ($16), counted together or not at all.
RECORD = """
WITH snapshot AS (
    INSERT INTO context.snapshots
        (tenant_id, snapshot_id, agent_id, user_id, conversation_id, message_id, request,
         segments, tokenizer, token_budget, total_tokens, source_tokens, compression_ratio,
         segment_count, build_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
)
UPDATE context.templates SET use_count = use_count + 1, last_used_at = now()
 WHERE $16::text IS NOT NULL AND tenant_id = $1 AND name = $16 AND deleted_at IS NULL
"""
COLUMNS = """snapshot_id, created_at, request, segments, tokenizer, total_tokens,
             source_tokens, compression_ratio, segment_count, build_ms"""
BY_ID = f"SELECT {COLUMNS} FROM context.snapshots WHERE tenant_id = $1 AND snapshot_id = $2"
BY_MESSAGE = f"""
SELECT {COLUMNS} FROM context.snapshots
 WHERE tenant_id = $1 AND message_id = $2 ORDER BY created_at DESC LIMIT 1
"""


async def record(
    pool: asyncpg.Pool, tenant: str, row: tuple[Any, ...], template: str | None = None
) -> None:
    """``row``: the snapshot's values after the tenant, in its column order; the template
    it used counts one more use in the same statement. ``pool``: the builder's snapshot
    pool (sessions that keep their tenant, commits that do not wait for the disk)."""
    async with pool.acquire() as conn:
        await scope_session(conn, tenant)
        await conn.execute(RECORD, tenant, *row, template)


async def read(
    pool: asyncpg.Pool, tenant: str, snapshot_id: UUID | None, message_id: UUID | None
) -> asyncpg.Record | None:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await scope_tenant(conn, tenant)
        if snapshot_id is not None:
            return await conn.fetchrow(BY_ID, tenant, snapshot_id)
        return await conn.fetchrow(BY_MESSAGE, tenant, message_id)


async def snapshot_pool(dsn: str, size: int) -> asyncpg.Pool:
    """The connections snapshots are written on: apart from the worker's pool (whose
    release resets a session), so a session keeps its tenant (``scope_session``: no round
    trip while it serves one tenant); and ``synchronous_commit`` off: a build's reply does
    not wait for the disk to flush its snapshot. The snapshot is committed (every reader
    sees it) before the build is answered; a crash of PostgreSQL itself may lose the last
    fraction of a second of snapshots, never leave one half written (docs/context.md)."""
    return await create_pool(
        dsn,
        worker=True,
        min_size=1,
        max_size=size,
        keep_session=True,
        server_settings={"synchronous_commit": "off"},
    )
