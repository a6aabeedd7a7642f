"""SQL of the embedder's write side: sources and chunks (inside the batch's transaction),
the embedding queue, vectors, and the memories whose vectors are complete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from contracts.embedding import SourceType
from services.embedder.logic import Chunk
from services.embedder.plan import SourceKey, SourceState, SourceWrite
from services.runtime.db import Connection

NOTIFY_CHANNEL = "embedder_queue"  # chunks were queued for embedding

# A source is (tenant, type, id): ids are chosen by producers, so two tenants may share one.
KEYS = "unnest($1::text[], $2::text[], $3::uuid[]) AS k(tenant_id, source_type, source_id)"
LOCK_SOURCES = f"""
SELECT pg_advisory_xact_lock(
           hashtextextended(k.tenant_id || ':' || k.source_type || ':' || k.source_id::text, 0))
  FROM (SELECT DISTINCT * FROM {KEYS} ORDER BY 1, 2, 3) k"""
LOAD_SOURCES = f"""
SELECT s.* FROM embedder.sources s
  JOIN {KEYS} USING (tenant_id, source_type, source_id)"""
CHUNKS_OF_SOURCES = f"""
SELECT c.chunk_id FROM embedder.chunks c
  JOIN {KEYS} USING (tenant_id, source_type, source_id)"""


async def load_states(conn: Connection, keys: Sequence[SourceKey]) -> dict[SourceKey, SourceState]:
    """The stored state of each source, locked until the transaction ends: two replicas
    writing one source take turns (an advisory lock per source, taken in a fixed order,
    also covers a source not stored yet)."""
    tenants, types, ids = _columns(keys)
    await conn.execute(LOCK_SOURCES, tenants, types, ids)
    rows = await conn.fetch(LOAD_SOURCES, tenants, types, ids)
    return {
        SourceKey(r["tenant_id"], SourceType(r["source_type"]), r["source_id"]): SourceState(
            conversation_id=r["conversation_id"],
            agent_id=r["agent_id"],
            source_at=r["source_at"],
            content_hash=r["content_hash"],
            text_at=r["text_at"],
            indexed=r["indexed"],
            deleted=r["deleted_at"] is not None,
            event_id=r["event_id"],
            knowledge_source_id=r["knowledge_source_id"],
            document_id=r["document_id"],
        )
        for r in rows
    }


def _columns(keys: Sequence[SourceKey]) -> tuple[list[str], list[str], list[UUID]]:
    return (
        [k.tenant_id for k in keys],
        [k.source_type.value for k in keys],
        [k.source_id for k in keys],
    )


async def save_sources(conn: Connection, writes: Sequence[SourceWrite]) -> None:
    cols: list[list[Any]] = [[] for _ in range(13)]
    for w in writes:
        s = w.state
        row = (
            w.key.source_type.value,
            w.key.source_id,
            w.key.tenant_id,
            s.conversation_id,
            s.agent_id,
            s.source_at,
            s.content_hash,
            s.text_at,
            s.indexed,
            s.text_at if s.deleted else None,
            s.event_id,
            s.knowledge_source_id,
            s.document_id,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    await conn.execute(
        """INSERT INTO embedder.sources AS s (source_type, source_id, tenant_id,
               conversation_id, agent_id, source_at, content_hash, text_at, indexed,
               deleted_at, event_id, knowledge_source_id, document_id)
           SELECT t, id, tenant, conv, agent, at, hash, text_at, indexed, deleted, event, ks, doc
             FROM unnest($1::text[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::timestamptz[], $9::boolean[],
                         $10::timestamptz[], $11::uuid[], $12::uuid[], $13::text[])
                  AS r(t, id, tenant, conv, agent, at, hash, text_at, indexed, deleted, event,
                       ks, doc)
           ON CONFLICT (tenant_id, source_type, source_id) DO UPDATE SET
               conversation_id = EXCLUDED.conversation_id, agent_id = EXCLUDED.agent_id,
               content_hash = EXCLUDED.content_hash, text_at = EXCLUDED.text_at,
               indexed = EXCLUDED.indexed, deleted_at = EXCLUDED.deleted_at,
               event_id = EXCLUDED.event_id, updated_at = now()""",
        *cols,
    )


@dataclass(frozen=True)
class NewChunks:
    inserted: int
    reused: int  # got the vector of an equal text already embedded
    queued: int


async def replace_chunks(
    conn: Connection,
    writes: Sequence[SourceWrite],
    chunks: dict[SourceKey, list[Chunk]],
    model_id: str,
) -> NewChunks:
    """Replace the chunks of ``writes`` (rechunked sources) with ``chunks``. A new chunk
    whose text has a vector for ``model_id`` (this tenant) gets a copy; the others are
    queued for the embedding pump, which is notified at COMMIT."""
    old = await conn.fetch(CHUNKS_OF_SOURCES, *_columns([w.key for w in writes]))
    cols: list[list[Any]] = [[] for _ in range(12)]
    for w in writes:
        s = w.state
        for chunk in chunks.get(w.key, []):
            row = (
                w.key.tenant_id,
                w.key.source_type.value,
                w.key.source_id,
                s.conversation_id,
                s.agent_id,
                s.source_at,
                chunk.index,
                chunk.text,
                chunk.digest,
                chunk.tokens,
                s.knowledge_source_id,
                s.document_id,
            )
            for col, value in zip(cols, row, strict=True):
                col.append(value)
    new_ids: list[int] = []
    if cols[0]:
        rows = await conn.fetch(
            """INSERT INTO embedder.chunks (tenant_id, source_type, source_id, conversation_id,
                   agent_id, source_at, chunk_index, text, content_hash, tokens,
                   knowledge_source_id, document_id)
               SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::text[],
                                    $6::timestamptz[], $7::int[], $8::text[], $9::text[],
                                    $10::int[], $11::uuid[], $12::text[])
               RETURNING chunk_id""",
            *cols,
        )
        new_ids = [r[0] for r in rows]
    reused = await copy_known_vectors(conn, new_ids, model_id) if new_ids else set()
    queued = [i for i in new_ids if i not in reused]
    if queued:
        await conn.execute(
            "INSERT INTO embedder.embed_queue (chunk_id) SELECT unnest($1::bigint[])", queued
        )
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    if old:
        await conn.execute(
            "DELETE FROM embedder.chunks WHERE chunk_id = ANY($1::bigint[])", [r[0] for r in old]
        )
    return NewChunks(len(new_ids), len(reused), len(queued))


async def copy_known_vectors(conn: Connection, chunk_ids: Sequence[int], model_id: str) -> set[int]:
    """Give each chunk the vector of an equal text of its tenant, if one exists."""
    rows = await conn.fetch(
        """INSERT INTO embedder.chunk_vectors (model_id, chunk_id, tenant_id, source_type,
               conversation_id, agent_id, source_at, embedding)
           SELECT $2, n.chunk_id, n.tenant_id, n.source_type, n.conversation_id, n.agent_id,
                  n.source_at, known.embedding
             FROM embedder.chunks n
             CROSS JOIN LATERAL (
                   SELECT v.embedding FROM embedder.chunks o
                     JOIN embedder.chunk_vectors v ON v.chunk_id = o.chunk_id
                    WHERE o.tenant_id = n.tenant_id AND o.content_hash = n.content_hash
                      AND v.model_id = $2 AND o.chunk_id <> n.chunk_id
                    LIMIT 1) known
            WHERE n.chunk_id = ANY($1::bigint[])
           ON CONFLICT (model_id, chunk_id) DO NOTHING
           RETURNING chunk_id""",
        list(chunk_ids),
        model_id,
    )
    return {r[0] for r in rows}


class MemoryKey(NamedTuple):
    """A memory of ``embedder.sources``: its id is chosen by producers, so per tenant."""

    tenant_id: str
    memory_id: UUID


@dataclass(frozen=True)
class ReadyMemory:
    """A memory whose every chunk has a vector of the model, with their mean."""

    memory_id: UUID
    content_hash: str
    tenant_id: str
    causation_id: UUID | None  # the event that set its text
    vector: list[float]  # the mean of its chunks' vectors (not normalized)
    chunks: int


READY_MEMORIES = """
SELECT s.source_id, s.content_hash, s.tenant_id, s.event_id,
       avg(v.embedding) AS vector, count(*) AS chunks
  FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::uuid[]) AS u(tenant_id, source_id)) k
  JOIN embedder.sources s
    ON s.tenant_id = k.tenant_id AND s.source_type = 'memory' AND s.source_id = k.source_id
  JOIN embedder.chunks c
    ON c.tenant_id = s.tenant_id AND c.source_type = 'memory' AND c.source_id = s.source_id
  LEFT JOIN embedder.chunk_vectors v ON v.chunk_id = c.chunk_id AND v.model_id = $3
 WHERE s.deleted_at IS NULL
 GROUP BY s.tenant_id, s.source_id, s.content_hash, s.event_id
HAVING count(v.chunk_id) = count(*)
 ORDER BY s.tenant_id, s.source_id"""


async def ready_memories(
    conn: Connection, memories: Sequence[MemoryKey], model_id: str
) -> list[ReadyMemory]:
    """Of ``memories``, those (not deleted) whose chunks all have a vector of
    ``model_id``. The chunks are those of the source's text now (a new text replaces them
    in the transaction that stores it), so the vector is always of its content hash."""
    rows = await conn.fetch(
        READY_MEMORIES,
        [m.tenant_id for m in memories],
        [m.memory_id for m in memories],
        model_id,
    )
    return [ReadyMemory(r[0], r[1], r[2], r[3], r[4].to_numpy().tolist(), int(r[5])) for r in rows]


async def indexed_memories(conn: Connection) -> list[MemoryKey]:
    """Every memory that is searchable now (announced again after a model switch)."""
    rows = await conn.fetch(
        """SELECT tenant_id, source_id FROM embedder.sources
            WHERE source_type = 'memory' AND deleted_at IS NULL AND indexed
            ORDER BY tenant_id, source_id"""
    )
    return [MemoryKey(r[0], r[1]) for r in rows]
