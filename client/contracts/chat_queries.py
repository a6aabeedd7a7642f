"""``query.chat.history`` and ``query.chat.conversations``: request and reply contracts
(core NATS request/reply, answered by the ingest service; every request is scoped by
tenant).

Each reply is the query's result (``status: "ok"``) or ``contracts.errors.QueryError``
(``status: "error"``); ``ChatHistoryAnswer`` / ``ChatConversationsAnswer`` are those unions
(the published reply schemas) and ``CHAT_HISTORY_REPLY`` / ``CHAT_CONVERSATIONS_REPLY``
read a reply. Pages are keyset pages: ``next_cursor`` is an opaque string to send back as
``cursor`` for the next page, valid for the same listing (conversation or owner, and
order) only; a cursor that is not one is an ``invalid`` error naming ``cursor``. A
conversation of another tenant is ``not_found``, exactly as a missing one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter, model_validator

from contracts.chat import CONVERSATION_EX, MESSAGE_EX, SESSION_EX, ContentType, Role
from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

MAX_HISTORY_LIMIT = 500
MAX_CONVERSATIONS_LIMIT = 200
MAX_CURSOR_CHARS = 1000
CURSOR_EX = "eyJrIjoiaCIsIm8iOiJuIn0"
TIME_EX = "2026-11-22T10:15:00Z"


class Order(StrEnum):
    newest_first = "newest_first"
    oldest_first = "oldest_first"


class ConversationStatus(StrEnum):
    active = "active"
    archived = "archived"


def _cursor_field() -> Any:
    return Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        description="Opaque: the `next_cursor` of the previous page (same listing, same "
        "order); absent for the first page. Anything else is an `invalid` error.",
        examples=[None],
    )


class ConversationSummary(Contract):
    """One conversation with its counters."""

    conversation_id: UUID = Field(description="Its id.", examples=[CONVERSATION_EX])
    title: str | None = Field(default=None, description="Title.", examples=["Trip to Lisbon"])
    user_id: str | None = Field(default=None, description="Owning user.", examples=["u-123"])
    agent_id: str | None = Field(default=None, description="Agent.", examples=["travel-bot"])
    status: ConversationStatus = Field(description="active or archived.", examples=["active"])
    placeholder: bool = Field(
        description="True while only events naming it have arrived, not its "
        "chat.conversation.created (title, user and agent unknown yet).",
        examples=[False],
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="As the producer set it.", examples=[{"channel": "web"}]
    )
    created_at: datetime = Field(description="Created (producer's time).", examples=[TIME_EX])
    last_message_at: datetime | None = Field(
        default=None, description="Newest message's time; null: no message.", examples=[TIME_EX]
    )
    last_activity_at: datetime = Field(
        description="`last_message_at`, or `created_at` with no message: the order of "
        "`query.chat.conversations`.",
        examples=[TIME_EX],
    )
    archived_at: datetime | None = Field(default=None, description="Archived.", examples=[None])
    message_count: int = Field(
        description="Messages created in it (soft-deleted ones too; edits add none).",
        examples=[42],
    )
    total_tokens: int = Field(
        description="Sum of its messages' `metadata.tokens`, as created.", examples=[5120]
    )
    session_count: int = Field(description="Sessions of it.", examples=[3])
    active_sessions: int = Field(description="Sessions not ended.", examples=[1])
    file_count: int = Field(description="Files shared in it.", examples=[2])


# ---- query.chat.history -------------------------------------------------------------


class ChatHistoryRequest(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])
    conversation_id: UUID = Field(
        description="The conversation to read.", examples=[CONVERSATION_EX]
    )
    order: Order = Field(
        default=Order.newest_first,
        description="By creation time (producer's `occurred_at`, then message id).",
        examples=["newest_first"],
    )
    limit: int = Field(
        default=50, ge=1, le=MAX_HISTORY_LIMIT, description="Page size.", examples=[50]
    )
    cursor: str | None = _cursor_field()
    include_versions: bool = Field(
        default=False,
        description="Every version of each message (1 = as created, then each edit).",
        examples=[False],
    )
    include_deleted: bool = Field(
        default=False,
        description="Soft-deleted messages too (with who deleted them and why); by default "
        "they are left out.",
        examples=[False],
    )


class MessageVersionView(Contract):
    version: int = Field(description="1 = as created, then each edit in order.", examples=[2])
    content: str = Field(description="The content of this version.", examples=["Hi there"])
    content_type: ContentType = Field(description="How to read it.", examples=["text"])
    edited_by: str | None = Field(default=None, description="Who edited.", examples=["u-123"])
    reason: str | None = Field(default=None, description="Why.", examples=["typo"])
    event_id: UUID = Field(
        description="The event that made it.", examples=["0b9a8f3e-1d2c-4b5a-8e7f-6a5b4c3d2e1f"]
    )
    created_at: datetime = Field(description="When (producer's time).", examples=[TIME_EX])


class MessageView(Contract):
    message_id: UUID = Field(description="Its id.", examples=[MESSAGE_EX])
    session_id: UUID | None = Field(
        default=None, description="Session it counted towards.", examples=[SESSION_EX]
    )
    parent_message_id: UUID | None = Field(
        default=None, description="Message it answers.", examples=[None]
    )
    role: Role = Field(description="Who speaks.", examples=["user"])
    content: str = Field(description="Current content (the highest version).", examples=["Hi"])
    content_type: ContentType = Field(description="How to read `content`.", examples=["text"])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="As created.", examples=[{"tokens": 5}]
    )
    tokens: int | None = Field(default=None, description="metadata.tokens.", examples=[5])
    model: str | None = Field(default=None, description="Model that wrote it.", examples=[None])
    sender_user_id: str | None = Field(default=None, description="Sender.", examples=["u-123"])
    sender_agent_id: str | None = Field(default=None, description="Sender.", examples=[None])
    version: int = Field(description="Current version (1: never edited).", examples=[1])
    created_at: datetime = Field(description="Created (producer's time).", examples=[TIME_EX])
    edited_at: datetime | None = Field(default=None, description="Last edit.", examples=[None])
    deleted: bool = Field(
        default=False, description="Soft-deleted (only with include_deleted).", examples=[False]
    )
    deleted_at: datetime | None = Field(default=None, description="Deleted.", examples=[None])
    deleted_by: str | None = Field(default=None, description="Who deleted.", examples=[None])
    delete_reason: str | None = Field(default=None, description="Why.", examples=[None])
    versions: list[MessageVersionView] | None = Field(
        default=None,
        description="Every version, oldest first (only with include_versions).",
        examples=[None],
    )


class ChatHistoryReply(Reply):
    """A page of one conversation's messages."""

    conversation: ConversationSummary = Field(
        description="The conversation, with its counters.", examples=[None]
    )
    order: Order = Field(description="As asked.", examples=["newest_first"])
    items: list[MessageView] = Field(
        default_factory=list, description="The page, in `order`.", examples=[[]]
    )
    next_cursor: str | None = Field(
        default=None,
        description="`cursor` of the next page; null on the last page.",
        examples=[CURSOR_EX],
    )
    size_limited: bool = Field(
        default=False,
        description="The page holds fewer than `limit` items because more would not fit in "
        "one NATS message; continue from `next_cursor`.",
        examples=[False],
    )


class ChatHistoryAnswer(RootModel[Annotated[ChatHistoryReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.chat.history`: `ChatHistoryReply` (`status: "ok"`) or
    `QueryError` (`status: "error"`: not_found — no such conversation in this tenant —,
    invalid — a broken request or `cursor` —, too_large — one message alone does not fit:
    `detail.next_cursor` skips it —, unavailable, internal)."""


# ---- query.chat.conversations -------------------------------------------------------


class ChatConversationsRequest(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])
    user_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="This user's.", examples=["u-123"]
    )
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="This agent's (with user_id: both must match).",
        examples=[None],
    )
    status: ConversationStatus | None = Field(
        default=None, description="Only active or only archived (default: both).", examples=[None]
    )
    limit: int = Field(
        default=20, ge=1, le=MAX_CONVERSATIONS_LIMIT, description="Page size.", examples=[20]
    )
    cursor: str | None = _cursor_field()

    @model_validator(mode="after")
    def _owner(self) -> ChatConversationsRequest:
        if self.user_id is None and self.agent_id is None:
            raise ValueError("give user_id, agent_id or both")
        return self


class ChatConversationsReply(Reply):
    """A page of conversations, most recently active first."""

    items: list[ConversationSummary] = Field(
        default_factory=list,
        description="By `last_activity_at`, newest first (then conversation id).",
        examples=[[]],
    )
    next_cursor: str | None = Field(
        default=None,
        description="`cursor` of the next page; null on the last page.",
        examples=[CURSOR_EX],
    )
    size_limited: bool = Field(
        default=False,
        description="Fewer than `limit` items because more would not fit in one message.",
        examples=[False],
    )


class ChatConversationsAnswer(
    RootModel[Annotated[ChatConversationsReply | QueryError, ERROR_DISCRIMINATOR]]
):
    """The reply to `query.chat.conversations`: `ChatConversationsReply` (`status: "ok"`)
    or `QueryError` (`status: "error"`: invalid — a broken request or `cursor` —,
    unavailable, internal). No conversation is an empty page, not an error."""


CHAT_HISTORY_REPLY = TypeAdapter[ChatHistoryReply | QueryError](
    Annotated[ChatHistoryReply | QueryError, ERROR_DISCRIMINATOR]
)
CHAT_CONVERSATIONS_REPLY = TypeAdapter[ChatConversationsReply | QueryError](
    Annotated[ChatConversationsReply | QueryError, ERROR_DISCRIMINATOR]
)
