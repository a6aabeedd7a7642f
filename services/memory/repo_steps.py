"""SQL of the consolidation steps: the active memories they read, the memories they
derive, supersede, expire and decay. (The job queue and progress: ``repo_jobs``.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import numpy as np
from numpy.typing import NDArray

from services.memory.repo import vector_text
from services.memory.rows import Expiring, MemoryRow, Supersession, WorkingMemory
from services.runtime.db import Connection

LOAD_ACTIVE = """
SELECT memory_id, memory_type, user_id, conversation_id, text, content, tokens, importance,
       decay_rate, access_count, last_accessed_at, decayed_at, expires_at, source_message_id,
       origin, written_at, model_id, content_hash, embedding
  FROM memory.memories
 WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND memory_type = $3
   AND embedding IS NOT NULL
 ORDER BY memory_id
"""


async def load_active(
    conn: Connection, tenant_id: str, agent_id: str, memory_type: str
) -> list[MemoryRow]:
    rows = await conn.fetch(LOAD_ACTIVE, tenant_id, agent_id, memory_type)
    return [MemoryRow(**{**dict(r), "embedding": as_array(r["embedding"])}) for r in rows]


def as_array(vector: object) -> NDArray[np.float32]:
    """pgvector's codec gives a ``Vector``; its buffer is already float32."""
    to_numpy = getattr(vector, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else vector, dtype=np.float32)


async def abstracted_ids(conn: Connection, tenant_id: str, agent_id: str) -> set[UUID]:
    """Episodes an active abstraction was already derived from."""
    rows = await conn.fetch(
        """SELECT l.target_id FROM memory.memory_links l
             JOIN memory.memories m ON m.tenant_id = l.tenant_id AND m.memory_id = l.memory_id
            WHERE l.tenant_id = $1 AND m.agent_id = $2 AND m.origin = 'abstract'
              AND m.status = 'active' AND l.relation = 'derived_from'""",
        tenant_id,
        agent_id,
    )
    return {r[0] for r in rows}


INSERT_DERIVED = """
INSERT INTO memory.memories (tenant_id, memory_id, agent_id, user_id, conversation_id,
    memory_type, text, content, content_hash, tokens, importance, decay_rate, access_count,
    last_accessed_at, decayed_at, expires_at, source_message_id, origin, written_at,
    model_id, embedding)
SELECT $1, memory_id, $2, user_id, conversation_id, memory_type, text, content, content_hash,
       tokens, importance, decay_rate, access_count, last_accessed_at, decayed_at, expires_at,
       source_message_id, origin, written_at, model_id, embedding::vector
  FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[],
    $8::jsonb[], $9::bytea[], $10::int[], $11::real[], $12::real[], $13::int[],
    $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::uuid[], $18::text[],
    $19::timestamptz[], $20::text[], $21::text[])
    AS d(memory_id, user_id, conversation_id, memory_type, text, content, content_hash,
         tokens, importance, decay_rate, access_count, last_accessed_at, decayed_at,
         expires_at, source_message_id, origin, written_at, model_id, embedding)
ON CONFLICT (tenant_id, memory_id) DO NOTHING
"""
DERIVED_COLUMNS = (
    "memory_id",
    "user_id",
    "conversation_id",
    "memory_type",
    "text",
    "content",
    "content_hash",
    "tokens",
    "importance",
    "decay_rate",
    "access_count",
    "last_accessed_at",
    "decayed_at",
    "expires_at",
    "source_message_id",
    "origin",
    "written_at",
    "model_id",
    "embedding",
)


async def insert_derived(
    conn: Connection, tenant_id: str, agent_id: str, rows: Sequence[MemoryRow]
) -> None:
    if rows:
        columns = [
            [vector_text(row.embedding) if c == "embedding" else getattr(row, c) for row in rows]
            for c in DERIVED_COLUMNS
        ]
        await conn.execute(INSERT_DERIVED, tenant_id, agent_id, *columns)


async def supersede(conn: Connection, tenant_id: str, pairs: Sequence[Supersession]) -> None:
    """(source, successor): the source stays, marked superseded, never deleted."""
    if pairs:
        await conn.execute(
            """UPDATE memory.memories m SET status = 'superseded', superseded_by = p.successor,
                   updated_at = now()
                 FROM unnest($2::uuid[], $3::uuid[]) AS p(source, successor)
                WHERE m.tenant_id = $1 AND m.memory_id = p.source AND m.status = 'active'""",
            tenant_id,
            [p.source_id for p in pairs],
            [p.successor_id for p in pairs],
        )


async def expiry_candidates(
    conn: Connection, tenant_id: str, agent_id: str, clock: datetime
) -> tuple[list[Expiring], list[WorkingMemory]]:
    """(past expires_at, every active working memory with its last use)."""
    past = await conn.fetch(
        """SELECT memory_id, tokens FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'
              AND expires_at <= $3""",
        tenant_id,
        agent_id,
        clock,
    )
    working = await conn.fetch(
        """SELECT memory_id, tokens, coalesce(last_accessed_at, written_at) AS last_used
             FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'
              AND memory_type = 'working'""",
        tenant_id,
        agent_id,
    )
    return (
        [Expiring(r["memory_id"], r["tokens"]) for r in past],
        [WorkingMemory(r["memory_id"], r["tokens"], r["last_used"]) for r in working],
    )


# Importance at the job's clock, from the later of the last decay and the last access
# (logic.decayed is the same formula); never decays backwards in time.
DECAY = """
UPDATE memory.memories
   SET importance = importance * power(
           1 - decay_rate / (1 + ln(1 + access_count)),
           greatest(0, extract(epoch FROM $3 - greatest(decayed_at,
               coalesce(last_accessed_at, decayed_at))) / 86400.0)),
       decayed_at = $3
 WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND decayed_at < $3
"""


async def decay(conn: Connection, tenant_id: str, agent_id: str, clock: datetime) -> int:
    status = await conn.execute(DECAY, tenant_id, agent_id, clock)
    return int(status.split()[-1])


async def count_decay(conn: Connection, tenant_id: str, agent_id: str, clock: datetime) -> int:
    n: int = await conn.fetchval(
        """SELECT count(*) FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND decayed_at < $3""",
        tenant_id,
        agent_id,
        clock,
    )
    return n
