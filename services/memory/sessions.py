"""A session that ends becomes an episodic memory: its messages, summarized extractively.

The memory service keeps the text of messages of open sessions (``session_notes``, its
own copy: it reads no other schema) and, at ``chat.session.ended``, publishes an ordinary
``memory.write`` with the summary. The embedder embeds it like any memory and this
service stores it from its own MEMORY consumer, so a session memory is searchable by the
same path as any other.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from contracts.chat import SessionEnded
from contracts.memory import EpisodicContent, EpisodicMemory, MemoryWrite, Temporal
from services.memory.logic import derived_id
from services.memory.rows import SaidNote, SeenSession
from services.memory.settings import MemorySettings
from services.memory.summary import lexical_summary

SERVICE_PRODUCER = "engram-memory"
PRODUCER = "engram-memory/session"
MAX_SUMMARY_CHARS = 4000


def summary_event(
    ended: SessionEnded,
    session: SeenSession | None,
    notes: list[SaidNote],
    settings: MemorySettings,
    amended_by: UUID | None = None,
) -> MemoryWrite | None:
    """The memory.write of a session's summary; None when there is nothing to remember or
    no agent to remember it. ``amended_by``: the event of a message applied after the
    session's end, which makes this a new version of the summary (its own event id, the
    same memory id and time, so it replaces the first)."""
    p = ended.payload
    agent = p.agent_id or (session.agent_id if session else None)
    user = p.user_id or (session.user_id if session else None)
    if not notes or not agent:
        return None
    kept = lexical_summary(
        [f"{n.role.capitalize()}: {n.text}" for n in notes], settings.summary_sentences
    )
    text = " ".join(kept)[:MAX_SUMMARY_CHARS]
    started: datetime = (session.started_at if session else None) or notes[0].occurred_at
    ended_at = max(ended.occurred_at, started)
    memory_id = derived_id("session", ended.tenant_id, p.session_id)
    return MemoryWrite(
        event_id=(
            derived_id("session-write", ended.event_id)
            if amended_by is None
            else derived_id("session-amend", ended.event_id, amended_by)
        ),
        tenant_id=ended.tenant_id,
        producer=PRODUCER,
        occurred_at=ended.occurred_at,
        correlation_id=ended.correlation_id,
        causation_id=ended.event_id,
        payload=EpisodicMemory(
            memory_type="episodic",
            memory_id=memory_id,
            agent_id=agent,
            user_id=user,
            conversation_id=p.conversation_id,
            text=text,
            importance=settings.session_importance,
            content=EpisodicContent(
                event=text,
                temporal=Temporal(
                    occurred_at=started,
                    ended_at=ended_at,
                    description=f"session of {len(notes)} messages",
                ),
            ),
        ),
    )
