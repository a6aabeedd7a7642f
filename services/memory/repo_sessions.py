"""SQL of session notes: the text of open sessions' messages, until their summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from services.memory.rows import Note, SaidNote, SeenSession, SessionStart
from services.runtime.db import Connection


async def add_notes(conn: Connection, rows: Sequence[Note]) -> None:
    if rows:
        await conn.execute(
            """INSERT INTO memory.session_notes (tenant_id, message_id, conversation_id,
                   session_id, role, text, occurred_at)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[],
                                    $5::text[], $6::text[], $7::timestamptz[])
               ON CONFLICT DO NOTHING""",
            *[[getattr(r, f) for r in rows] for f in Note._fields],
        )


async def edit_note(conn: Connection, tenant_id: str, message_id: UUID, text: str) -> None:
    await conn.execute(
        "UPDATE memory.session_notes SET text = $3 WHERE tenant_id = $1 AND message_id = $2",
        tenant_id,
        message_id,
        text,
    )


async def delete_note(conn: Connection, tenant_id: str, message_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM memory.session_notes WHERE tenant_id = $1 AND message_id = $2",
        tenant_id,
        message_id,
    )


async def session_started(conn: Connection, tenant_id: str, row: SessionStart) -> None:
    await conn.execute(
        """INSERT INTO memory.sessions (tenant_id, session_id, conversation_id, agent_id,
               user_id, started_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, session_id) DO UPDATE SET started_at = EXCLUDED.started_at,
               agent_id = coalesce(EXCLUDED.agent_id, memory.sessions.agent_id),
               user_id = coalesce(EXCLUDED.user_id, memory.sessions.user_id)""",
        tenant_id,
        *row,
    )


async def take_session(
    conn: Connection, tenant_id: str, session_id: UUID, conversation_id: UUID, ended_at: datetime
) -> tuple[SeenSession | None, list[SaidNote]]:
    """The session's start (if seen) and its notes, which are deleted: a session is
    summarized once. Notes without a session id count when they fall in its window."""
    session = await conn.fetchrow(
        "DELETE FROM memory.sessions WHERE tenant_id = $1 AND session_id = $2 RETURNING *",
        tenant_id,
        session_id,
    )
    started = session["started_at"] if session else None
    notes = await conn.fetch(
        """DELETE FROM memory.session_notes
            WHERE tenant_id = $1 AND conversation_id = $3
              AND (session_id = $2 OR (session_id IS NULL
                   AND occurred_at >= coalesce($4::timestamptz, '-infinity')
                   AND occurred_at <= $5))
           RETURNING role, text, occurred_at""",
        tenant_id,
        session_id,
        conversation_id,
        started,
        ended_at,
    )
    ordered = sorted(
        (SaidNote(n["role"], n["text"], n["occurred_at"]) for n in notes),
        key=lambda n: n.occurred_at,
    )
    seen = (
        None
        if session is None
        else SeenSession(session["agent_id"], session["user_id"], session["started_at"])
    )
    return seen, ordered


async def forget_notes(conn: Connection, tenant_id: str, conversation_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM memory.session_notes WHERE tenant_id = $1 AND conversation_id = $2",
        tenant_id,
        conversation_id,
    )


async def prune_notes(conn: Connection, older_than_days: float) -> int:
    status = await conn.execute(
        """DELETE FROM memory.session_notes
            WHERE occurred_at < now() - make_interval(secs => $1)""",
        older_than_days * 86_400,
    )
    return int(status.split()[-1])
