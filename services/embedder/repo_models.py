"""SQL about models (which is active, registering, switching, re-embedding) and the
memory outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
from pgvector import Vector

from services.runtime.db import Connection


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    source: str
    dimensions: int
    max_tokens: int
    state: str


async def active_model(conn: Connection) -> ModelRow | None:
    row = await conn.fetchrow(
        "SELECT model_id, source, dimensions, max_tokens, state FROM embedder.models "
        "WHERE state = 'active'"
    )
    return ModelRow(*row) if row else None


async def get_model(conn: Connection, model_id: str) -> ModelRow | None:
    row = await conn.fetchrow(
        "SELECT model_id, source, dimensions, max_tokens, state FROM embedder.models "
        "WHERE model_id = $1",
        model_id,
    )
    return ModelRow(*row) if row else None


async def register_model(
    conn: Connection,
    model_id: str,
    source: str,
    dimensions: int,
    max_tokens: int,
    *,
    activate_if_none: bool,
) -> str:
    """Record the model and build its HNSW index (a SECURITY DEFINER function: the
    service role may not create indexes itself). Returns its state."""
    state: str = await conn.fetchval(
        "SELECT embedder.register_model($1, $2, $3, $4, $5)",
        model_id,
        source,
        dimensions,
        max_tokens,
        activate_if_none,
    )
    return state


# --- the memory outbox ---------------------------------------------------------------


@dataclass(frozen=True)
class ReadyMemory:
    memory_id: UUID
    model_id: str
    content_hash: str
    tenant_id: str
    causation_id: UUID | None
    vector: np.ndarray | None  # None: the memory changed or went away since; drop it
    chunks: int


async def take_outbox(conn: Connection, limit: int) -> list[ReadyMemory]:
    """Lock up to ``limit`` outbox rows (other replicas skip them) with each memory's
    vector: the mean of its chunks' vectors for the row's model."""
    rows = await conn.fetch(
        """WITH o AS (
               SELECT * FROM embedder.memory_outbox ORDER BY created_at LIMIT $1
                  FOR UPDATE SKIP LOCKED)
           SELECT o.memory_id, o.model_id, o.content_hash, o.tenant_id, o.causation_id,
                  (SELECT avg(v.embedding)
                     FROM embedder.chunks c
                     JOIN embedder.chunk_vectors v
                       ON v.chunk_id = c.chunk_id AND v.model_id = o.model_id
                    WHERE s.source_id IS NOT NULL AND c.source_type = 'memory'
                      AND c.source_id = o.memory_id) AS vector,
                  (SELECT count(*) FROM embedder.chunks c
                    WHERE c.source_type = 'memory' AND c.source_id = o.memory_id) AS chunks
             FROM o
             LEFT JOIN embedder.sources s
               ON s.source_type = 'memory' AND s.source_id = o.memory_id
              AND s.content_hash = o.content_hash AND s.deleted_at IS NULL""",
        limit,
    )
    return [
        ReadyMemory(
            r["memory_id"],
            r["model_id"],
            r["content_hash"],
            r["tenant_id"],
            r["causation_id"],
            r["vector"].to_numpy() if r["vector"] is not None else None,
            max(1, int(r["chunks"])),
        )
        for r in rows
    ]


async def delete_outbox(conn: Connection, rows: Sequence[ReadyMemory]) -> None:
    await conn.execute(
        """DELETE FROM embedder.memory_outbox o
            USING unnest($1::uuid[], $2::text[], $3::text[]) AS k(id, model, hash)
            WHERE o.memory_id = k.id AND o.model_id = k.model AND o.content_hash = k.hash""",
        [r.memory_id for r in rows],
        [r.model_id for r in rows],
        [r.content_hash for r in rows],
    )


# --- re-embedding --------------------------------------------------------------------


async def reembed_progress(conn: Connection, model_id: str) -> tuple[int, int]:
    """(chunks, chunks with a vector of ``model_id``)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM embedder.chunks),
                  (SELECT count(*) FROM embedder.chunk_vectors WHERE model_id = $1)""",
        model_id,
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def missing_page(
    conn: Connection, model_id: str, after: int, limit: int
) -> list[tuple[int, str, str, str]]:
    """Chunks after ``after`` with no vector of ``model_id``: (id, tenant, hash, text)."""
    rows = await conn.fetch(
        """SELECT c.chunk_id, c.tenant_id, c.content_hash, c.text FROM embedder.chunks c
            WHERE c.chunk_id > $2
              AND NOT EXISTS (SELECT 1 FROM embedder.chunk_vectors v
                               WHERE v.model_id = $1 AND v.chunk_id = c.chunk_id)
            ORDER BY c.chunk_id LIMIT $3""",
        model_id,
        after,
        limit,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def insert_vectors(
    conn: Connection, model_id: str, chunk_ids: Sequence[int], vectors: Sequence[Any]
) -> None:
    """Vectors of chunks that still exist (a chunk replaced meanwhile is skipped)."""
    await conn.execute(
        """INSERT INTO embedder.chunk_vectors (model_id, chunk_id, tenant_id, source_type,
               conversation_id, agent_id, source_at, embedding)
           SELECT $1, c.chunk_id, c.tenant_id, c.source_type, c.conversation_id, c.agent_id,
                  c.source_at, v.embedding
             FROM unnest($2::bigint[], $3::vector[]) AS v(chunk_id, embedding)
             JOIN embedder.chunks c USING (chunk_id)
           ON CONFLICT (model_id, chunk_id) DO NOTHING""",
        model_id,
        list(chunk_ids),
        [v if isinstance(v, Vector) else Vector(v) for v in vectors],
    )


async def switch_model(conn: Connection, model_id: str) -> str | None:
    """Make ``model_id`` the active model (in the caller's transaction); returns the model
    it replaces. Memories get an engram.embedding.ready with the new model's vector."""
    old = await conn.fetchval(
        "SELECT model_id FROM embedder.models WHERE state = 'active' FOR UPDATE"
    )
    await conn.execute(
        "UPDATE embedder.models SET state = 'retired', retired_at = now() WHERE state = 'active'"
    )
    await conn.execute(
        "UPDATE embedder.models SET state = 'active', activated_at = now() WHERE model_id = $1",
        model_id,
    )
    await conn.execute(
        """INSERT INTO embedder.memory_outbox (memory_id, model_id, content_hash, tenant_id,
               causation_id)
           SELECT source_id, $1, content_hash, tenant_id, event_id FROM embedder.sources
            WHERE source_type = 'memory' AND deleted_at IS NULL AND indexed
           ON CONFLICT DO NOTHING""",
        model_id,
    )
    return str(old) if old is not None else None


async def delete_model_vectors(conn: Connection, model_id: str, limit: int) -> int:
    status = await conn.execute(
        """DELETE FROM embedder.chunk_vectors WHERE model_id = $1 AND chunk_id IN (
               SELECT chunk_id FROM embedder.chunk_vectors WHERE model_id = $1 LIMIT $2)""",
        model_id,
        limit,
    )
    return int(status.split()[-1])


async def retired_at(conn: Connection, model_id: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT retired_at FROM embedder.models WHERE model_id = $1", model_id
    )
    return value
