"""Knowledge sources per agent (seed 004 ``agent_knowledge_sources``), kept and indexed by
the embedder from events on the KNOWLEDGE stream (published by agents and admin tools):

* ``knowledge.source.registered`` / ``.updated`` / ``.removed``: a source of one agent,
  with its type (file, folder, url, database, api) and its configuration;
* ``knowledge.document.upserted``: one text document of a source (a re-upsert of the
  same ``document_id`` replaces its chunks).

engram reads nothing over the network or from disks: a ``file`` source indexes the chat
uploads its configuration names (``FileSourceConfig``) and the documents sent to it; a
url / database / api / folder source is recorded as ``failed`` with the reason until a
connector sends its documents (then ``ready``). ``query.knowledge.sources`` lists an
agent's sources with their status; ``query.knowledge.search`` with a ``scope`` searches
only the chunks of an agent's sources (docs/knowledge.md).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter, model_validator

from contracts.chat import Metadata
from contracts.envelope import TENANT_PATTERN, Contract, Envelope
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

KNOWLEDGE_SOURCES_SUBJECT = "query.knowledge.sources"
AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$"
MAX_DOCUMENT_CHARS = 500_000
MAX_LISTED_IDS = 1000

SOURCE_EX = "2c4f6a8b-1d3e-4f50-9a7b-8c9d0e1f2a3b"
FILE_EX = "7d2e9f10-3a4b-4c5d-8e6f-a0b1c2d3e4f5"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"


class KnowledgeSourceType(StrEnum):
    file = "file"  # chat uploads (FileSourceConfig) and documents sent to it
    folder = "folder"
    url = "url"
    database = "database"
    api = "api"


# What engram reads itself; the other types need a connector that sends their documents.
OFFLINE_TYPES = frozenset({KnowledgeSourceType.file})


class SourceStatus(StrEnum):
    pending = "pending"  # registered, nothing indexed yet
    syncing = "syncing"  # chunks stored, some still waiting for their vectors
    ready = "ready"  # every chunk searchable by meaning and by words
    failed = "failed"  # engram cannot read it: see status_reason


class FileSourceConfig(Contract):
    """The configuration of a ``file`` source: which chat uploads (``chat.file.uploaded``)
    it covers. An upload is covered when its file_id or its conversation is listed, whether
    it was uploaded before or after the source was registered."""

    file_ids: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_LISTED_IDS,
        description="Uploads covered by id.",
        examples=[[FILE_EX]],
    )
    conversation_ids: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_LISTED_IDS,
        description="Every upload of these conversations is covered.",
        examples=[[CONVERSATION_EX]],
    )


class SourcePayload(Contract):
    source_id: UUID = Field(
        description="Id of the source, chosen by the producer, unique per tenant.",
        examples=[SOURCE_EX],
    )
    agent_id: str = Field(
        pattern=AGENT_PATTERN,
        description="The agent whose knowledge it is (the scope of a scoped search).",
        examples=["travel-bot"],
    )
    type: KnowledgeSourceType = Field(
        description="file, folder, url, database or api.", examples=["file"]
    )
    name: str | None = Field(
        default=None, max_length=300, description="A label for people.", examples=["Policies"]
    )
    configuration: Metadata = Field(
        default_factory=dict,
        description="How to read it. For `file`: a FileSourceConfig (`file_ids`, "
        "`conversation_ids`); other types are recorded as given.",
        examples=[{"conversation_ids": [CONVERSATION_EX]}],
    )

    @model_validator(mode="after")
    def _file_config(self) -> SourcePayload:
        if self.type is KnowledgeSourceType.file:
            FileSourceConfig.model_validate(self.configuration)
        return self

    def file_config(self) -> FileSourceConfig:
        return FileSourceConfig.model_validate(self.configuration)


class SourceRemovedPayload(Contract):
    source_id: UUID = Field(description="The source to remove.", examples=[SOURCE_EX])


class DocumentPayload(Contract):
    source_id: UUID = Field(description="The source it belongs to.", examples=[SOURCE_EX])
    document_id: str = Field(
        min_length=1,
        max_length=500,
        description="Id of the document within its source (a path, a URL, a row key); an "
        "upsert of the same id replaces the document.",
        examples=["policies/cancellation.md"],
    )
    title: str | None = Field(
        default=None, max_length=1000, description="Its title.", examples=["Cancellation"]
    )
    text: str = Field(
        max_length=MAX_DOCUMENT_CHARS,
        description="Its plain text (empty: the document has no text and no chunks).",
        examples=["Bookings can be cancelled free of charge up to 48 hours before arrival."],
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="Anything else about it, kept as given.",
        examples=[{"language": "en"}],
    )


class SourceRegistered(Envelope):
    """A new knowledge source of an agent."""

    type: Literal["knowledge.source.registered"] = "knowledge.source.registered"
    payload: SourcePayload


class SourceUpdated(Envelope):
    """A source's new name, type or configuration (the whole of it, not a patch)."""

    type: Literal["knowledge.source.updated"] = "knowledge.source.updated"
    payload: SourcePayload


class SourceRemoved(Envelope):
    """Remove a source: its documents, chunks and vectors go, for good."""

    type: Literal["knowledge.source.removed"] = "knowledge.source.removed"
    payload: SourceRemovedPayload


class DocumentUpserted(Envelope):
    """One text document of a source, new or replacing the one with its document_id."""

    type: Literal["knowledge.document.upserted"] = "knowledge.document.upserted"
    payload: DocumentPayload


KnowledgeEvent = SourceRegistered | SourceUpdated | SourceRemoved | DocumentUpserted
KNOWLEDGE_EVENT_TYPES: tuple[type[Envelope], ...] = (
    SourceRegistered,
    SourceUpdated,
    SourceRemoved,
    DocumentUpserted,
)
KNOWLEDGE_EVENT = TypeAdapter[KnowledgeEvent](
    Annotated[KnowledgeEvent, Field(discriminator="type")]
)


# --- query.knowledge.sources ----------------------------------------------------------


class KnowledgeSourcesRequest(Contract):
    """An agent's knowledge sources (removed ones are not listed)."""

    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])
    agent_id: str = Field(pattern=AGENT_PATTERN, description="Agent.", examples=["travel-bot"])


class KnowledgeSourceInfo(Contract):
    source_id: UUID = Field(description="Id of the source.", examples=[SOURCE_EX])
    agent_id: str = Field(description="Its agent.", examples=["travel-bot"])
    type: KnowledgeSourceType = Field(description="Its type.", examples=["file"])
    name: str | None = Field(default=None, description="Its label.", examples=["Policies"])
    configuration: dict[str, Any] = Field(
        description="As registered or last updated.", examples=[{"file_ids": [FILE_EX]}]
    )
    status: SourceStatus = Field(description="Where its indexing is.", examples=["ready"])
    status_reason: str | None = Field(
        default=None,
        description="Why it is failed (or pending).",
        examples=["url sources are not read by engram (no network): send their documents"],
    )
    documents: int = Field(ge=0, description="Documents indexed.", examples=[3])
    chunk_count: int = Field(ge=0, description="Chunks stored.", examples=[12])
    chunks_waiting: int = Field(
        ge=0, description="Chunks still waiting for their vector.", examples=[0]
    )
    registered_at: datetime = Field(
        description="occurred_at of its registration.", examples=["2026-12-01T09:00:00Z"]
    )
    last_synced_at: datetime | None = Field(
        default=None,
        description="When its chunks last changed.",
        examples=["2026-12-01T09:00:01Z"],
    )


class KnowledgeSourcesReply(Reply):
    sources: list[KnowledgeSourceInfo] = Field(
        description="Oldest registration first.", examples=[[]]
    )


class KnowledgeSourcesAnswer(
    RootModel[Annotated[KnowledgeSourcesReply | QueryError, ERROR_DISCRIMINATOR]]
):
    """The reply to `query.knowledge.sources`: `KnowledgeSourcesReply` (`status: "ok"`) or
    `QueryError` (`status: "error"`), told apart by `status`."""


KNOWLEDGE_SOURCES_REPLY = TypeAdapter[KnowledgeSourcesReply | QueryError](
    Annotated[KnowledgeSourcesReply | QueryError, ERROR_DISCRIMINATOR]
)
