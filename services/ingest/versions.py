"""SQL for edits and deletes of messages: every version, in one total order.

A message's versions are ordered, whatever order their events arrive in: version 1 is
the created event (an edit cannot causally precede its message, so a producer clock that
runs behind must not put an edit first); then the edits by ``(occurred_at, event_id)``.
``messages.content``, ``content_type``, ``edited_at`` and ``version`` are always those of
the highest version. See docs/ingest.md. Every function runs inside the batch's
transaction, after ``repo.lock_batch`` took the message's key exclusively, so no other
transaction renumbers the same message's versions at the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.chat import MessageDeleted, MessageEdited
from services.runtime.db import Connection

# One statement per run of edits, whatever the number of messages and edits: the stored
# versions of each message edited and the new ones are ranked together, the stored rows
# that move are renumbered, the new ones inserted at their place, and the message row set
# from the highest version. The primary key is checked at the end of the statement
# (migration 004), so versions can move past each other.
EDIT_MESSAGES = """
WITH input AS (
    -- An event once per batch (the first delivered); ids, as everywhere, per tenant.
    SELECT DISTINCT ON (tenant_id, event_id) *
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                  $7::text[], $8::timestamptz[]) WITH ORDINALITY
        AS i(event_id, message_id, tenant_id, content, content_type, edited_by, reason,
             created_at, position)
     ORDER BY tenant_id, event_id, position
), new AS (
    -- Edits of a stored message of the same tenant that are not one of its versions yet
    -- (an edit redelivered after its inbox row was pruned changes nothing).
    SELECT i.* FROM input i
      JOIN ingest.messages m ON m.message_id = i.message_id AND m.tenant_id = i.tenant_id
     WHERE NOT EXISTS (SELECT 1 FROM ingest.message_versions v
                        WHERE v.tenant_id = i.tenant_id AND v.message_id = i.message_id
                          AND v.event_id = i.event_id)
), every AS (
    SELECT v.message_id, v.version AS old, v.tenant_id, v.content, v.content_type,
           v.content_type_inherited AS inherited, v.edited_by, v.reason, v.event_id,
           v.created_at
      FROM ingest.message_versions v
     WHERE (v.tenant_id, v.message_id) IN (SELECT tenant_id, message_id FROM new)
    UNION ALL
    SELECT message_id, NULL, tenant_id, content, content_type, content_type IS NULL,
           edited_by, reason, event_id, created_at
      FROM new
), ranked AS (
    SELECT e.*,
           row_number() OVER w AS version,
           -- Versions that inherit their content type share a group with the last
           -- version before them that named one (version 1 always does).
           count(*) FILTER (WHERE NOT e.inherited) OVER w AS type_group
      FROM every e
    WINDOW w AS (PARTITION BY e.tenant_id, e.message_id
                 ORDER BY e.old IS DISTINCT FROM 1, e.created_at, e.event_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), typed AS (
    SELECT r.*, first_value(r.content_type) OVER (
               PARTITION BY r.tenant_id, r.message_id, r.type_group ORDER BY r.version)
               AS effective_type
      FROM ranked r
), moved AS (
    UPDATE ingest.message_versions v SET version = t.version, content_type = t.effective_type
      FROM typed t
     WHERE t.old IS NOT NULL AND v.tenant_id = t.tenant_id AND v.message_id = t.message_id
       AND v.version = t.old
       AND (v.version, v.content_type) IS DISTINCT FROM (t.version, t.effective_type)
), added AS (
    INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,
        content_type, content_type_inherited, edited_by, reason, event_id, created_at)
    SELECT message_id, version, tenant_id, content, effective_type, inherited, edited_by,
           reason, event_id, created_at
      FROM typed WHERE old IS NULL
)
UPDATE ingest.messages m
   SET content = t.content, content_type = t.effective_type, edited_at = t.created_at,
       version = t.version
  FROM (SELECT DISTINCT ON (tenant_id, message_id) * FROM typed
         ORDER BY tenant_id, message_id, version DESC) t
 WHERE m.tenant_id = t.tenant_id AND m.message_id = t.message_id
"""


def edit_columns(events: Sequence[MessageEdited]) -> list[list[Any]]:
    """Column arrays of EDIT_MESSAGES, in delivery order."""
    cols: list[list[Any]] = [[] for _ in range(8)]
    for e in events:
        p = e.payload
        row = (
            e.event_id,
            p.message_id,
            e.tenant_id,
            p.content,
            p.content_type.value if p.content_type else None,
            p.edited_by,
            p.reason,
            e.occurred_at,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def edit_messages(conn: Connection, events: Sequence[MessageEdited]) -> None:
    await conn.execute(EDIT_MESSAGES, *edit_columns(events))


async def delete_messages(conn: Connection, events: Sequence[MessageDeleted]) -> None:
    # Soft: the content and every version stay, and edits still add versions. Of several
    # deletes the earliest by occurred_at is recorded (ties: by who, then why), whatever
    # order they arrive in.
    await conn.executemany(
        """UPDATE ingest.messages
              SET deleted_at = $2, deleted_by = $3, delete_reason = $4
            WHERE message_id = $1 AND tenant_id = $5
              AND (deleted_at IS NULL
                   OR ($2::timestamptz, $3::text, coalesce($4::text, ''))
                      < (deleted_at, coalesce(deleted_by, ''), coalesce(delete_reason, '')))""",
        [
            (
                e.payload.message_id,
                e.occurred_at,
                e.payload.deleted_by,
                e.payload.reason,
                e.tenant_id,
            )
            for e in events
        ],
    )
