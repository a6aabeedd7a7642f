"""Builders of valid CHAT events for tests, with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from contracts import chat

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _env(tenant: str, at: datetime | None) -> dict[str, Any]:
    return {"event_id": uuid4(), "tenant_id": tenant, "producer": "tests", "occurred_at": at or T0}


def conversation(
    cid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.ConversationCreated:
    return chat.ConversationCreated(
        **_env(tenant, at), payload=chat.ConversationCreatedPayload(conversation_id=cid, **payload)
    )


def message(
    cid: UUID,
    mid: UUID | None = None,
    tenant: str = "acme",
    content: str = "hello",
    at: datetime | None = None,
    **payload: Any,
) -> chat.MessageCreated:
    payload.setdefault("role", "user")
    return chat.MessageCreated(
        **_env(tenant, at),
        payload=chat.MessageCreatedPayload(
            message_id=mid or uuid4(), conversation_id=cid, content=content, **payload
        ),
    )


def edit(
    mid: UUID, content: str, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.MessageEdited:
    payload.setdefault("edited_by", "u-1")
    return chat.MessageEdited(
        **_env(tenant, at or T0 + timedelta(minutes=1)),
        payload=chat.MessageEditedPayload(message_id=mid, content=content, **payload),
    )


def delete(
    mid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.MessageDeleted:
    payload.setdefault("deleted_by", "u-1")
    return chat.MessageDeleted(
        **_env(tenant, at or T0 + timedelta(minutes=2)),
        payload=chat.MessageDeletedPayload(message_id=mid, **payload),
    )


# More builders: conversation changes, files and sessions (same defaults as above).


def conversation_update(
    cid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.ConversationUpdated:
    return chat.ConversationUpdated(
        **_env(tenant, at or T0 + timedelta(minutes=5)),
        payload=chat.ConversationUpdatedPayload(conversation_id=cid, **payload),
    )


def conversation_archive(
    cid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.ConversationArchived:
    return chat.ConversationArchived(
        **_env(tenant, at or T0 + timedelta(minutes=10)),
        payload=chat.ConversationArchivedPayload(conversation_id=cid, **payload),
    )


def file(
    fid: UUID | None = None, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.FileUploaded:
    payload.setdefault("filename", "itinerary.pdf")
    payload.setdefault("mime_type", "application/pdf")
    payload.setdefault("size_bytes", 48_213)
    return chat.FileUploaded(
        **_env(tenant, at or T0 + timedelta(minutes=3)),
        payload=chat.FileUploadedPayload(file_id=fid or uuid4(), **payload),
    )


def session_start(
    sid: UUID, cid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.SessionStarted:
    return chat.SessionStarted(
        **_env(tenant, at),
        payload=chat.SessionStartedPayload(session_id=sid, conversation_id=cid, **payload),
    )


def session_end(
    sid: UUID, cid: UUID, tenant: str = "acme", at: datetime | None = None, **payload: Any
) -> chat.SessionEnded:
    return chat.SessionEnded(
        **_env(tenant, at or T0 + timedelta(hours=1)),
        payload=chat.SessionEndedPayload(session_id=sid, conversation_id=cid, **payload),
    )


def as_json(event: Any) -> dict[str, Any]:
    """The event as the JSON object on the wire, to break it on purpose."""
    data: dict[str, Any] = event.model_dump(mode="json")
    return data
