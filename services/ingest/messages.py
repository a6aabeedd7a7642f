"""SQL for new messages (with their version 1) and the activity they add to conversations
and sessions; edits and deletes are in ``versions.py``. Every function runs inside the
batch's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from contracts.chat import FileUploaded, MessageCreated, MessageDeleted, MessageEdited
from services.ingest.logic import message_columns
from services.runtime.db import Connection

INSERT_MESSAGES = """
WITH input AS (
    -- One row per message (the first in delivery order): a message published twice under
    -- two event ids in one batch is stored once, with one version 1.
    SELECT DISTINCT ON (tenant_id, message_id) *
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                  $6::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                  $11::int[], $12::text[], $13::text[], $14::text[], $15::timestamptz[])
           WITH ORDINALITY
        AS i(event_id, message_id, tenant_id, conversation_id, session_id, parent_message_id,
             role, content, content_type, metadata, tokens, model, sender_user_id,
             sender_agent_id, created_at, position)
     ORDER BY tenant_id, message_id, position
), resolved AS (
    -- A message that names no session counts towards its conversation's active one.
    SELECT i.*, coalesce(i.session_id, (
        SELECT s.session_id FROM ingest.conversation_sessions s
         WHERE s.tenant_id = i.tenant_id AND s.conversation_id = i.conversation_id
           AND s.status = 'active'
         ORDER BY s.started_at DESC NULLS LAST LIMIT 1)) AS sid
      FROM input i
), inserted AS (
    -- parent_message_id names a message of the same tenant, which may arrive later (no
    -- foreign key).
    INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, session_id,
        parent_message_id, role, content, content_type, metadata, tokens, model,
        sender_user_id, sender_agent_id, created_at)
    SELECT message_id, tenant_id, conversation_id, sid, parent_message_id, role, content,
           content_type, metadata, tokens, model, sender_user_id, sender_agent_id, created_at
      FROM resolved
    ON CONFLICT (tenant_id, message_id) DO NOTHING
    RETURNING tenant_id, message_id, conversation_id, session_id, tokens, created_at
), versions AS (
    INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,
        content_type, event_id, created_at)
    SELECT r.message_id, 1, r.tenant_id, r.content, r.content_type, r.event_id, r.created_at
      FROM resolved r JOIN inserted USING (tenant_id, message_id)
)
-- For bump_activity, once the batch's heavy work is done.
SELECT ARRAY(SELECT tenant_id FROM inserted) AS tenant_ids,
       ARRAY(SELECT conversation_id FROM inserted) AS conversation_ids,
       ARRAY(SELECT created_at FROM inserted) AS created_at,
       ARRAY(SELECT session_id FROM inserted) AS session_ids,
       ARRAY(SELECT tokens FROM inserted) AS tokens
"""


async def create_messages(conn: Connection, events: Sequence[MessageCreated]) -> Activity:
    sessions = sorted(  # in key order, like every lock two batches in flight may share
        {
            (e.tenant_id, e.payload.session_id, e.payload.conversation_id)
            for e in events
            if e.payload.session_id is not None
        }
    )
    if sessions:  # placeholders for sessions named before chat.session.started arrives
        await conn.executemany(
            """INSERT INTO ingest.conversation_sessions (tenant_id, session_id, conversation_id)
               VALUES ($1, $2, $3) ON CONFLICT (tenant_id, session_id) DO NOTHING""",
            sessions,
        )
    row = await conn.fetchrow(INSERT_MESSAGES, *message_columns(events))
    assert row is not None
    return Activity(
        row["tenant_ids"],
        row["conversation_ids"],
        row["created_at"],
        row["session_ids"],
        row["tokens"],
    )


@dataclass
class Activity:
    """What a batch's new messages add to their conversations and sessions, one entry per
    message inserted; moved once, by bump_activity, at the end of the batch."""

    tenant_ids: list[str] = field(default_factory=list)
    conversation_ids: list[UUID] = field(default_factory=list)
    created_at: list[datetime] = field(default_factory=list)
    session_ids: list[UUID | None] = field(default_factory=list)
    tokens: list[int | None] = field(default_factory=list)

    def extend(self, other: Activity) -> None:
        self.tenant_ids += other.tenant_ids
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
  FROM (SELECT l.tenant_id, l.session_id, n.count, n.tokens
          FROM (SELECT tenant_id, session_id, count(*) AS count,
                       coalesce(sum(tokens), 0) AS tokens
                  FROM unnest($1::text[], $2::uuid[], $3::int[])
                    AS i(tenant_id, session_id, tokens)
                 WHERE session_id IS NOT NULL
                 GROUP BY tenant_id, session_id) n
          JOIN ingest.conversation_sessions l USING (tenant_id, session_id)
         ORDER BY l.tenant_id, l.session_id
           FOR NO KEY UPDATE OF l) n
 WHERE s.tenant_id = n.tenant_id AND s.session_id = n.session_id
"""
BUMP_CONVERSATIONS = """
UPDATE ingest.conversations c
   SET last_message_at = greatest(c.last_message_at, n.at),
       message_count = c.message_count + n.count, total_tokens = c.total_tokens + n.tokens
  FROM (SELECT l.tenant_id, l.conversation_id, n.at, n.count, n.tokens
          FROM (SELECT tenant_id, conversation_id, max(at) AS at, count(*) AS count,
                       coalesce(sum(tokens), 0) AS tokens
                  FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::int[])
                    AS i(tenant_id, conversation_id, at, tokens)
                 GROUP BY tenant_id, conversation_id) n
          JOIN ingest.conversations l USING (tenant_id, conversation_id)
         ORDER BY l.tenant_id, l.conversation_id
           FOR NO KEY UPDATE OF l) n
 WHERE c.tenant_id = n.tenant_id AND c.conversation_id = n.conversation_id
"""


async def bump_activity(conn: Connection, activity: Activity) -> None:
    """Message counts and tokens of sessions and conversations, and the last message
    time of conversations."""
    if any(sid is not None for sid in activity.session_ids):
        await conn.execute(
            BUMP_SESSIONS, activity.tenant_ids, activity.session_ids, activity.tokens
        )
    if activity.conversation_ids:
        await conn.execute(
            BUMP_CONVERSATIONS,
            activity.tenant_ids,
            activity.conversation_ids,
            activity.created_at,
            activity.tokens,
        )


async def existing_messages(
    conn: Connection, events: Sequence[MessageEdited | MessageDeleted | FileUploaded]
) -> set[tuple[str, UUID]]:
    """(tenant_id, message_id) of the stored messages the events name."""
    pairs = [
        (e.tenant_id, e.payload.message_id) for e in events if e.payload.message_id is not None
    ]
    rows = await conn.fetch(
        """SELECT tenant_id, message_id FROM ingest.messages
            WHERE (tenant_id, message_id) IN (
                  SELECT * FROM unnest($1::text[], $2::uuid[]) AS r(tenant_id, message_id))""",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return {(row[0], row[1]) for row in rows}
