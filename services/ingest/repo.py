"""SQL of the ingest service: conversations, sessions, files and the batch's locks.
Every function runs inside the batch's transaction. Messages are in ``messages.py``.

Ids chosen by producers are per tenant: every key, conflict target and look-up names the
tenant with the id (sql/ingest/005), so the same id in two tenants is two rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.chat import (
    ConversationArchived,
    ConversationCreated,
    ConversationUpdated,
    FileUploaded,
    SessionEnded,
    SessionStarted,
)
from services.runtime.db import Connection

LOCK_CLASS = 0x696E6763  # "ingc": the first int of ingest's two-int advisory locks


async def lock_batch(conn: Connection, locks: Sequence[tuple[int, bool]]) -> None:
    """Takes the batch's advisory locks (logic.batch_locks), in the order given."""
    if locks:
        keys, exclusive = zip(*locks, strict=True)
        await conn.execute(
            """SELECT CASE WHEN x THEN pg_advisory_xact_lock($3, k)
                           ELSE pg_advisory_xact_lock_shared($3, k) END
                 FROM unnest($1::int[], $2::bool[]) AS t(k, x)""",
            list(keys),
            list(exclusive),
            LOCK_CLASS,
        )


async def ensure_conversations(conn: Connection, refs: Sequence[tuple[Any, ...]]) -> None:
    """Placeholder rows for the conversations the run names that have not arrived yet (in
    the event's own tenant: ids are per tenant), inserted in key order like every row two
    batches in flight may both insert."""
    if not refs:
        return
    ids, tenants, times = zip(*refs, strict=True)
    await conn.execute(
        """INSERT INTO ingest.conversations
               (conversation_id, tenant_id, is_placeholder, created_at)
           SELECT DISTINCT ON (tenant, id) id, tenant, true, at
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS r(id, tenant, at)
            ORDER BY tenant, id, at
           ON CONFLICT (tenant_id, conversation_id) DO NOTHING""",
        list(ids),
        list(tenants),
        list(times),
    )


async def create_conversations(conn: Connection, events: Sequence[ConversationCreated]) -> None:
    # Fields an earlier-applied update already set win (coalesce keeps them).
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c
               (conversation_id, tenant_id, title, user_id, agent_id, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
               title = coalesce(c.title, EXCLUDED.title),
               user_id = coalesce(c.user_id, EXCLUDED.user_id),
               agent_id = coalesce(c.agent_id, EXCLUDED.agent_id),
               metadata = EXCLUDED.metadata || c.metadata,
               created_at = least(c.created_at, EXCLUDED.created_at),
               is_placeholder = false""",
        [
            (
                p.conversation_id,
                e.tenant_id,
                p.title,
                p.user_id,
                p.agent_id,
                p.metadata,
                e.occurred_at,
            )
            for e in events
            for p in (e.payload,)
        ],
    )


async def update_conversations(conn: Connection, events: Sequence[ConversationUpdated]) -> None:
    # Last writer by occurred_at wins; a late, older update only fills what is missing.
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c (conversation_id, tenant_id, title, metadata,
               is_placeholder, created_at, source_updated_at)
           VALUES ($1, $2, $3, coalesce($4::jsonb, '{}'), true, $5, $5)
           ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
               title = CASE WHEN EXCLUDED.source_updated_at >= c.source_updated_at
                            THEN coalesce($3, c.title) ELSE coalesce(c.title, $3) END,
               metadata = CASE WHEN EXCLUDED.source_updated_at >= c.source_updated_at
                               THEN c.metadata || coalesce($4::jsonb, '{}')
                               ELSE coalesce($4::jsonb, '{}') || c.metadata END,
               source_updated_at = greatest(c.source_updated_at, EXCLUDED.source_updated_at)""",
        [
            (
                e.payload.conversation_id,
                e.tenant_id,
                e.payload.title,
                e.payload.metadata,
                e.occurred_at,
            )
            for e in events
        ],
    )


async def archive_conversations(conn: Connection, events: Sequence[ConversationArchived]) -> None:
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c (conversation_id, tenant_id, status,
               is_placeholder, created_at, archived_at, archived_by)
           VALUES ($1, $2, 'archived', true, $3, $3, $4)
           ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
               status = 'archived',
               archived_at = coalesce(c.archived_at, EXCLUDED.archived_at),
               archived_by = coalesce(c.archived_by, EXCLUDED.archived_by)""",
        [
            (e.payload.conversation_id, e.tenant_id, e.occurred_at, e.payload.archived_by)
            for e in events
        ],
    )


async def store_files(conn: Connection, events: Sequence[FileUploaded]) -> None:
    await conn.executemany(
        """INSERT INTO ingest.files (file_id, tenant_id, conversation_id, uploaded_by, filename,
               mime_type, size_bytes, sha256, storage_uri, extracted_text, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (tenant_id, file_id) DO NOTHING""",
        [
            (
                p.file_id,
                e.tenant_id,
                p.conversation_id,
                p.uploaded_by,
                p.filename,
                p.mime_type,
                p.size_bytes,
                p.sha256,
                p.storage_uri,
                p.extracted_text,
                p.metadata,
                e.occurred_at,
            )
            for e in events
            for p in (e.payload,)
        ],
    )
    links = [
        (e.payload.message_id, e.payload.file_id, e.tenant_id)
        for e in events
        if e.payload.message_id is not None
    ]
    if links:  # composite foreign keys keep a link inside one tenant
        await conn.executemany(
            """INSERT INTO ingest.message_files (message_id, file_id, tenant_id)
               VALUES ($1, $2, $3) ON CONFLICT (tenant_id, message_id, file_id) DO NOTHING""",
            links,
        )


async def start_sessions(conn: Connection, events: Sequence[SessionStarted]) -> None:
    await conn.executemany(
        """INSERT INTO ingest.conversation_sessions AS s (session_id, tenant_id, conversation_id,
               user_id, agent_id, started_at, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, session_id) DO UPDATE SET
               started_at = coalesce(s.started_at, EXCLUDED.started_at),
               user_id = coalesce(s.user_id, EXCLUDED.user_id),
               agent_id = coalesce(s.agent_id, EXCLUDED.agent_id),
               metadata = EXCLUDED.metadata || s.metadata""",
        [
            (
                p.session_id,
                e.tenant_id,
                p.conversation_id,
                p.user_id,
                p.agent_id,
                e.occurred_at,
                p.metadata,
            )
            for e in events
            for p in (e.payload,)
        ],
    )


async def end_sessions(conn: Connection, events: Sequence[SessionEnded]) -> None:
    await conn.executemany(
        """INSERT INTO ingest.conversation_sessions AS s (session_id, tenant_id, conversation_id,
               user_id, agent_id, status, ended_at, end_reason)
           VALUES ($1, $2, $3, $4, $5, 'ended', $6, $7)
           ON CONFLICT (tenant_id, session_id) DO UPDATE SET
               status = 'ended',
               ended_at = coalesce(s.ended_at, EXCLUDED.ended_at),
               end_reason = coalesce(s.end_reason, EXCLUDED.end_reason),
               user_id = coalesce(s.user_id, EXCLUDED.user_id),
               agent_id = coalesce(s.agent_id, EXCLUDED.agent_id)""",
        [
            (
                p.session_id,
                e.tenant_id,
                p.conversation_id,
                p.user_id,
                p.agent_id,
                e.occurred_at,
                p.reason,
            )
            for e in events
            for p in (e.payload,)
        ],
    )
