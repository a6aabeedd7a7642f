"""SQL of the chat queries (query.chat.history, query.chat.conversations): reads only, on
the query pool, as ``engram_ingest_reader`` scoped to the request's tenant. Every
statement also names the tenant (the policy is the second wall, not the filter).

Pages are keyset pages: a row comparison on the sort key against the cursor (a first
page compares with ``±infinity``), so one statement serves every page and each page is
one index range scan (sql/ingest/006). A page never loads more content than a reply can
carry: each row's ``bytes`` and the ``before`` running total come with it, and content
past ``$budget`` bytes is not read (NULL), so 500 messages of 4 MB each never reach
the worker's memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.runtime.db import Connection

# A first page starts past every key: (±infinity, the lowest or highest id).
LOWEST, HIGHEST = UUID(int=0), UUID(int=(1 << 128) - 1)

# The summary of each conversation in ``page``: counters kept by the writer (message_count,
# total_tokens) and the few counted here from small index ranges (sessions, files).
_SUMMARY = """
SELECT c.conversation_id, c.title, c.user_id, c.agent_id, c.status,
       c.is_placeholder AS placeholder, c.metadata, c.created_at, c.last_message_at,
       c.last_activity_at, c.archived_at, c.message_count, c.total_tokens,
       s.session_count, s.active_sessions, f.file_count
  FROM page c
 CROSS JOIN LATERAL (
       SELECT count(*) AS session_count, count(*) FILTER (WHERE s.status = 'active')
              AS active_sessions
         FROM ingest.conversation_sessions s
        WHERE s.tenant_id = c.tenant_id AND s.conversation_id = c.conversation_id) s
 CROSS JOIN LATERAL (
       SELECT count(*) AS file_count FROM ingest.files f
        WHERE f.tenant_id = c.tenant_id AND f.conversation_id = c.conversation_id) f
"""
_COLUMNS = "c.*, coalesce(c.last_message_at, c.created_at) AS last_activity_at"

# Most recently active first. No index holds the activity time (sql/ingest/006: it would
# cost every ingest batch), so the owner's conversations are read from their index and
# the page is a top-N sort of them.
_LISTING = """
WITH page AS (
    SELECT {columns} FROM ingest.conversations c
     WHERE c.tenant_id = $1 AND {owner}
       AND ($3::text IS NULL OR c.status = $3)
       AND (coalesce(c.last_message_at, c.created_at), c.conversation_id)
           < (coalesce($4::timestamptz, 'infinity'), $5)
     ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.conversation_id DESC
     LIMIT $6
)
{summary} ORDER BY c.last_activity_at DESC, c.conversation_id DESC"""
BY_USER = _LISTING.format(
    columns=_COLUMNS,
    owner="c.user_id = $2 AND ($7::text IS NULL OR c.agent_id = $7)",
    summary=_SUMMARY,
)
BY_AGENT = _LISTING.format(
    columns=_COLUMNS, owner="c.agent_id = $2 AND $7::text IS NULL", summary=_SUMMARY
)

_MESSAGES = """
SELECT message_id, session_id, parent_message_id, role, content_type, metadata, tokens, model,
       sender_user_id, sender_agent_id, version, created_at, edited_at, deleted_at,
       deleted_by, delete_reason, bytes, before,
       CASE WHEN before < $7 THEN content END AS content
  FROM (SELECT m.*, octet_length(m.content) AS bytes,
               coalesce(sum(octet_length(m.content)) OVER (
                   ORDER BY m.created_at {dir}, m.message_id {dir}
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
          FROM (SELECT * FROM ingest.messages m
                 WHERE m.tenant_id = $1 AND m.conversation_id = $2
                   AND ($3 OR m.deleted_at IS NULL)
                   AND (m.created_at, m.message_id) {cmp} (coalesce($4::timestamptz, {edge}), $5)
                 ORDER BY m.created_at {dir}, m.message_id {dir}
                 LIMIT $6) m) m
 ORDER BY created_at {dir}, message_id {dir}"""
NEWEST_FIRST = _MESSAGES.format(dir="DESC", cmp="<", edge="'infinity'")
OLDEST_FIRST = _MESSAGES.format(dir="ASC", cmp=">", edge="'-infinity'")

# A history page in one statement (one round trip, not two): the conversation's summary as
# JSON on every row, beside its page of messages; one row of NULL message columns when the
# page is empty, none when there is no such conversation.
_PAGE = """
WITH page AS (
    SELECT {columns} FROM ingest.conversations c
     WHERE c.tenant_id = $1 AND c.conversation_id = $2
), found AS ({summary})
SELECT to_jsonb(found) AS conversation, m.*
  FROM found LEFT JOIN LATERAL ({messages}) m ON true
 ORDER BY m.created_at {dir}, m.message_id {dir}"""
PAGE_NEWEST_FIRST = _PAGE.format(
    columns=_COLUMNS, summary=_SUMMARY, messages=NEWEST_FIRST, dir="DESC"
)
PAGE_OLDEST_FIRST = _PAGE.format(
    columns=_COLUMNS, summary=_SUMMARY, messages=OLDEST_FIRST, dir="ASC"
)

# The versions of the page's messages, in page order, under the same byte budget.
VERSIONS = """
SELECT message_id, version, content_type, edited_by, reason, event_id, created_at, bytes,
       CASE WHEN before < $3 THEN content END AS content
  FROM (SELECT v.*, p.position, octet_length(v.content) AS bytes,
               coalesce(sum(octet_length(v.content)) OVER (
                   ORDER BY p.position, v.version
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
          FROM unnest($2::uuid[]) WITH ORDINALITY AS p(message_id, position)
          JOIN ingest.message_versions v
            ON v.tenant_id = $1 AND v.message_id = p.message_id) v
 ORDER BY position, version"""


async def page(
    conn: Connection,
    tenant: str,
    conversation_id: UUID,
    *,
    newest_first: bool,
    after: tuple[datetime, UUID] | None,
    include_deleted: bool,
    limit: int,
    budget: int,
) -> tuple[dict[str, Any] | None, list[asyncpg.Record]]:
    """The conversation's summary (None: no such conversation in the tenant) and up to
    ``limit`` of its messages after ``after``, as ``messages`` returns them."""
    at, id_ = after if after is not None else (None, HIGHEST if newest_first else LOWEST)
    rows: list[asyncpg.Record] = await conn.fetch(
        PAGE_NEWEST_FIRST if newest_first else PAGE_OLDEST_FIRST,
        tenant,
        conversation_id,
        include_deleted,
        at,
        id_,
        limit,
        budget,
    )
    if not rows:
        return None, []
    found: dict[str, Any] = rows[0]["conversation"]
    return found, [r for r in rows if r["message_id"] is not None]


async def versions(
    conn: Connection, tenant: str, message_ids: list[UUID], budget: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(VERSIONS, tenant, message_ids, budget)
    return rows


async def conversations(
    conn: Connection,
    tenant: str,
    *,
    user_id: str | None,
    agent_id: str | None,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` conversations of the owner, most recently active first."""
    at, id_ = after if after is not None else (None, HIGHEST)
    sql, owner, also = (BY_USER, user_id, agent_id) if user_id else (BY_AGENT, agent_id, None)
    rows: list[asyncpg.Record] = await conn.fetch(sql, tenant, owner, status, at, id_, limit, also)
    return rows
