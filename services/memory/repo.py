"""SQL of the event handlers: memories written, forgotten, given vectors; session notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from services.runtime.db import Connection

MEMORY_COLUMNS = (
    "tenant_id", "memory_id", "agent_id", "user_id", "conversation_id", "memory_type", "text",
    "content", "content_hash", "tokens", "importance", "decay_rate", "expires_at",
    "source_message_id", "origin", "written_at",
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


async def upsert_memories(
    conn: Connection, rows: Sequence[dict[str, Any]]
) -> set[tuple[str, UUID]]:
    """Insert or replace; returns the keys written (not those older or forgotten)."""
    columns = [[row[c] for row in rows] for c in MEMORY_COLUMNS]
    return {(r[0], r[1]) for r in await conn.fetch(UPSERT_MEMORIES, *columns)}


async def replace_links(
    conn: Connection, tenant_id: str, memory_id: UUID,
    links: Sequence[tuple[UUID, str, float | None]],
) -> None:
    await conn.execute(
        "DELETE FROM memory.memory_links WHERE tenant_id = $1 AND memory_id = $2",
        tenant_id, memory_id,
    )
    if links:
        await add_links(conn, tenant_id, [(memory_id, t, r, w) for t, r, w in links])


Link = tuple[UUID, UUID, str, float | None]  # (memory, target, relation, weight)


async def add_links(conn: Connection, tenant_id: str, links: Sequence[Link]) -> None:
    await conn.execute(
        """INSERT INTO memory.memory_links (tenant_id, memory_id, target_id, relation, weight)
           SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::real[])
           ON CONFLICT DO NOTHING""",
        tenant_id, [x[0] for x in links], [x[1] for x in links], [x[2] for x in links],
        [x[3] for x in links],
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
        FORGET, tenant_id, list(ids) if ids is not None else None, agent_id, user_id,
        conversation_id, at, by, reason,
    )
    return [r[0] for r in rows]


async def tombstones(
    conn: Connection, tenant_id: str, ids: Sequence[UUID], *, at: datetime, by: str,
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
        tenant_id, list(ids), at, by, reason,
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


async def memories_present(conn: Connection, keys: Sequence[tuple[str, UUID]]) -> set[UUID]:
    rows = await conn.fetch(
        """SELECT m.memory_id FROM memory.memories m
             JOIN unnest($1::text[], $2::uuid[]) AS k(tenant_id, memory_id)
               ON m.tenant_id = k.tenant_id AND m.memory_id = k.memory_id""",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    return {r[0] for r in rows}


async def set_vectors(
    conn: Connection, rows: Sequence[tuple[str, UUID, bytes, str, np.ndarray]]
) -> set[UUID]:
    found = await conn.fetch(SET_VECTORS, *[[r[i] for r in rows] for i in range(4)],
                             [vector_text(r[4]) for r in rows])
    return {r[0] for r in found}


async def ensure_model_index(conn: Connection, model_id: str, dimensions: int) -> None:
    await conn.execute("SELECT memory.ensure_model_index($1, $2)", model_id, dimensions)


# --- sessions ------------------------------------------------------------------------


async def add_notes(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """(tenant, message, conversation, session, role, text, occurred at) rows."""
    if rows:
        await conn.execute(
            """INSERT INTO memory.session_notes (tenant_id, message_id, conversation_id,
                   session_id, role, text, occurred_at)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[],
                                    $5::text[], $6::text[], $7::timestamptz[])
               ON CONFLICT DO NOTHING""",
            *[[r[i] for r in rows] for i in range(7)],
        )


async def edit_note(conn: Connection, tenant_id: str, message_id: UUID, text: str) -> None:
    await conn.execute(
        "UPDATE memory.session_notes SET text = $3 WHERE tenant_id = $1 AND message_id = $2",
        tenant_id, message_id, text,
    )


async def delete_note(conn: Connection, tenant_id: str, message_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM memory.session_notes WHERE tenant_id = $1 AND message_id = $2",
        tenant_id, message_id,
    )


async def session_started(conn: Connection, tenant_id: str, row: tuple[Any, ...]) -> None:
    await conn.execute(
        """INSERT INTO memory.sessions (tenant_id, session_id, conversation_id, agent_id,
               user_id, started_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, session_id) DO UPDATE SET started_at = EXCLUDED.started_at,
               agent_id = coalesce(EXCLUDED.agent_id, memory.sessions.agent_id),
               user_id = coalesce(EXCLUDED.user_id, memory.sessions.user_id)""",
        tenant_id, *row,
    )


async def take_session(
    conn: Connection, tenant_id: str, session_id: UUID, conversation_id: UUID, ended_at: datetime
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The session's start (if seen) and its notes, which are deleted: a session is
    summarized once. Notes without a session id count when they fall in its window."""
    session = await conn.fetchrow(
        "DELETE FROM memory.sessions WHERE tenant_id = $1 AND session_id = $2 RETURNING *",
        tenant_id, session_id,
    )
    started = session["started_at"] if session else None
    notes = await conn.fetch(
        """DELETE FROM memory.session_notes
            WHERE tenant_id = $1 AND conversation_id = $3
              AND (session_id = $2 OR (session_id IS NULL
                   AND occurred_at >= coalesce($4::timestamptz, '-infinity')
                   AND occurred_at <= $5))
           RETURNING role, text, occurred_at""",
        tenant_id, session_id, conversation_id, started, ended_at,
    )
    ordered = sorted((dict(n) for n in notes), key=lambda n: n["occurred_at"])
    return (dict(session) if session else None), ordered


async def forget_notes(conn: Connection, tenant_id: str, conversation_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM memory.session_notes WHERE tenant_id = $1 AND conversation_id = $2",
        tenant_id, conversation_id,
    )


async def prune_notes(conn: Connection, older_than_days: float) -> int:
    status = await conn.execute(
        """DELETE FROM memory.session_notes
            WHERE occurred_at < now() - make_interval(secs => $1)""",
        older_than_days * 86_400,
    )
    return int(status.split()[-1])
