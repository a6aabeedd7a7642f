"""SQL of session notes: the text of open sessions' messages, until their summary (and a
while after it, so that a message applied late amends the summary)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from services.memory.rows import EndedSession, Note, SaidNote, SeenSession, SessionStart
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


async def edit_note(conn: Connection, tenant_id: str, message_id: UUID, text: str) -> UUID | None:
    """The note's session, when it had a note and one."""
    session: UUID | None = await conn.fetchval(
        """UPDATE memory.session_notes SET text = $3 WHERE tenant_id = $1 AND message_id = $2
           RETURNING session_id""",
        tenant_id,
        message_id,
        text,
    )
    return session


async def delete_note(conn: Connection, tenant_id: str, message_id: UUID) -> UUID | None:
    """The note's session, when it had a note and one."""
    session: UUID | None = await conn.fetchval(
        """DELETE FROM memory.session_notes WHERE tenant_id = $1 AND message_id = $2
           RETURNING session_id""",
        tenant_id,
        message_id,
    )
    return session


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


async def end_session(
    conn: Connection,
    tenant_id: str,
    session_id: UUID,
    conversation_id: UUID,
    ended_event: Mapping[str, Any],
) -> SeenSession | None:
    """Marks the session ended (keeping its end event, for late messages); its start, if
    it was seen."""
    row = await conn.fetchrow(
        """INSERT INTO memory.sessions AS s (tenant_id, session_id, conversation_id,
               ended_event, ended_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (tenant_id, session_id) DO UPDATE
              SET ended_event = EXCLUDED.ended_event, ended_at = EXCLUDED.ended_at
           RETURNING agent_id, user_id, started_at, (xmax = 0) AS inserted""",
        tenant_id,
        session_id,
        conversation_id,
        ended_event,
    )
    if row is None or row["inserted"]:
        return None
    return SeenSession(row["agent_id"], row["user_id"], row["started_at"])


async def session_notes(
    conn: Connection,
    tenant_id: str,
    *,
    session_id: UUID,
    conversation_id: UUID,
    started: datetime | None,
    ended_at: datetime,
) -> list[SaidNote]:
    """The session's notes in time order. Notes without a session id count when they fall
    in its window."""
    notes = await conn.fetch(
        """SELECT role, text, occurred_at FROM memory.session_notes
            WHERE tenant_id = $1 AND conversation_id = $3
              AND (session_id = $2 OR (session_id IS NULL
                   AND occurred_at >= coalesce($4::timestamptz, '-infinity')
                   AND occurred_at <= $5))""",
        tenant_id,
        session_id,
        conversation_id,
        started,
        ended_at,
    )
    return sorted(
        (SaidNote(n["role"], n["text"], n["occurred_at"]) for n in notes),
        key=lambda n: n.occurred_at,
    )


async def ended_sessions(
    conn: Connection, tenant_id: str, session_ids: Sequence[UUID]
) -> list[EndedSession]:
    """Those of ``session_ids`` that ended already (their summary is written)."""
    rows = await conn.fetch(
        """SELECT agent_id, user_id, started_at, ended_event FROM memory.sessions
            WHERE tenant_id = $1 AND session_id = ANY($2::uuid[]) AND ended_event IS NOT NULL""",
        tenant_id,
        list(session_ids),
    )
    return [
        EndedSession(r["ended_event"], SeenSession(r["agent_id"], r["user_id"], r["started_at"]))
        for r in rows
    ]


async def forget_notes(conn: Connection, tenant_id: str, conversation_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM memory.session_notes WHERE tenant_id = $1 AND conversation_id = $2",
        tenant_id,
        conversation_id,
    )


async def prune_notes(conn: Connection, older_than_days: float, late_s: float) -> int:
    """Drops the notes of sessions that never ended (after ``older_than_days``) and the
    rows and notes of sessions ended more than ``late_s`` ago; how many notes."""
    status = await conn.execute(
        """DELETE FROM memory.session_notes
            WHERE occurred_at < now() - make_interval(secs => $1)""",
        older_than_days * 86_400,
    )
    ended = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM memory.sessions
                WHERE ended_at < now() - make_interval(secs => $1)
               RETURNING tenant_id, session_id),
           notes AS (
               DELETE FROM memory.session_notes n USING gone
                WHERE n.tenant_id = gone.tenant_id AND n.session_id = gone.session_id
               RETURNING 1)
           SELECT count(*) FROM notes""",
        late_s,
    )
    return int(status.split()[-1]) + int(ended)
