"""Knowledge sources, the pure part: what an event does to a source given its stored row,
a source's status from its counts, which uploads a file source covers, and the derived
key of a document.

Order rules (a source is keyed by tenant and its producer-chosen source_id):

* registered: creates the source; a second registration of a live source is an update
  (the newer occurred_at wins); a registration of a removed source is ignored (removal
  is for good, so a late or redelivered registration does not revive it);
* updated: replaces name, type and configuration when newer than what is stored; an
  update of a source not registered yet is retried (it arrived before its registration)
  and, after the consumer's max_deliver, dead-lettered with that reason;
* removed: removes the source's documents, chunks and vectors and leaves a tombstone; a
  second removal is a no-op; a removal of a source never registered is retried, then
  dead-lettered, like an update;
* document upserted: into a live source it replaces that document (the newer
  occurred_at wins, see plan.py); into a removed source it is dropped (acked, no effect);
  into a source not registered yet it is retried, then dead-lettered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.knowledge import (
    OFFLINE_TYPES,
    FileSourceConfig,
    KnowledgeSourceType,
    SourceStatus,
)

# Document ids of knowledge sources (uuid5 of source and document_id in this namespace).
DOCUMENT_NAMESPACE = uuid.UUID("0c7f4e2a-5b1d-4a3e-9f60-7d8e9a0b1c2d")


def document_uuid(knowledge_source_id: UUID, document_id: str) -> UUID:
    """The embedder's source id of a document: stable, so a re-upsert meets its row."""
    return uuid.uuid5(DOCUMENT_NAMESPACE, f"{knowledge_source_id}/{document_id}")


@dataclass(frozen=True)
class StoredSource:
    """A row of ``embedder.knowledge_sources`` as the rules need it."""

    agent_id: str
    type: KnowledgeSourceType
    configuration: dict[str, Any]
    changed_at: datetime
    removed: bool


class Action(StrEnum):
    create = "create"
    update = "update"  # name, type, configuration
    remove = "remove"
    document = "document"
    ignore = "ignore"  # acked without effect
    retry = "retry"  # nak, then the DLQ after max_deliver


def decide(kind: str, at: datetime, stored: StoredSource | None) -> Action:
    """What a ``knowledge.<kind>`` event (source.registered, source.updated,
    source.removed, document.upserted) does, given its source's stored row."""
    if stored is None:
        return Action.create if kind == "source.registered" else Action.retry
    if stored.removed:
        return Action.ignore
    if kind == "source.removed":
        return Action.remove
    if kind == "document.upserted":
        return Action.document
    return Action.update if at >= stored.changed_at else Action.ignore


def retry_reason(kind: str, source_id: UUID) -> str:
    return (
        f"knowledge source {source_id} is not registered yet (the {kind} arrived before its "
        "knowledge.source.registered); retrying"
    )


def status_of(type_: KnowledgeSourceType, documents: int) -> tuple[SourceStatus, str | None]:
    """The stored status of a source with ``documents`` indexed. A source with documents
    is ready (``query.knowledge.sources`` shows syncing while chunks wait for vectors);
    without, a file source waits for an upload or a document it covers, and any other
    type failed: engram reads nothing over the network or from disks."""
    if documents > 0:
        return SourceStatus.ready, None
    if type_ in OFFLINE_TYPES:
        return SourceStatus.pending, "no covered upload or document yet"
    return SourceStatus.failed, (
        f"unsupported: engram does not read {type_.value} sources itself (no network or "
        "file-system access); send their text with knowledge.document.upserted"
    )


def shown_status(stored: SourceStatus, waiting: int) -> SourceStatus:
    """The status a query shows: syncing while some chunks still wait for a vector."""
    return SourceStatus.syncing if stored is SourceStatus.ready and waiting else stored


def file_config(type_: KnowledgeSourceType, configuration: dict[str, Any]) -> FileSourceConfig:
    """What uploads a source covers (none unless it is a file source)."""
    if type_ is not KnowledgeSourceType.file:
        return FileSourceConfig()
    return FileSourceConfig.model_validate(configuration)


def covers(config: FileSourceConfig, file_id: UUID, conversation_id: UUID | None) -> bool:
    return file_id in config.file_ids or (
        conversation_id is not None and conversation_id in config.conversation_ids
    )
