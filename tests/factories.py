"""Builders of valid CHAT events for tests, with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from contracts import chat

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _env(tenant: str, at: datetime | None) -> dict[str, Any]:
    return {"tenant_id": tenant, "producer": "tests", "occurred_at": at or T0}


def conversation(cid: UUID, tenant: str = "acme", at: datetime | None = None,
                 **payload: Any) -> chat.ConversationCreated:
    return chat.ConversationCreated(
        **_env(tenant, at), payload=chat.ConversationCreatedPayload(conversation_id=cid, **payload))


def message(cid: UUID, mid: UUID | None = None, tenant: str = "acme", content: str = "hello",
            at: datetime | None = None, **payload: Any) -> chat.MessageCreated:
    payload.setdefault("role", "user")
    return chat.MessageCreated(**_env(tenant, at), payload=chat.MessageCreatedPayload(
        message_id=mid or uuid4(), conversation_id=cid, content=content, **payload))


def edit(mid: UUID, content: str, tenant: str = "acme", at: datetime | None = None,
         **payload: Any) -> chat.MessageEdited:
    payload.setdefault("edited_by", "u-1")
    return chat.MessageEdited(**_env(tenant, at or T0 + timedelta(minutes=1)),
                              payload=chat.MessageEditedPayload(message_id=mid, content=content,
                                                                **payload))


def delete(mid: UUID, tenant: str = "acme", **payload: Any) -> chat.MessageDeleted:
    payload.setdefault("deleted_by", "u-1")
    return chat.MessageDeleted(**_env(tenant, T0 + timedelta(minutes=2)),
                               payload=chat.MessageDeletedPayload(message_id=mid, **payload))
