"""SQL of the ingest service. Every function runs inside the batch's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from contracts.chat import (
    ConversationArchived,
    ConversationCreated,
    ConversationUpdated,
    FileUploaded,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    SessionEnded,
    SessionStarted,
)
from services.ingest.logic import message_columns
from services.runtime.db import Connection


class TenantMismatch(ValueError):
    """An id the event names belongs to another tenant: never applied, dead-lettered."""


async def ensure_conversations(conn: Connection, refs: Sequence[tuple[Any, ...]]) -> None:
    """Placeholder rows for conversations named before their created event arrived."""
    if not refs:
        return
    ids, tenants, times = zip(*refs, strict=True)
    await conn.execute(
        """INSERT INTO ingest.conversations (conversation_id, tenant_id, is_placeholder, created_at)
           SELECT DISTINCT ON (id) id, tenant, true, at
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS r(id, tenant, at)
            ORDER BY id, at
           ON CONFLICT (conversation_id) DO NOTHING""",
        list(ids),
        list(tenants),
        list(times),
    )


async def check_tenants(
    conn: Connection, table: str, column: str, pairs: Sequence[tuple[UUID, str]]
) -> None:
    rows = await conn.fetch(
        f"""SELECT t.{column}, t.tenant_id, r.tenant
              FROM unnest($1::uuid[], $2::text[]) AS r(id, tenant)
              JOIN ingest.{table} t ON t.{column} = r.id
             WHERE t.tenant_id <> r.tenant""",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    if rows:
        row = rows[0]
        raise TenantMismatch(
            f"{column} {row[0]} belongs to another tenant than {row[2]!r}; not applied"
        )


async def create_conversations(conn: Connection, events: Sequence[ConversationCreated]) -> None:
    await check_tenants(
        conn,
        "conversations",
        "conversation_id",
        [(e.payload.conversation_id, e.tenant_id) for e in events],
    )
    # Fields an earlier-applied update already set win (coalesce keeps them).
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c
               (conversation_id, tenant_id, title, user_id, agent_id, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (conversation_id) DO UPDATE SET
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
    await check_tenants(
        conn,
        "conversations",
        "conversation_id",
        [(e.payload.conversation_id, e.tenant_id) for e in events],
    )
    # Last writer by occurred_at wins; a late, older update only fills what is missing.
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c (conversation_id, tenant_id, title, metadata,
               is_placeholder, created_at, source_updated_at)
           VALUES ($1, $2, $3, coalesce($4::jsonb, '{}'), true, $5, $5)
           ON CONFLICT (conversation_id) DO UPDATE SET
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
    await check_tenants(
        conn,
        "conversations",
        "conversation_id",
        [(e.payload.conversation_id, e.tenant_id) for e in events],
    )
    await conn.executemany(
        """INSERT INTO ingest.conversations AS c (conversation_id, tenant_id, status,
               is_placeholder, created_at, archived_at, archived_by)
           VALUES ($1, $2, 'archived', true, $3, $3, $4)
           ON CONFLICT (conversation_id) DO UPDATE SET
               status = 'archived',
               archived_at = coalesce(c.archived_at, EXCLUDED.archived_at),
               archived_by = coalesce(c.archived_by, EXCLUDED.archived_by)""",
        [
            (e.payload.conversation_id, e.tenant_id, e.occurred_at, e.payload.archived_by)
            for e in events
        ],
    )


INSERT_MESSAGES = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                         $6::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                         $11::int[], $12::text[], $13::text[], $14::text[], $15::timestamptz[])
        AS i(event_id, message_id, tenant_id, conversation_id, session_id, parent_message_id,
             role, content, content_type, metadata, tokens, model, sender_user_id,
             sender_agent_id, created_at)
), resolved AS (
    -- A message that names no session counts towards its conversation's active one.
    SELECT i.*, coalesce(i.session_id, (
        SELECT s.session_id FROM ingest.conversation_sessions s
         WHERE s.conversation_id = i.conversation_id AND s.status = 'active'
         ORDER BY s.started_at DESC NULLS LAST LIMIT 1)) AS sid
      FROM input i
), inserted AS (
    INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, session_id,
        parent_message_id, role, content, content_type, metadata, tokens, model,
        sender_user_id, sender_agent_id, created_at)
    SELECT message_id, tenant_id, conversation_id, sid, parent_message_id, role, content,
           content_type, metadata, tokens, model, sender_user_id, sender_agent_id, created_at
      FROM resolved
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, tenant_id, conversation_id, session_id, tokens, created_at
), versions AS (
    INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,
        content_type, event_id, created_at)
    SELECT r.message_id, 1, r.tenant_id, r.content, r.content_type, r.event_id, r.created_at
      FROM resolved r JOIN inserted USING (message_id)
), sessions AS (
    UPDATE ingest.conversation_sessions s
       SET message_count = s.message_count + n.count, total_tokens = s.total_tokens + n.tokens
      FROM (SELECT session_id, count(*) AS count, coalesce(sum(tokens), 0) AS tokens
              FROM inserted WHERE session_id IS NOT NULL GROUP BY session_id) n
     WHERE s.session_id = n.session_id
), conversations AS (
    UPDATE ingest.conversations c SET last_message_at = greatest(c.last_message_at, n.at)
      FROM (SELECT conversation_id, max(created_at) AS at FROM inserted
             GROUP BY conversation_id) n
     WHERE c.conversation_id = n.conversation_id
)
SELECT message_id FROM inserted
"""


async def create_messages(conn: Connection, events: Sequence[MessageCreated]) -> None:
    sessions = [
        (e.payload.session_id, e.tenant_id, e.payload.conversation_id)
        for e in events
        if e.payload.session_id is not None
    ]
    if sessions:
        await check_tenants(
            conn, "conversation_sessions", "session_id", [(s[0], s[1]) for s in sessions]
        )
        await conn.executemany(
            """INSERT INTO ingest.conversation_sessions (session_id, tenant_id, conversation_id)
               VALUES ($1, $2, $3) ON CONFLICT (session_id) DO NOTHING""",
            sessions,
        )
    inserted = await conn.fetch(INSERT_MESSAGES, *message_columns(events))
    if len(inserted) < len(events):  # duplicates by message_id, or another tenant's id
        await check_tenants(
            conn, "messages", "message_id", [(e.payload.message_id, e.tenant_id) for e in events]
        )


async def existing_messages(
    conn: Connection, events: Sequence[MessageEdited | MessageDeleted | FileUploaded]
) -> set[UUID]:
    pairs = [
        (e.payload.message_id, e.tenant_id) for e in events if e.payload.message_id is not None
    ]
    await check_tenants(conn, "messages", "message_id", pairs)
    rows = await conn.fetch(
        "SELECT message_id FROM ingest.messages WHERE message_id = ANY($1)", [p[0] for p in pairs]
    )
    return {row[0] for row in rows}


async def edit_messages(conn: Connection, events: Sequence[MessageEdited]) -> None:
    # executemany runs in order, so two edits of one message in a batch become two versions.
    await conn.executemany(
        """WITH m AS (
               UPDATE ingest.messages
                  SET content = $2, content_type = coalesce($3, content_type),
                      version = version + 1, edited_at = $6
                WHERE message_id = $1
            RETURNING message_id, version, tenant_id, content, content_type)
           INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,
               content_type, edited_by, reason, event_id, created_at)
           SELECT message_id, version, tenant_id, content, content_type, $4, $5, $7, $6 FROM m""",
        [
            (
                p.message_id,
                p.content,
                p.content_type.value if p.content_type else None,
                p.edited_by,
                p.reason,
                e.occurred_at,
                e.event_id,
            )
            for e in events
            for p in (e.payload,)
        ],
    )


async def delete_messages(conn: Connection, events: Sequence[MessageDeleted]) -> None:
    # Soft: the content and every version stay; the first delete is the one recorded.
    await conn.executemany(
        """UPDATE ingest.messages
              SET deleted_at = coalesce(deleted_at, $2),
                  deleted_by = coalesce(deleted_by, $3),
                  delete_reason = coalesce(delete_reason, $4)
            WHERE message_id = $1""",
        [
            (e.payload.message_id, e.occurred_at, e.payload.deleted_by, e.payload.reason)
            for e in events
        ],
    )


async def store_files(conn: Connection, events: Sequence[FileUploaded]) -> None:
    await check_tenants(
        conn, "files", "file_id", [(e.payload.file_id, e.tenant_id) for e in events]
    )
    await conn.executemany(
        """INSERT INTO ingest.files (file_id, tenant_id, conversation_id, uploaded_by, filename,
               mime_type, size_bytes, sha256, storage_uri, extracted_text, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (file_id) DO NOTHING""",
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
    if links:
        await conn.executemany(
            """INSERT INTO ingest.message_files (message_id, file_id, tenant_id)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            links,
        )


async def start_sessions(conn: Connection, events: Sequence[SessionStarted]) -> None:
    await check_tenants(
        conn,
        "conversation_sessions",
        "session_id",
        [(e.payload.session_id, e.tenant_id) for e in events],
    )
    await conn.executemany(
        """INSERT INTO ingest.conversation_sessions AS s (session_id, tenant_id, conversation_id,
               user_id, agent_id, started_at, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (session_id) DO UPDATE SET
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
    await check_tenants(
        conn,
        "conversation_sessions",
        "session_id",
        [(e.payload.session_id, e.tenant_id) for e in events],
    )
    await conn.executemany(
        """INSERT INTO ingest.conversation_sessions AS s (session_id, tenant_id, conversation_id,
               user_id, agent_id, status, ended_at, end_reason)
           VALUES ($1, $2, $3, $4, $5, 'ended', $6, $7)
           ON CONFLICT (session_id) DO UPDATE SET
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
