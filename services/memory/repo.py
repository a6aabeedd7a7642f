"""SQL of the event handlers: memories written, forgotten, given vectors; session notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import numpy as np

from services.memory.rows import (
    Link,
    LinkTarget,
    MemoryKey,
    NewMemory,
    VectorUpdate,
)
from services.runtime.db import Connection

MEMORY_COLUMNS = (
    "tenant_id",
    "memory_id",
    "agent_id",
    "user_id",
    "conversation_id",
    "memory_type",
    "text",
    "content",
    "content_hash",
    "tokens",
    "importance",
    "decay_rate",
    "expires_at",
    "source_message_id",
    "origin",
    "written_at",
)


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form (asyncpg has no codec for arrays of vectors)."""
    return "[" + ",".join(map(repr, vector.astype(float).tolist())) + "]"


# A newer write replaces text and content (and drops a vector of other text); access
# statistics stay. A tombstone is never written over: forgetting is final.
UPSERT_MEMORIES = """
INSERT INTO memory.memories AS m (tenant_id, memory_id, agent_id, user_id, conversation_id,
    memory_type, text, content, content_hash, tokens, importance, decay_rate, expires_at,
    source_message_id, origin, written_at, decayed_at)
SELECT w.*, w.written_at
  FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[],
              $7::text[], $8::jsonb[], $9::bytea[], $10::int[], $11::real[], $12::real[],
              $13::timestamptz[], $14::uuid[], $15::text[], $16::timestamptz[])
       AS w(tenant_id, memory_id, agent_id, user_id, conversation_id, memory_type, text,
            content, content_hash, tokens, importance, decay_rate, expires_at,
            source_message_id, origin, written_at)
ON CONFLICT (tenant_id, memory_id) DO UPDATE SET
    agent_id = EXCLUDED.agent_id, user_id = EXCLUDED.user_id,
    conversation_id = EXCLUDED.conversation_id, memory_type = EXCLUDED.memory_type,
    text = EXCLUDED.text, content = EXCLUDED.content, tokens = EXCLUDED.tokens,
    content_hash = EXCLUDED.content_hash,
    embedding = CASE WHEN m.content_hash = EXCLUDED.content_hash THEN m.embedding END,
    model_id = CASE WHEN m.content_hash = EXCLUDED.content_hash THEN m.model_id END,
    importance = EXCLUDED.importance, decay_rate = EXCLUDED.decay_rate,
    decayed_at = EXCLUDED.written_at, expires_at = EXCLUDED.expires_at,
    source_message_id = EXCLUDED.source_message_id, written_at = EXCLUDED.written_at,
    updated_at = now()
WHERE m.status <> 'forgotten' AND m.written_at <= EXCLUDED.written_at
RETURNING m.tenant_id, m.memory_id
"""


async def upsert_memories(conn: Connection, rows: Sequence[NewMemory]) -> set[MemoryKey]:
    """Insert or replace; returns the keys written (not those older or forgotten)."""
    columns = [[getattr(row, c) for row in rows] for c in MEMORY_COLUMNS]
    return {MemoryKey(r[0], r[1]) for r in await conn.fetch(UPSERT_MEMORIES, *columns)}


async def replace_links(
    conn: Connection,
    tenant_id: str,
    memory_id: UUID,
    links: Sequence[LinkTarget],
) -> None:
    await conn.execute(
        "DELETE FROM memory.memory_links WHERE tenant_id = $1 AND memory_id = $2",
        tenant_id,
        memory_id,
    )
    if links:
        await add_links(conn, tenant_id, [Link(memory_id, *x) for x in links])


async def add_links(conn: Connection, tenant_id: str, links: Sequence[Link]) -> None:
    await conn.execute(
        """INSERT INTO memory.memory_links (tenant_id, memory_id, target_id, relation, weight)
           SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::real[])
           ON CONFLICT DO NOTHING""",
        tenant_id,
        [x.memory_id for x in links],
        [x.target_id for x in links],
        [x.relation for x in links],
        [x.weight for x in links],
    )


FORGET = """
WITH target AS (
    SELECT memory_id FROM memory.memories
     WHERE tenant_id = $1 AND status <> 'forgotten'
       AND ($2::uuid[] IS NULL OR memory_id = ANY($2))
       AND ($3::text IS NULL OR agent_id = $3)
       AND ($4::text IS NULL OR user_id = $4)
       AND ($5::uuid IS NULL OR conversation_id = $5)
)
UPDATE memory.memories m
   SET status = 'forgotten', text = NULL, content = NULL, embedding = NULL, model_id = NULL,
       content_hash = NULL, tokens = 0, forgotten_at = $6, forgotten_by = $7,
       forget_reason = $8, updated_at = now()
  FROM target WHERE m.tenant_id = $1 AND m.memory_id = target.memory_id
RETURNING m.memory_id
"""


async def forget(
    conn: Connection,
    tenant_id: str,
    *,
    ids: Sequence[UUID] | None,
    agent_id: str | None,
    user_id: str | None,
    conversation_id: UUID | None,
    at: datetime,
    by: str,
    reason: str | None,
) -> list[UUID]:
    rows = await conn.fetch(
        FORGET,
        tenant_id,
        list(ids) if ids is not None else None,
        agent_id,
        user_id,
        conversation_id,
        at,
        by,
        reason,
    )
    return [r[0] for r in rows]


async def tombstones(
    conn: Connection,
    tenant_id: str,
    ids: Sequence[UUID],
    *,
    at: datetime,
    by: str,
    reason: str | None,
) -> None:
    """Tombstones for ids never written yet: a write that arrives later stays forgotten."""
    await conn.execute(
        """INSERT INTO memory.memories (tenant_id, memory_id, agent_id, memory_type, status,
               importance, decay_rate, decayed_at, written_at, forgotten_at, forgotten_by,
               forget_reason)
           SELECT $1, id, '', NULL, 'forgotten', 0, 0, $3, $3, $3, $4, $5
             FROM unnest($2::uuid[]) AS id
           ON CONFLICT DO NOTHING""",
        tenant_id,
        list(ids),
        at,
        by,
        reason,
    )


SET_VECTORS = """
UPDATE memory.memories m
   SET embedding = v.embedding::vector, model_id = v.model_id, updated_at = now()
  FROM unnest($1::text[], $2::uuid[], $3::bytea[], $4::text[], $5::text[])
       AS v(tenant_id, memory_id, content_hash, model_id, embedding)
 WHERE m.tenant_id = v.tenant_id AND m.memory_id = v.memory_id
   AND m.content_hash = v.content_hash AND m.status <> 'forgotten'
RETURNING m.memory_id
"""


async def memories_present(conn: Connection, keys: Sequence[MemoryKey]) -> set[UUID]:
    rows = await conn.fetch(
        """SELECT m.memory_id FROM memory.memories m
             JOIN unnest($1::text[], $2::uuid[]) AS k(tenant_id, memory_id)
               ON m.tenant_id = k.tenant_id AND m.memory_id = k.memory_id""",
        [k.tenant_id for k in keys],
        [k.memory_id for k in keys],
    )
    return {r[0] for r in rows}


async def set_vectors(conn: Connection, rows: Sequence[VectorUpdate]) -> set[UUID]:
    found = await conn.fetch(
        SET_VECTORS,
        [r.tenant_id for r in rows],
        [r.memory_id for r in rows],
        [r.content_hash for r in rows],
        [r.model_id for r in rows],
        [vector_text(r.vector) for r in rows],
    )
    return {r[0] for r in found}


async def ensure_model_index(conn: Connection, model_id: str, dimensions: int) -> None:
    await conn.execute("SELECT memory.ensure_model_index($1, $2)", model_id, dimensions)
