"""Applies a batch of CHAT events: thin dispatch from event type to the SQL that stores it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from contracts.chat import ChatEvent
from services.ingest import messages, repo, versions
from services.ingest.logic import (
    NEEDS_MESSAGE,
    batch_locks,
    conversation_refs,
    missing_reason,
    runs,
)
from services.runtime.db import Connection

# Message creation returns what it adds to conversations and sessions, moved at the end.
Store = Callable[[Connection, Sequence[Any]], Awaitable[messages.Activity | None]]

STORE: dict[str, Store] = {
    "chat.conversation.created": repo.create_conversations,
    "chat.conversation.updated": repo.update_conversations,
    "chat.conversation.archived": repo.archive_conversations,
    "chat.message.created": messages.create_messages,
    "chat.message.edited": versions.edit_messages,
    "chat.message.deleted": versions.delete_messages,
    "chat.file.uploaded": repo.store_files,
    "chat.session.started": repo.start_sessions,
    "chat.session.ended": repo.end_sessions,
}
# These create their conversation themselves (with the producer's fields).
OWNS_CONVERSATION = {
    "chat.conversation.created",
    "chat.conversation.updated",
    "chat.conversation.archived",
}


async def apply_chat_events(conn: Connection, events: Sequence[ChatEvent]) -> Mapping[UUID, str]:
    await repo.lock_batch(conn, batch_locks(events))
    retry: dict[UUID, str] = {}
    activity = messages.Activity()
    for kind, run in runs(events):
        ready = run
        if kind in NEEDS_MESSAGE:
            present = await messages.existing_messages(conn, run)  # type: ignore[arg-type]
            for event in run:
                message_id = event.payload.message_id  # type: ignore[union-attr]
                if message_id is not None and (event.tenant_id, message_id) not in present:
                    retry[event.event_id] = missing_reason(kind, message_id)
            ready = [e for e in run if e.event_id not in retry]
            if not ready:
                continue
        if kind not in OWNS_CONVERSATION:
            await repo.ensure_conversations(conn, conversation_refs(ready))
        added = await STORE[kind](conn, ready)
        if added is not None:
            activity.extend(added)
    await messages.bump_activity(conn, activity)
    return retry
