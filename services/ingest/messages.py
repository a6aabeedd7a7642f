"""SQL for new messages (with their version 1) and the activity they add to conversations
and sessions; edits and deletes are in ``versions.py``. Every function runs inside the
batch's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from contracts.chat import FileUploaded, MessageCreated, MessageDeleted, MessageEdited
from services.ingest.logic import foreign_parent, message_columns
from services.ingest.repo import TenantMismatch, check_tenants
from services.runtime.db import Connection

INSERT_MESSAGES = """
WITH input AS (
    -- One row per message_id (the first in delivery order): a message published twice
    -- under two event ids in one batch is stored once, with one version 1.
    SELECT DISTINCT ON (message_id) *
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                  $6::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                  $11::int[], $12::text[], $13::text[], $14::text[], $15::timestamptz[])
           WITH ORDINALITY
        AS i(event_id, message_id, tenant_id, conversation_id, session_id, parent_message_id,
             role, content, content_type, metadata, tokens, model, sender_user_id,
             sender_agent_id, created_at, position)
     ORDER BY message_id, position
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
    RETURNING message_id, conversation_id, session_id, tokens, created_at
), versions AS (
    INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,
        content_type, event_id, created_at)
    SELECT r.message_id, 1, r.tenant_id, r.content, r.content_type, r.event_id, r.created_at
      FROM resolved r JOIN inserted USING (message_id)
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       -- For bump_activity, once the batch's heavy work is done.
       ARRAY(SELECT conversation_id FROM inserted) AS conversation_ids,
       ARRAY(SELECT created_at FROM inserted) AS created_at,
       ARRAY(SELECT session_id FROM inserted) AS session_ids,
       ARRAY(SELECT tokens FROM inserted) AS tokens,
       -- A reply to another tenant's message stored before (this batch's own are checked
       -- by logic.foreign_parent: they are not visible here). There is no foreign key on
       -- the parent, as it may arrive later: check what is there.
       (SELECT i.message_id FROM input i
          JOIN ingest.messages p ON p.message_id = i.parent_message_id
         WHERE p.tenant_id <> i.tenant_id
         LIMIT 1) AS foreign_parent
"""


async def create_messages(conn: Connection, events: Sequence[MessageCreated]) -> Activity:
    sessions = sorted(  # in key order, like every lock two batches in flight may share
        {
            (e.payload.session_id, e.tenant_id, e.payload.conversation_id)
            for e in events
            if e.payload.session_id is not None
        }
    )
    if sessions:  # placeholders for sessions named before chat.session.started arrives
        # No conflict target, as in repo.ensure_conversations: another batch's placeholder
        # may meet this one first in the (tenant_id, session_id) index.
        await conn.executemany(
            """INSERT INTO ingest.conversation_sessions (session_id, tenant_id, conversation_id)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            sessions,
        )
        await check_tenants(
            conn, "conversation_sessions", "session_id", [(s[0], s[1]) for s in sessions]
        )
    _refuse_reply(foreign_parent(events))  # to a message of this batch
    row = await conn.fetchrow(INSERT_MESSAGES, *message_columns(events))
    assert row is not None
    inserted, conversation_ids, created_at, session_ids, tokens, stored_parent = row
    _refuse_reply(stored_parent)  # to a message stored before
    if inserted < len(events):  # repeats of a message_id, or another tenant's message_id
        await check_tenants(
            conn, "messages", "message_id", [(e.payload.message_id, e.tenant_id) for e in events]
        )
    return Activity(conversation_ids, created_at, session_ids, tokens)


def _refuse_reply(message_id: UUID | None) -> None:
    if message_id is not None:
        raise TenantMismatch(f"message {message_id} answers another tenant's message")


@dataclass
class Activity:
    """What a batch's new messages add to their conversations and sessions, one entry per
    message inserted; moved once, by bump_activity, at the end of the batch."""

    conversation_ids: list[UUID] = field(default_factory=list)
    created_at: list[datetime] = field(default_factory=list)
    session_ids: list[UUID | None] = field(default_factory=list)
    tokens: list[int | None] = field(default_factory=list)

    def extend(self, other: Activity) -> None:
        self.conversation_ids += other.conversation_ids
        self.created_at += other.created_at
        self.session_ids += other.session_ids
        self.tokens += other.tokens


# Counters shared by every batch of a busy conversation. With two batches committing at
# once (IngestSettings.commits_in_flight), each locks the rows it moves in key order, once
# and last in its transaction: the second batch does its inserts while the first commits,
# then waits for these rows, and two batches never wait for each other both ways.
BUMP_SESSIONS = """
UPDATE ingest.conversation_sessions s
   SET message_count = s.message_count + n.count, total_tokens = s.total_tokens + n.tokens
  FROM (SELECT l.session_id, n.count, n.tokens
          FROM (SELECT session_id, count(*) AS count, coalesce(sum(tokens), 0) AS tokens
                  FROM unnest($1::uuid[], $2::int[]) AS i(session_id, tokens)
                 WHERE session_id IS NOT NULL
                 GROUP BY session_id) n
          JOIN ingest.conversation_sessions l USING (session_id)
         ORDER BY l.session_id
           FOR NO KEY UPDATE OF l) n
 WHERE s.session_id = n.session_id
"""
BUMP_CONVERSATIONS = """
UPDATE ingest.conversations c SET last_message_at = greatest(c.last_message_at, n.at)
  FROM (SELECT l.conversation_id, n.at
          FROM (SELECT conversation_id, max(at) AS at
                  FROM unnest($1::uuid[], $2::timestamptz[]) AS i(conversation_id, at)
                 GROUP BY conversation_id) n
          JOIN ingest.conversations l USING (conversation_id)
         ORDER BY l.conversation_id
           FOR NO KEY UPDATE OF l) n
 WHERE c.conversation_id = n.conversation_id
"""


async def bump_activity(conn: Connection, activity: Activity) -> None:
    """Message counts and tokens of sessions, last message time of conversations."""
    if any(sid is not None for sid in activity.session_ids):
        await conn.execute(BUMP_SESSIONS, activity.session_ids, activity.tokens)
    if activity.conversation_ids:
        await conn.execute(BUMP_CONVERSATIONS, activity.conversation_ids, activity.created_at)


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
