"""``EventBuilder``: typed constructors of the common events that fill the envelope
(a fresh ``event_id``, ``occurred_at`` = now in UTC, the builder's tenant, producer and
correlation id) and the ids the producer chooses (a new ``message_id``, ``memory_id``, ...
unless given). Each returns the validated event model (pydantic raises ``ValidationError``
for a bad field) to ``publish`` or ``publish_many``.

Every helper takes the envelope's own fields by keyword too: ``event_id``,
``occurred_at``, ``tenant_id``, ``correlation_id``, ``causation_id``. Optional payload
fields go by keyword with their contract's names (``metadata=...``, ``user_id=...``).
Any other event: ``envelope(EventType, payload)``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from contracts.chat import (
    ConversationArchived,
    ConversationCreated,
    MessageCreated,
    MessageDeleted,
    MessageEdited,
    SessionEnded,
    SessionStarted,
)
from contracts.envelope import Envelope
from contracts.knowledge import DocumentUpserted, SourceRegistered, SourceRemoved, SourceUpdated
from contracts.memory import (
    EpisodicContent,
    MemoryWrite,
    ProceduralContent,
    SemanticContent,
    WorkingContent,
)
from contracts.memory_jobs import MemoryConsolidate, MemoryForget
from contracts.state import StateCheckpoint, StatePatch, StateRestore

E = TypeVar("E", bound=Envelope)
ENVELOPE_KEYS = ("event_id", "occurred_at", "tenant_id", "correlation_id", "causation_id")
MEMORY_TYPES: dict[type[Any], str] = {
    EpisodicContent: "episodic",
    SemanticContent: "semantic",
    ProceduralContent: "procedural",
    WorkingContent: "working",
}
Content = EpisodicContent | SemanticContent | ProceduralContent | WorkingContent


@dataclass(frozen=True)
class EventBuilder:
    """Builds events for one producer (and, by default, one tenant)."""

    tenant_id: str | None = None
    producer: str = "engram-client"
    correlation_id: UUID | None = None  # shared by the events of one user-visible operation

    def correlated(self, correlation_id: UUID | None = None) -> EventBuilder:
        """A builder whose events share ``correlation_id`` (a new one by default)."""
        return replace(self, correlation_id=correlation_id or uuid4())

    def envelope(self, event_type: type[E], payload: Any, **meta: Any) -> E:
        """Any event: ``payload`` (a model or a dict) in a filled envelope."""
        unknown = set(meta) - set(ENVELOPE_KEYS)
        if unknown:
            raise TypeError(f"not envelope fields: {sorted(unknown)}")
        tenant = meta.get("tenant_id") or self.tenant_id
        if tenant is None:
            raise ValueError("no tenant_id: give one here or to the builder (or client)")
        return event_type.model_validate(
            {
                "event_id": meta.get("event_id") or uuid4(),
                "occurred_at": meta.get("occurred_at") or datetime.now(UTC),
                "tenant_id": tenant,
                "producer": self.producer,
                "correlation_id": meta.get("correlation_id") or self.correlation_id,
                "causation_id": meta.get("causation_id"),
                "payload": payload,
            }
        )

    def _event(self, event_type: type[E], payload: dict[str, Any], given: dict[str, Any]) -> E:
        meta = {key: given.pop(key) for key in ENVELOPE_KEYS if key in given}
        return self.envelope(event_type, {**payload, **given}, **meta)

    # --- chat ----------------------------------------------------------------------------

    def conversation_created(
        self, conversation_id: UUID | None = None, **fields: Any
    ) -> ConversationCreated:
        """``chat.conversation.created`` (fields: title, user_id, agent_id, metadata)."""
        payload = {"conversation_id": conversation_id or uuid4()}
        return self._event(ConversationCreated, payload, fields)

    def conversation_archived(self, conversation_id: UUID, **fields: Any) -> ConversationArchived:
        """``chat.conversation.archived`` (fields: archived_by)."""
        return self._event(ConversationArchived, {"conversation_id": conversation_id}, fields)

    def message_created(
        self, conversation_id: UUID, role: str, content: str, **fields: Any
    ) -> MessageCreated:
        """``chat.message.created`` with a new ``message_id`` unless given (fields:
        message_id, session_id, content_type, metadata, parent_message_id,
        sender_user_id, sender_agent_id)."""
        payload = {
            "message_id": fields.pop("message_id", None) or uuid4(),
            "conversation_id": conversation_id,
            "role": role,
            "content": content,
        }
        return self._event(MessageCreated, payload, fields)

    def message_edited(
        self, message_id: UUID, content: str, edited_by: str, **fields: Any
    ) -> MessageEdited:
        """``chat.message.edited`` (fields: content_type, reason)."""
        payload = {"message_id": message_id, "content": content, "edited_by": edited_by}
        return self._event(MessageEdited, payload, fields)

    def message_deleted(self, message_id: UUID, deleted_by: str, **fields: Any) -> MessageDeleted:
        """``chat.message.deleted`` (fields: reason)."""
        payload = {"message_id": message_id, "deleted_by": deleted_by}
        return self._event(MessageDeleted, payload, fields)

    def session_started(
        self, conversation_id: UUID, session_id: UUID | None = None, **fields: Any
    ) -> SessionStarted:
        """``chat.session.started`` with a new ``session_id`` unless given (fields:
        user_id, agent_id, metadata)."""
        payload = {"session_id": session_id or uuid4(), "conversation_id": conversation_id}
        return self._event(SessionStarted, payload, fields)

    def session_ended(self, conversation_id: UUID, session_id: UUID, **fields: Any) -> SessionEnded:
        """``chat.session.ended`` (fields: user_id, agent_id, reason)."""
        payload = {"session_id": session_id, "conversation_id": conversation_id}
        return self._event(SessionEnded, payload, fields)

    # --- memory --------------------------------------------------------------------------

    def memory_write(
        self, agent_id: str, text: str, content: Content, importance: float, **fields: Any
    ) -> MemoryWrite:
        """``memory.write``: its ``memory_type`` follows from ``content``
        (EpisodicContent, SemanticContent, ProceduralContent or WorkingContent); a new
        ``memory_id`` unless given (fields: memory_id, user_id, conversation_id,
        decay_rate, expires_at, source_message_id, links)."""
        payload = {
            "memory_id": fields.pop("memory_id", None) or uuid4(),
            "memory_type": MEMORY_TYPES[type(content)],
            "agent_id": agent_id,
            "text": text,
            "content": content,
            "importance": importance,
        }
        return self._event(MemoryWrite, payload, fields)

    def memory_forget(self, requested_by: str, **fields: Any) -> MemoryForget:
        """``memory.forget``: ``memory_ids=[...]``, or a filter of ``agent_id`` /
        ``user_id`` (and ``conversation_id``); ``reason``."""
        return self._event(MemoryForget, {"requested_by": requested_by}, fields)

    def memory_consolidate(self, **fields: Any) -> MemoryConsolidate:
        """``memory.consolidate`` with a new ``job_id`` unless given (fields: agent_id,
        steps, dry_run, merge_threshold)."""
        payload = {"job_id": fields.pop("job_id", None) or uuid4()}
        return self._event(MemoryConsolidate, payload, fields)

    # --- knowledge -----------------------------------------------------------------------

    def knowledge_source_registered(
        self, agent_id: str, type: str, source_id: UUID | None = None, **fields: Any
    ) -> SourceRegistered:
        """``knowledge.source.registered`` with a new ``source_id`` unless given (fields:
        name, configuration; a file source's: ``{"file_ids": [...], "conversation_ids":
        [...]}``)."""
        payload = {"source_id": source_id or uuid4(), "agent_id": agent_id, "type": type}
        return self._event(SourceRegistered, payload, fields)

    def knowledge_source_updated(
        self, source_id: UUID, agent_id: str, type: str, **fields: Any
    ) -> SourceUpdated:
        """``knowledge.source.updated``: the source's whole new description."""
        payload = {"source_id": source_id, "agent_id": agent_id, "type": type}
        return self._event(SourceUpdated, payload, fields)

    def knowledge_source_removed(self, source_id: UUID, **fields: Any) -> SourceRemoved:
        """``knowledge.source.removed``: its documents, chunks and vectors go."""
        return self._event(SourceRemoved, {"source_id": source_id}, fields)

    def knowledge_document(
        self, source_id: UUID, document_id: str, text: str, **fields: Any
    ) -> DocumentUpserted:
        """``knowledge.document.upserted`` (fields: title, metadata)."""
        payload = {"source_id": source_id, "document_id": document_id, "text": text}
        return self._event(DocumentUpserted, payload, fields)

    # --- state ---------------------------------------------------------------------------

    def state_patch(
        self,
        user_id: str,
        agent_id: str,
        *,
        patch: list[dict[str, Any]] | None = None,
        merge_patch: dict[str, Any] | None = None,
        **fields: Any,
    ) -> StatePatch:
        """``state.patch``: exactly one of ``patch`` (RFC 6902) and ``merge_patch``
        (RFC 7386) (fields: expected_version, actor, trigger)."""
        payload = {
            "user_id": user_id,
            "agent_id": agent_id,
            "patch": patch,
            "merge_patch": merge_patch,
        }
        return self._event(StatePatch, payload, fields)

    def state_checkpoint(self, user_id: str, agent_id: str, **fields: Any) -> StateCheckpoint:
        """``state.checkpoint`` with a new ``checkpoint_id`` unless given (fields: label,
        checkpoint_type, retention, expires_at, metadata)."""
        payload = {
            "user_id": user_id,
            "agent_id": agent_id,
            "checkpoint_id": fields.pop("checkpoint_id", None) or uuid4(),
        }
        return self._event(StateCheckpoint, payload, fields)

    def state_restore(self, user_id: str, agent_id: str, **fields: Any) -> StateRestore:
        """``state.restore``: ``checkpoint_id=`` or ``version=`` (fields:
        expected_version, actor, reason)."""
        return self._event(StateRestore, {"user_id": user_id, "agent_id": agent_id}, fields)
