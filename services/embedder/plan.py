"""What a batch of events does to the sources it names (pure).

Each event becomes a ``Change`` (set a text, edit it, delete the source). The changes are
folded in delivery order over the sources' stored state, so a batch that creates, edits and
deletes one message does each step's work once, on the final outcome:

* last writer wins by ``occurred_at``: an edit older than the text stored is ignored;
* a delete leaves a tombstone, so a late or redelivered create or edit does not revive it;
* an edit of a message not seen yet is retried later (it arrived before its create);
* text equal to the stored text (same hash) is not chunked or embedded again.

A source is keyed by its tenant with its producer-chosen id: two tenants that use the same
message, file or memory id have two sources that never meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from contracts.chat import FileUploaded, MessageCreated, MessageDeleted, MessageEdited
from contracts.embedding import SourceType
from contracts.memory import MemoryWrite
from contracts.memory_jobs import MemoryForgotten
from services.embedder.logic import content_hash

Event = (
    MessageCreated | MessageEdited | MessageDeleted | FileUploaded | MemoryWrite | MemoryForgotten
)
EMPTY_HASH = content_hash("")


@dataclass(frozen=True)
class SourceKey:
    """The key of ``embedder.sources``: ids are chosen by producers, so per tenant."""

    tenant_id: str
    source_type: SourceType
    source_id: UUID


@dataclass(frozen=True)
class SourceState:
    """A row of ``embedder.sources`` without its key (the ``SourceKey``)."""

    conversation_id: UUID | None
    agent_id: str | None
    source_at: datetime
    content_hash: str
    text_at: datetime
    indexed: bool
    deleted: bool
    event_id: UUID
    # A document of a knowledge source (contracts.knowledge): whose, and its id there.
    knowledge_source_id: UUID | None = None
    document_id: str | None = None


@dataclass(frozen=True)
class Change:
    """What one event asks of one source."""

    event_id: UUID
    key: SourceKey
    at: datetime
    kind: Literal["set", "edit", "delete"]
    text: str = ""
    indexed: bool = True
    conversation_id: UUID | None = None
    agent_id: str | None = None
    knowledge_source_id: UUID | None = None
    document_id: str | None = None


@dataclass(frozen=True)
class SourceWrite:
    """The outcome for one source: its new row and, when ``rechunk``, the text whose
    chunks replace the stored ones (None: drop them)."""

    key: SourceKey
    state: SourceState
    rechunk: bool
    text: str | None


@dataclass
class Plan:
    writes: dict[SourceKey, SourceWrite]
    retry: dict[UUID, str]


def changes_of(event: Event, embed_roles: Iterable[str]) -> list[Change]:
    """What an event asks; a forgotten notice deletes every memory it names (for good:
    a memory.write of a forgotten memory arriving late is not embedded again)."""
    if isinstance(event, MemoryForgotten):
        return [
            Change(
                event.event_id,
                SourceKey(event.tenant_id, SourceType.memory, memory_id),
                event.occurred_at,
                "delete",
            )
            for memory_id in event.payload.memory_ids
        ]
    return [change_of(event, embed_roles)]


def change_of(
    event: MessageCreated | MessageEdited | MessageDeleted | FileUploaded | MemoryWrite,
    embed_roles: Iterable[str],
) -> Change:
    at, tenant = event.occurred_at, event.tenant_id
    if isinstance(event, MessageCreated):
        p = event.payload
        return Change(
            event.event_id,
            SourceKey(tenant, SourceType.message, p.message_id),
            at,
            "set",
            text=p.content,
            indexed=p.role.value in embed_roles,
            conversation_id=p.conversation_id,
            agent_id=p.sender_agent_id,
        )
    if isinstance(event, MessageEdited):
        key = SourceKey(tenant, SourceType.message, event.payload.message_id)
        return Change(event.event_id, key, at, "edit", text=event.payload.content)
    if isinstance(event, MessageDeleted):
        key = SourceKey(tenant, SourceType.message, event.payload.message_id)
        return Change(event.event_id, key, at, "delete")
    if isinstance(event, FileUploaded):
        f = event.payload
        text = f.extracted_text or ""
        return Change(
            event.event_id,
            SourceKey(tenant, SourceType.file, f.file_id),
            at,
            "set",
            text=text,
            indexed=bool(text.strip()),
            conversation_id=f.conversation_id,
        )
    m = event.payload
    return Change(
        event.event_id,
        SourceKey(tenant, SourceType.memory, m.memory_id),
        at,
        "set",
        text=m.text,
        conversation_id=m.conversation_id,
        agent_id=m.agent_id,
    )


def fold(changes: Sequence[Change], stored: Mapping[SourceKey, SourceState]) -> Plan:
    """Apply ``changes`` in order over the ``stored`` states; returns the final writes."""
    state: dict[SourceKey, SourceState] = dict(stored)
    writes: dict[SourceKey, SourceWrite] = {}
    retry: dict[UUID, str] = {}
    for ch in changes:
        outcome = _step(ch, state.get(ch.key))
        if isinstance(outcome, str):
            retry[ch.event_id] = outcome
            continue
        if outcome is None:
            continue
        new, rechunk, text = outcome
        previous = writes.get(ch.key)
        if not rechunk and previous is not None and previous.rechunk:
            rechunk, text = True, previous.text  # a touch keeps the pending rechunk
        state[ch.key] = new
        writes[ch.key] = SourceWrite(ch.key, new, rechunk, text)
    return Plan(writes, retry)


Outcome = tuple[SourceState, bool, str | None] | str | None


def _step(ch: Change, cur: SourceState | None) -> Outcome:
    """One change over one state: (new state, rechunk, text), a retry reason, or None."""
    if ch.kind == "delete":
        return _delete(ch, cur)
    if ch.kind == "edit" and cur is None:
        return (
            f"{ch.key.source_type.value} {ch.key.source_id} is not stored yet (the edit "
            "arrived before its create); retrying"
        )
    if cur is not None and (cur.deleted or ch.at < cur.text_at):
        return None  # deleted for good, or a stale (older) text
    digest = content_hash(ch.text)
    if cur is None:
        new = _new(ch, digest, indexed=ch.indexed)
        return new, True, ch.text if new.indexed else None
    indexed = cur.indexed if ch.kind == "edit" else ch.indexed
    if digest == cur.content_hash and indexed == cur.indexed:
        return replace(cur, text_at=ch.at), False, None
    new = replace(
        cur,
        content_hash=digest,
        text_at=ch.at,
        indexed=indexed,
        event_id=ch.event_id,
        conversation_id=ch.conversation_id or cur.conversation_id,
        agent_id=ch.agent_id or cur.agent_id,
    )
    return new, True, ch.text if indexed else None


def _delete(ch: Change, cur: SourceState | None) -> Outcome:
    if cur is not None and cur.deleted:
        return None
    base = cur or _new(ch, EMPTY_HASH, indexed=False)
    return replace(base, deleted=True, text_at=max(base.text_at, ch.at)), True, None


def _new(ch: Change, digest: str, *, indexed: bool) -> SourceState:
    return SourceState(
        conversation_id=ch.conversation_id,
        agent_id=ch.agent_id,
        source_at=ch.at,
        content_hash=digest,
        text_at=ch.at,
        indexed=indexed,
        deleted=False,
        event_id=ch.event_id,
        knowledge_source_id=ch.knowledge_source_id,
        document_id=ch.document_id,
    )
