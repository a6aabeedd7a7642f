"""Pure functions of the ingest service: ordering a batch and shaping rows."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

from contracts.chat import ChatEvent, MessageCreated
from contracts.envelope import Envelope

MESSAGE_COLUMNS = (
    "event_id",
    "message_id",
    "tenant_id",
    "conversation_id",
    "session_id",
    "parent_message_id",
    "role",
    "content",
    "content_type",
    "metadata",
    "tokens",
    "model",
    "sender_user_id",
    "sender_agent_id",
    "created_at",
)


def runs(events: Sequence[ChatEvent]) -> list[tuple[str, list[ChatEvent]]]:
    """Consecutive events of one type, in delivery order.

    Each run is applied with one set-based statement; keeping runs in order keeps the
    batch's order between types (a message created, then edited, in one batch).
    """
    return [(kind, list(group)) for kind, group in groupby(events, key=lambda e: e.type)]


def message_columns(events: Sequence[MessageCreated]) -> list[list[Any]]:
    """Column arrays for one ``unnest`` insert of messages (the hot path: no per-row SQL)."""
    cols: list[list[Any]] = [[] for _ in MESSAGE_COLUMNS]
    for e in events:
        p = e.payload
        meta = p.metadata.model_dump(exclude_none=True)
        row = (
            e.event_id,
            p.message_id,
            e.tenant_id,
            p.conversation_id,
            p.session_id,
            p.parent_message_id,
            p.role.value,
            p.content,
            p.content_type.value,
            meta,
            p.metadata.tokens,
            p.metadata.model,
            p.sender_user_id,
            p.sender_agent_id,
            e.occurred_at,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def conversation_refs(events: Sequence[Envelope]) -> list[tuple[Any, str, Any]]:
    """(conversation_id, tenant_id, occurred_at) of every conversation the events name."""
    refs = []
    for e in events:
        conversation_id = getattr(e.payload, "conversation_id", None)
        if conversation_id is not None:
            refs.append((conversation_id, e.tenant_id, e.occurred_at))
    return refs


def owned_ids(events: Sequence[Envelope], column: str) -> list[tuple[Any, str]]:
    """(id, tenant_id) of the row each event writes, by the payload field naming it."""
    return [(getattr(e.payload, column), e.tenant_id) for e in events]


def missing_reason(kind: str, message_id: object) -> str:
    return f"message {message_id} is not stored yet ({kind} arrived before chat.message.created)"
