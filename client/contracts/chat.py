"""CHAT events: what upstream chat services publish. The subject is the type."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, TypeAdapter, model_validator

from contracts.envelope import (
    MAX_METADATA_DEPTH,
    Contract,
    Envelope,
    NulRule,
    shallow_metadata,
)

MAX_CONTENT_CHARS = 4_000_000
MAX_TITLE_CHARS = 500

# Example ids, so the generated JSON Schema and AsyncAPI documents show valid values.
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"
MESSAGE_EX = "9a3e7b52-1c4d-4f60-8b2a-3d5e6f708192"
SESSION_EX = "51e5a0d4-7f3b-4c2a-9e18-6b7c8d9e0f12"
FILE_EX = "c0ffee00-1d2e-4f3a-8b4c-5d6e7f809a1b"


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# A free-form JSON object, at most MAX_METADATA_DEPTH levels deep.
Metadata = Annotated[dict[str, Any], AfterValidator(shallow_metadata)]
METADATA_RULE = f"Free-form JSON object, at most {MAX_METADATA_DEPTH} levels deep."


class ChatEnvelope(Envelope):
    """Base of the CHAT events: stray U+0000 is replaced, not rejected."""

    nul_rule = NulRule.substitute


class Role(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class ContentType(StrEnum):
    text = "text"
    structured = "structured"
    multimodal = "multimodal"
    tool_result = "tool_result"


class MessageMetadata(Contract):
    """Known metadata of a message; anything else the producer adds is kept as is (at most
    32 levels deep)."""

    model_config = Contract.model_config | {"extra": "allow"}

    tokens: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Token count of the content.", examples=[42]
    )
    model: str | None = Field(
        default=None, max_length=200, description="Model that wrote it.", examples=["gpt-4.1"]
    )
    latency_ms: float | None = Field(
        default=None, ge=0, description="Generation latency.", examples=[812.5]
    )

    @model_validator(mode="after")
    def _shallow(self) -> MessageMetadata:
        if self.model_extra:
            shallow_metadata(self.model_extra)
        return self


class ConversationCreatedPayload(Contract):
    conversation_id: UUID = Field(description="Chosen by the producer.", examples=[CONVERSATION_EX])
    title: str | None = Field(
        default=None,
        max_length=MAX_TITLE_CHARS,
        examples=["Trip to Lisbon"],
        description="Human title of the conversation.",
    )
    user_id: str | None = Field(
        default=None, max_length=200, description="Owning user.", examples=["u-123"]
    )
    agent_id: str | None = Field(
        default=None, max_length=200, description="Agent taking part.", examples=["travel-bot"]
    )
    metadata: Metadata = Field(
        default_factory=dict, description=METADATA_RULE, examples=[{"channel": "web"}]
    )


class ConversationUpdatedPayload(Contract):
    conversation_id: UUID = Field(description="Conversation to change.", examples=[CONVERSATION_EX])
    title: str | None = Field(
        default=None,
        max_length=MAX_TITLE_CHARS,
        description="New title, if changed.",
        examples=["Lisbon, 3 days"],
    )
    metadata: Metadata | None = Field(
        default=None,
        description=f"Keys merged into the metadata; at most {MAX_METADATA_DEPTH} levels deep.",
        examples=[{"pinned": True}],
    )


class ConversationArchivedPayload(Contract):
    conversation_id: UUID = Field(
        description="Conversation to archive.", examples=[CONVERSATION_EX]
    )
    archived_by: str | None = Field(
        default=None, max_length=200, examples=["u-123"], description="Who archived it."
    )


class MessageCreatedPayload(Contract):
    message_id: UUID = Field(description="Chosen by the producer.", examples=[MESSAGE_EX])
    conversation_id: UUID = Field(
        description="Conversation it belongs to.", examples=[CONVERSATION_EX]
    )
    session_id: UUID | None = Field(
        default=None,
        description="Session it counts towards; default: the conversation's active session.",
        examples=[None],
    )
    role: Role = Field(description="Who speaks.", examples=["user"])
    content: str = Field(
        max_length=MAX_CONTENT_CHARS,
        description="The text (or serialized structured content).",
        examples=["Find me a hotel near the river."],
    )
    content_type: ContentType = Field(
        default=ContentType.text, examples=["text"], description="How to read `content`."
    )
    metadata: MessageMetadata = Field(
        default_factory=MessageMetadata, description="Tokens, model, latency, and any extra keys."
    )
    parent_message_id: UUID | None = Field(
        default=None, description="Message this one answers or branches from.", examples=[None]
    )
    sender_user_id: str | None = Field(
        default=None,
        max_length=200,
        examples=["u-123"],
        description="Sending user, for user messages.",
    )
    sender_agent_id: str | None = Field(
        default=None,
        max_length=200,
        examples=["travel-bot"],
        description="Sending agent, for assistant/tool messages.",
    )


class MessageEditedPayload(Contract):
    message_id: UUID = Field(description="Message to edit.", examples=[MESSAGE_EX])
    content: str = Field(
        max_length=MAX_CONTENT_CHARS,
        description="The new content.",
        examples=["Find me a hotel near the old town."],
    )
    content_type: ContentType | None = Field(
        default=None, description="New content type, if it changes.", examples=[None]
    )
    edited_by: str = Field(
        min_length=1, max_length=200, description="Who edited.", examples=["u-123"]
    )
    reason: str | None = Field(
        default=None, max_length=1000, examples=["typo"], description="Why it was edited."
    )


class MessageDeletedPayload(Contract):
    message_id: UUID = Field(description="Message to delete (soft).", examples=[MESSAGE_EX])
    deleted_by: str = Field(
        min_length=1, max_length=200, examples=["u-123"], description="Who deleted it."
    )
    reason: str | None = Field(
        default=None, max_length=1000, examples=["user request"], description="Why."
    )


class FileUploadedPayload(Contract):
    file_id: UUID = Field(description="Chosen by the producer.", examples=[FILE_EX])
    conversation_id: UUID | None = Field(
        default=None, examples=[CONVERSATION_EX], description="Conversation it was shared in."
    )
    message_id: UUID | None = Field(
        default=None, examples=[MESSAGE_EX], description="Message it is attached to."
    )
    uploaded_by: str | None = Field(
        default=None, max_length=200, examples=["u-123"], description="Uploader."
    )
    filename: str = Field(
        min_length=1, max_length=1000, examples=["itinerary.pdf"], description="Original file name."
    )
    mime_type: str = Field(max_length=200, examples=["application/pdf"], description="Media type.")
    size_bytes: int = Field(ge=0, le=INT64_MAX, examples=[48213], description="Size of the file.")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        examples=[None],
        description="Hex SHA-256 of the bytes.",
    )
    storage_uri: str | None = Field(
        default=None,
        max_length=2000,
        examples=["s3://bucket/itinerary.pdf"],
        description="Where the bytes live; engram stores no bytes.",
    )
    extracted_text: str | None = Field(
        default=None,
        max_length=MAX_CONTENT_CHARS,
        examples=["Day 1: Alfama..."],
        description="Text extracted upstream, for search.",
    )
    metadata: Metadata = Field(
        default_factory=dict, examples=[{"pages": 3}], description=METADATA_RULE
    )


class SessionStartedPayload(Contract):
    session_id: UUID = Field(description="Chosen by the producer.", examples=[SESSION_EX])
    conversation_id: UUID = Field(
        description="Conversation of the session.", examples=[CONVERSATION_EX]
    )
    user_id: str | None = Field(
        default=None, max_length=200, examples=["u-123"], description="User in the session."
    )
    agent_id: str | None = Field(
        default=None, max_length=200, examples=["travel-bot"], description="Agent in the session."
    )
    metadata: Metadata = Field(
        default_factory=dict, examples=[{"client": "ios"}], description=METADATA_RULE
    )


class SessionEndedPayload(Contract):
    session_id: UUID = Field(description="Session that ended.", examples=[SESSION_EX])
    conversation_id: UUID = Field(
        description="Conversation of the session.", examples=[CONVERSATION_EX]
    )
    user_id: str | None = Field(
        default=None, max_length=200, examples=["u-123"], description="User in the session."
    )
    agent_id: str | None = Field(
        default=None, max_length=200, examples=["travel-bot"], description="Agent in the session."
    )
    reason: str | None = Field(
        default=None, max_length=200, examples=["timeout"], description="Why it ended."
    )


class ConversationCreated(ChatEnvelope):
    type: Literal["chat.conversation.created"] = "chat.conversation.created"
    payload: ConversationCreatedPayload


class ConversationUpdated(ChatEnvelope):
    type: Literal["chat.conversation.updated"] = "chat.conversation.updated"
    payload: ConversationUpdatedPayload


class ConversationArchived(ChatEnvelope):
    type: Literal["chat.conversation.archived"] = "chat.conversation.archived"
    payload: ConversationArchivedPayload


class MessageCreated(ChatEnvelope):
    type: Literal["chat.message.created"] = "chat.message.created"
    payload: MessageCreatedPayload


class MessageEdited(ChatEnvelope):
    type: Literal["chat.message.edited"] = "chat.message.edited"
    payload: MessageEditedPayload


class MessageDeleted(ChatEnvelope):
    type: Literal["chat.message.deleted"] = "chat.message.deleted"
    payload: MessageDeletedPayload


class FileUploaded(ChatEnvelope):
    type: Literal["chat.file.uploaded"] = "chat.file.uploaded"
    payload: FileUploadedPayload


class SessionStarted(ChatEnvelope):
    type: Literal["chat.session.started"] = "chat.session.started"
    payload: SessionStartedPayload


class SessionEnded(ChatEnvelope):
    type: Literal["chat.session.ended"] = "chat.session.ended"
    payload: SessionEndedPayload


ChatEvent = Annotated[
    ConversationCreated
    | ConversationUpdated
    | ConversationArchived
    | MessageCreated
    | MessageEdited
    | MessageDeleted
    | FileUploaded
    | SessionStarted
    | SessionEnded,
    Field(discriminator="type"),
]
CHAT_EVENT = TypeAdapter[ChatEvent](ChatEvent)

CHAT_EVENT_TYPES: tuple[type[Envelope], ...] = (
    ConversationCreated,
    ConversationUpdated,
    ConversationArchived,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    FileUploaded,
    SessionStarted,
    SessionEnded,
)
