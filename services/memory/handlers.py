"""The batch functions the runtime calls inside its transaction (inbox claim + effects +
COMMIT, ack after) for what the memory service consumes (see app.py).

What a handler announces (a session's summary as ``memory.write``,
``engram.memory.forgotten``, the summary of a job already done) is queued in the outbox in
that same transaction (notices.py): published after COMMIT, never for a rolled-back batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from uuid import UUID

import numpy as np
from pydantic import Field

from contracts.chat import (
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    SessionEnded,
    SessionStarted,
)
from contracts.embedding import SourceType
from contracts.memory import MemoryWrite
from contracts.memory_jobs import MemoryConsolidate, MemoryForget
from services.memory import repo, repo_jobs, repo_sessions, sessions
from services.memory.logic import content_hash, estimate_tokens
from services.memory.notices import announce, forgotten_events
from services.memory.rows import (
    LinkTarget,
    MemoryKey,
    NewMemory,
    Note,
    SeenSession,
    SessionKey,
    SessionStart,
    VectorUpdate,
)
from services.memory.settings import MemorySettings
from services.runtime.db import Connection
from services.runtime.outbox import Outbox

log = logging.getLogger("engram.memory")

MemoryEvent = Annotated[MemoryWrite | MemoryForget | MemoryConsolidate, Field(discriminator="type")]
ChatEvent = Annotated[
    MessageCreated | MessageEdited | MessageDeleted | SessionStarted | SessionEnded,
    Field(discriminator="type"),
]
MEMORY_TYPES = (MemoryWrite, MemoryForget, MemoryConsolidate)
CHAT_TYPES = (MessageCreated, MessageEdited, MessageDeleted, SessionStarted, SessionEnded)
SUMMARIZED_ROLES = frozenset({"user", "assistant"})


class Handlers:
    def __init__(self, settings: MemorySettings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self._indexed: set[tuple[str, int]] = set()

    # --- MEMORY ------------------------------------------------------------------------
    # ``events: Sequence[Any]``: the runtime's ``Consumes`` callback type; each batch holds
    # the events its decoder validated (MemoryEvent, ChatEvent, EmbeddingReady).

    async def apply_memory(self, conn: Connection, events: Sequence[Any]) -> Mapping[UUID, str]:
        writes: list[MemoryWrite] = []
        for event in events:  # in stream order; consecutive writes go as one statement
            if isinstance(event, MemoryWrite):
                writes.append(event)
                continue
            await self._write(conn, writes)
            writes = []
            if isinstance(event, MemoryForget):
                await self._forget(conn, event)
            else:  # a job already done (a retried trigger) announces its summary again
                await announce(self.outbox, conn, await repo_jobs.enqueue(conn, event))
        await self._write(conn, writes)
        return {}

    async def _write(self, conn: Connection, writes: Sequence[MemoryWrite]) -> None:
        newest: dict[tuple[str, UUID], MemoryWrite] = {}
        for w in writes:
            key = (w.tenant_id, w.payload.memory_id)
            if key not in newest or newest[key].occurred_at <= w.occurred_at:
                newest[key] = w
        if not newest:
            return
        applied = await repo.upsert_memories(conn, [self._row(w) for w in newest.values()])
        for w in newest.values():
            p = w.payload
            if (w.tenant_id, p.memory_id) in applied:  # not older, not forgotten
                await repo.replace_links(
                    conn,
                    w.tenant_id,
                    p.memory_id,
                    [LinkTarget(x.memory_id, x.relation, x.weight) for x in p.links],
                )

    def _row(self, w: MemoryWrite) -> NewMemory:
        p = w.payload
        rate = p.decay_rate
        if rate is None:
            rate = self.settings.decay_rates.get(p.memory_type, 0.01)
        return NewMemory(
            tenant_id=w.tenant_id,
            memory_id=p.memory_id,
            agent_id=p.agent_id,
            user_id=p.user_id,
            conversation_id=p.conversation_id,
            memory_type=p.memory_type,
            text=p.text,
            content=p.content.model_dump(mode="json", exclude_none=True),
            content_hash=content_hash(p.text),
            tokens=estimate_tokens(p.text),
            importance=p.importance,
            decay_rate=rate,
            expires_at=p.expires_at,
            source_message_id=p.source_message_id,
            origin="session" if w.producer == sessions.PRODUCER else "write",
            written_at=w.occurred_at,
        )

    async def _forget(self, conn: Connection, event: MemoryForget) -> None:
        p = event.payload
        erased = await repo.forget(
            conn,
            event.tenant_id,
            ids=p.memory_ids,
            agent_id=p.agent_id,
            user_id=p.user_id,
            conversation_id=p.conversation_id,
            at=event.occurred_at,
            by=p.requested_by,
            reason=p.reason,
        )
        if p.memory_ids:
            unknown = set(p.memory_ids) - set(erased)
            await repo.tombstones(
                conn,
                event.tenant_id,
                sorted(unknown, key=str),
                at=event.occurred_at,
                by=p.requested_by,
                reason=p.reason,
            )
            erased = list(p.memory_ids)
        if p.conversation_id is not None:
            await repo_sessions.forget_notes(conn, event.tenant_id, p.conversation_id)
        if erased:
            notices = forgotten_events(
                event.tenant_id, event.event_id, erased, "forget", event.correlation_id
            )
            await announce(self.outbox, conn, notices)

    # --- CHAT --------------------------------------------------------------------------

    async def apply_chat(self, conn: Connection, events: Sequence[Any]) -> Mapping[UUID, str]:
        notes: list[Note] = []  # consecutive new messages go as one statement
        # A session's notes touched after its summary was written (a message redelivered
        # behind its session's end): the summary is written again once the batch is applied.
        touched: dict[SessionKey, UUID] = {}  # -> the last event that touched it
        for event in events:
            t = event.tenant_id
            p = event.payload
            if isinstance(event, MessageCreated):
                if p.role in SUMMARIZED_ROLES and p.content.strip():
                    notes.append(
                        Note(
                            t,
                            p.message_id,
                            p.conversation_id,
                            p.session_id,
                            p.role.value,
                            p.content,
                            event.occurred_at,
                        )
                    )
                    if p.session_id is not None:
                        touched[SessionKey(t, p.session_id)] = event.event_id
                continue
            await repo_sessions.add_notes(conn, notes)
            notes = []
            session: UUID | None = None
            if isinstance(event, MessageEdited):
                session = await repo_sessions.edit_note(conn, t, p.message_id, p.content)
            elif isinstance(event, MessageDeleted):
                session = await repo_sessions.delete_note(conn, t, p.message_id)
            elif isinstance(event, SessionStarted):
                await repo_sessions.session_started(
                    conn,
                    t,
                    SessionStart(
                        p.session_id, p.conversation_id, p.agent_id, p.user_id, event.occurred_at
                    ),
                )
            else:
                touched.pop(SessionKey(t, p.session_id), None)  # summarized with them now
                seen = await repo_sessions.end_session(
                    conn, t, p.session_id, p.conversation_id, event.model_dump(mode="json")
                )
                await self._summarize(conn, event, seen)
            if session is not None:
                touched[SessionKey(t, session)] = event.event_id
        await repo_sessions.add_notes(conn, notes)
        await self._amend_summaries(conn, touched)
        return {}

    async def _summarize(
        self,
        conn: Connection,
        ended: SessionEnded,
        seen: SeenSession | None,
        amended_by: UUID | None = None,
    ) -> None:
        p = ended.payload
        said = await repo_sessions.session_notes(
            conn,
            ended.tenant_id,
            session_id=p.session_id,
            conversation_id=p.conversation_id,
            started=seen.started_at if seen else None,
            ended_at=ended.occurred_at,
        )
        summary = sessions.summary_event(ended, seen, said, self.settings, amended_by)
        if summary is not None:
            await announce(self.outbox, conn, [summary])

    async def _amend_summaries(self, conn: Connection, touched: Mapping[SessionKey, UUID]) -> None:
        by_tenant: dict[str, list[UUID]] = {}
        for key in touched:
            by_tenant.setdefault(key.tenant_id, []).append(key.session_id)
        for tenant, ids in by_tenant.items():
            for ended in await repo_sessions.ended_sessions(conn, tenant, ids):
                event = SessionEnded.model_validate(ended.ended_event)
                late = touched[SessionKey(tenant, event.payload.session_id)]
                log.info(
                    "session %s had a message applied after its end: summarized again",
                    event.payload.session_id,
                )
                await self._summarize(conn, event, ended.seen, amended_by=late)

    # --- ENGRAM: vectors ---------------------------------------------------------------

    async def apply_vectors(self, conn: Connection, events: Sequence[Any]) -> Mapping[UUID, str]:
        ready = [e for e in events if e.payload.source_type is SourceType.memory]
        if not ready:
            return {}
        for e in ready:
            key = (e.payload.model_id, e.payload.dimensions)
            if key not in self._indexed:
                await repo.ensure_model_index(conn, *key)
                self._indexed.add(key)
        rows = [
            VectorUpdate(
                e.tenant_id,
                e.payload.source_id,
                bytes.fromhex(e.payload.content_hash),
                e.payload.model_id,
                np.asarray(e.payload.vector, dtype=np.float32),
            )
            for e in ready
        ]
        stored = await repo.set_vectors(conn, rows)
        missing = [e for e in ready if e.payload.source_id not in stored]
        if not missing:
            return {}
        # A vector of text that was replaced or forgotten is dropped; one for a memory
        # whose write this service has not applied yet waits for it.
        present = await repo.memories_present(
            conn, [MemoryKey(e.tenant_id, e.payload.source_id) for e in missing]
        )
        return {
            e.event_id: "memory not written yet"
            for e in missing
            if e.payload.source_id not in present
        }
