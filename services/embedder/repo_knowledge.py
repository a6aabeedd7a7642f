"""SQL of knowledge sources (sql/embedder/007_knowledge_sources.sql), inside the batch's
transaction: the sources' rows, the uploads a file source covers, their counts and
status; and the read of ``query.knowledge.sources``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.knowledge import KnowledgeSourceType, SourcePayload, SourceStatus
from services.embedder.knowledge_logic import StoredSource, status_of
from services.embedder.logic import Chunk
from services.runtime.db import Connection


async def lock_uploads(conn: Connection, tenant_id: str) -> None:
    """Taken by whoever matches uploads with file sources (a file source being registered
    or changed, a batch of uploads): one sees what the other committed, so an upload
    and a registration at the same moment are never both blind to each other."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('knowledge-uploads:' || $1, 0))",
        tenant_id,
    )


async def load_source(conn: Connection, tenant_id: str, source_id: UUID) -> StoredSource | None:
    r = await conn.fetchrow(
        """SELECT agent_id, type, configuration, changed_at, removed_at
             FROM embedder.knowledge_sources WHERE tenant_id = $1 AND source_id = $2""",
        tenant_id,
        source_id,
    )
    if r is None:
        return None
    return StoredSource(
        r["agent_id"],
        KnowledgeSourceType(r["type"]),
        dict(r["configuration"]),
        r["changed_at"],
        r["removed_at"] is not None,
    )


async def put_source(
    conn: Connection, tenant_id: str, p: SourcePayload, at: datetime, event_id: UUID
) -> None:
    """Insert or replace a source's description (status follows with ``refresh``)."""
    status, reason = status_of(p.type, 0)
    await conn.execute(
        """INSERT INTO embedder.knowledge_sources AS k (tenant_id, source_id, agent_id, type,
               name, configuration, status, status_reason, registered_at, changed_at, event_id)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $9, $10)
           ON CONFLICT (tenant_id, source_id) DO UPDATE SET
               agent_id = EXCLUDED.agent_id, type = EXCLUDED.type, name = EXCLUDED.name,
               configuration = EXCLUDED.configuration, changed_at = EXCLUDED.changed_at,
               event_id = EXCLUDED.event_id, updated_at = now()""",
        tenant_id,
        p.source_id,
        p.agent_id,
        p.type.value,
        p.name,
        p.configuration,
        status.value,
        reason,
        at,
        event_id,
    )


async def remove_source(
    conn: Connection, tenant_id: str, source_id: UUID, at: datetime, event_id: UUID
) -> int:
    """Tombstone the source; its documents' rows go, and with them (ON DELETE CASCADE)
    their chunks, vectors and queued work. Returns the documents removed."""
    await conn.execute(
        """UPDATE embedder.knowledge_sources SET removed_at = $3, event_id = $4,
               chunk_count = 0, document_count = 0, last_synced_at = $3, updated_at = now()
            WHERE tenant_id = $1 AND source_id = $2""",
        tenant_id,
        source_id,
        at,
        event_id,
    )
    done = await conn.execute(
        """DELETE FROM embedder.sources WHERE tenant_id = $1 AND source_type = 'document'
              AND knowledge_source_id = $2""",
        tenant_id,
        source_id,
    )
    return int(done.split()[-1])


async def move_documents(conn: Connection, tenant_id: str, source_id: UUID, agent_id: str) -> None:
    """A source given to another agent: its rows carry the new agent (the filter of a
    scoped search, copied onto chunks and vectors)."""
    chunks = """chunk_id IN (SELECT chunk_id FROM embedder.chunks
                  WHERE tenant_id = $1 AND knowledge_source_id = $3)"""
    for table, where in (
        ("sources", "knowledge_source_id = $3"),
        ("chunks", "knowledge_source_id = $3"),
        ("chunk_vectors", chunks),
    ):
        await conn.execute(
            f"UPDATE embedder.{table} SET agent_id = $2 WHERE tenant_id = $1 AND {where}",
            tenant_id,
            agent_id,
            source_id,
        )


async def drop_uncovered_uploads(
    conn: Connection,
    tenant_id: str,
    source_id: UUID,
    file_ids: list[UUID],
    conversations: list[UUID],
) -> None:
    """A file source's copies of uploads its new configuration no longer covers."""
    await conn.execute(
        """DELETE FROM embedder.sources d
            WHERE d.tenant_id = $1 AND d.source_type = 'document'
              AND d.knowledge_source_id = $2
              AND EXISTS (SELECT 1 FROM embedder.sources f
                           WHERE f.tenant_id = $1 AND f.source_type = 'file'
                             AND f.source_id::text = d.document_id)
              AND NOT (d.document_id = ANY ($3::text[])
                       OR coalesce(d.conversation_id = ANY ($4::uuid[]), false))""",
        tenant_id,
        source_id,
        [str(f) for f in file_ids],
        conversations,
    )


@dataclass(frozen=True)
class Upload:
    """A stored upload (a ``file`` source of the embedder) with its chunks."""

    file_id: UUID
    conversation_id: UUID | None
    source_at: datetime
    content_hash: str
    text_at: datetime
    event_id: UUID
    chunks: list[Chunk]


async def uploads(
    conn: Connection, tenant_id: str, file_ids: list[UUID], conversations: list[UUID]
) -> list[Upload]:
    """The live, indexed uploads with these ids or in these conversations."""
    rows = await conn.fetch(
        """SELECT s.source_id, s.conversation_id, s.source_at, s.content_hash, s.text_at,
                  s.event_id, c.chunk_index, c.text, c.tokens
             FROM embedder.sources s
             JOIN embedder.chunks c ON c.tenant_id = s.tenant_id
                  AND c.source_type = s.source_type AND c.source_id = s.source_id
            WHERE s.tenant_id = $1 AND s.source_type = 'file' AND s.deleted_at IS NULL
              AND s.indexed
              AND (s.source_id = ANY ($2::uuid[]) OR s.conversation_id = ANY ($3::uuid[]))
            ORDER BY s.source_id, c.chunk_index""",
        tenant_id,
        file_ids,
        conversations,
    )
    found: dict[UUID, Upload] = {}
    for r in rows:
        up = found.get(r["source_id"])
        if up is None:
            up = found[r["source_id"]] = Upload(
                r["source_id"],
                r["conversation_id"],
                r["source_at"],
                r["content_hash"],
                r["text_at"],
                r["event_id"],
                [],
            )
        up.chunks.append(Chunk(r["chunk_index"], r["text"], 0, len(r["text"]), r["tokens"]))
    return list(found.values())


@dataclass(frozen=True)
class FileSource:
    source_id: UUID
    agent_id: str
    configuration: dict[str, Any]


async def file_sources(conn: Connection, tenant_id: str) -> list[FileSource]:
    """The tenant's live file sources (an upload is matched against each)."""
    rows = await conn.fetch(
        """SELECT source_id, agent_id, configuration FROM embedder.knowledge_sources
            WHERE tenant_id = $1 AND type = 'file' AND removed_at IS NULL""",
        tenant_id,
    )
    return [FileSource(r[0], r[1], dict(r[2])) for r in rows]


async def refresh(conn: Connection, tenant_id: str, source_ids: Sequence[UUID]) -> None:
    """Counts, status and last_synced_at of these live sources, from their rows now."""
    rows = await conn.fetch(
        """SELECT k.source_id, k.type,
                  (SELECT count(*) FROM embedder.sources s
                    WHERE s.tenant_id = k.tenant_id AND s.source_type = 'document'
                      AND s.knowledge_source_id = k.source_id AND s.indexed) AS documents,
                  (SELECT count(*) FROM embedder.chunks c
                    WHERE c.tenant_id = k.tenant_id
                      AND c.knowledge_source_id = k.source_id) AS chunks
             FROM embedder.knowledge_sources k
            WHERE k.tenant_id = $1 AND k.source_id = ANY ($2::uuid[]) AND k.removed_at IS NULL""",
        tenant_id,
        list(source_ids),
    )
    for r in rows:
        status, reason = status_of(KnowledgeSourceType(r["type"]), r["documents"])
        await conn.execute(
            """UPDATE embedder.knowledge_sources SET status = $3, status_reason = $4,
                   document_count = $5, chunk_count = $6, last_synced_at = now(),
                   updated_at = now()
                WHERE tenant_id = $1 AND source_id = $2""",
            tenant_id,
            r["source_id"],
            status.value,
            reason,
            r["documents"],
            r["chunks"],
        )


@dataclass(frozen=True)
class SourceRow:
    source_id: UUID
    agent_id: str
    type: KnowledgeSourceType
    name: str | None
    configuration: dict[str, Any]
    status: SourceStatus
    status_reason: str | None
    documents: int
    chunks: int
    waiting: int
    registered_at: datetime
    last_synced_at: datetime | None


async def list_sources(conn: Connection, tenant_id: str, agent_id: str) -> list[SourceRow]:
    """An agent's live sources, oldest registration first, with their chunks waiting for
    a vector (in a transaction scoped to the tenant)."""
    rows = await conn.fetch(
        """SELECT k.source_id, k.agent_id, k.type, k.name, k.configuration, k.status,
                  k.status_reason, k.document_count, k.chunk_count,
                  (SELECT count(*) FROM embedder.chunks c
                     JOIN embedder.embed_queue q ON q.chunk_id = c.chunk_id
                    WHERE c.tenant_id = k.tenant_id AND c.knowledge_source_id = k.source_id),
                  k.registered_at, k.last_synced_at
             FROM embedder.knowledge_sources k
            WHERE k.tenant_id = $1 AND k.agent_id = $2 AND k.removed_at IS NULL
            ORDER BY k.registered_at, k.source_id""",
        tenant_id,
        agent_id,
    )
    return [
        SourceRow(
            r[0],
            r[1],
            KnowledgeSourceType(r[2]),
            r[3],
            dict(r[4]),
            SourceStatus(r[5]),
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
            r[11],
        )
        for r in rows
    ]
