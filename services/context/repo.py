"""The snapshots table: one row per build, written in the build's own transaction and read
back by id or by message. Every statement runs with the request's tenant set
(``engram.tenant_id``), which the forced row-level security checks as a second wall."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.runtime.db import scope_tenant

INSERT = """
INSERT INTO context.snapshots
    (tenant_id, snapshot_id, agent_id, user_id, conversation_id, message_id, request,
     segments, tokenizer, token_budget, total_tokens, source_tokens, compression_ratio,
     segment_count, build_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
COLUMNS = """snapshot_id, created_at, request, segments, tokenizer, total_tokens,
             source_tokens, compression_ratio, segment_count, build_ms"""
BY_ID = f"SELECT {COLUMNS} FROM context.snapshots WHERE tenant_id = $1 AND snapshot_id = $2"
BY_MESSAGE = f"""
SELECT {COLUMNS} FROM context.snapshots
 WHERE tenant_id = $1 AND message_id = $2 ORDER BY created_at DESC LIMIT 1
"""


USED = """
UPDATE context.templates SET use_count = use_count + 1, last_used_at = now()
 WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL
"""


async def record(
    pool: asyncpg.Pool, tenant: str, row: tuple[Any, ...], template: str | None = None
) -> None:
    """``row``: the INSERT's values after the tenant, in its column order; the template
    it used counts one more use in the same transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenant(conn, tenant)
        await conn.execute(INSERT, tenant, *row)
        if template is not None:
            await conn.execute(USED, tenant, template)


async def read(
    pool: asyncpg.Pool, tenant: str, snapshot_id: UUID | None, message_id: UUID | None
) -> asyncpg.Record | None:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await scope_tenant(conn, tenant)
        if snapshot_id is not None:
            return await conn.fetchrow(BY_ID, tenant, snapshot_id)
        return await conn.fetchrow(BY_MESSAGE, tenant, message_id)
