"""Pure functions of the ingest service: ordering a batch and shaping rows."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, groupby
from typing import Any
from uuid import UUID

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


def missing_reason(kind: str, message_id: object) -> str:
    return f"message {message_id} is not stored yet ({kind} arrived before chat.message.created)"


# These need their message to exist; if it has not arrived yet they are retried later.
NEEDS_MESSAGE = {"chat.message.edited", "chat.message.deleted", "chat.file.uploaded"}


# The rows a batch of message creations moves in a conversation (its session's counters,
# its last message time) are locked in key order at the end of the batch, so two such
# batches can commit at once. Any other event may lock rows of its conversation (or
# message, or file) in any order, so a batch holding one locks that key exclusively,
# before anything else. Keys are ints of the two-int pg_advisory_xact_lock, so they never
# meet another service's one-bigint locks; two ids sharing a key only wait for each other.
# A key is the id's alone, whatever its tenant: rows are keyed by (tenant, id), and two
# tenants using one id are one more case of two ids sharing a key.
SHARED_BY = {"chat.message.created": "conversation_id"}
KEYED_BY = ("conversation_id", "message_id", "file_id")


def lock_key(value: UUID) -> int:
    key = value.int & 0xFFFFFFFF
    return key - (1 << 32) if key >= 1 << 31 else key


def batch_locks(events: Sequence[Envelope]) -> list[tuple[int, bool]]:
    """(key, exclusive) of every lock a batch takes first, in key order."""
    exclusive: dict[int, bool] = {}
    for e in events:
        shared = SHARED_BY.get(e.type)
        if shared is not None:
            exclusive.setdefault(lock_key(getattr(e.payload, shared)), False)
            continue
        for name in KEYED_BY:
            value = getattr(e.payload, name, None)
            if value is not None:
                exclusive[lock_key(value)] = True
    return sorted(exclusive.items())


def must_wait(earlier: Sequence[ChatEvent], later: Sequence[ChatEvent]) -> bool:
    """Whether the later batch may start only once the earlier one has committed: they
    share a key one of them holds alone (whichever locked first would win, not stream
    order), or the later one edits, deletes or links a file to a message the earlier one
    creates (it would find nothing yet, retry, and might reorder the edits)."""
    if all(e.type in SHARED_BY for e in chain(earlier, later)):
        return False  # new messages only (the bulk of the stream): shared locks, no edits
    first, then = dict(batch_locks(earlier)), dict(batch_locks(later))
    if any(first[key] or alone for key, alone in then.items() if key in first):
        return True
    wanted = {
        (e.tenant_id, message_id)
        for e in later
        if e.type in NEEDS_MESSAGE
        and (message_id := getattr(e.payload, "message_id", None)) is not None
    }
    return bool(wanted) and any(
        isinstance(e, MessageCreated) and (e.tenant_id, e.payload.message_id) in wanted
        for e in earlier
    )
