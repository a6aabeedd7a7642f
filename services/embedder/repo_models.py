"""SQL about models: which is active, registering, switching, re-embedding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    it replaces."""
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
    return str(old) if old is not None else None


async def delete_model_vectors(conn: Connection, model_id: str, limit: int) -> int:
    status = await conn.execute(
        """DELETE FROM embedder.chunk_vectors WHERE model_id = $1 AND chunk_id IN (
               SELECT chunk_id FROM embedder.chunk_vectors WHERE model_id = $1 LIMIT $2)""",
        model_id,
        limit,
    )
    return int(status.split()[-1])
