"""Typed rows that cross the memory service's modules: what the handlers and the
consolidation steps hand to the SQL modules (``repo``, ``repo_jobs``) and what those
return. Field names are the column names of the ``memory`` schema.

``content`` fields are ``dict[str, Any]``: a memory's content is JSON (a jsonb column,
validated by the contracts on the way in), so its values have no one static type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import numpy as np
from numpy.typing import NDArray

from contracts.memory_jobs import StepReport

# --- handlers -> repo ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A ``memory.write`` as the row it upserts (``repo.MEMORY_COLUMNS``)."""

    tenant_id: str
    memory_id: UUID
    agent_id: str
    user_id: str | None
    conversation_id: UUID | None
    memory_type: str
    text: str
    content: dict[str, Any]  # JSON
    content_hash: bytes
    tokens: int
    importance: float
    decay_rate: float
    expires_at: datetime | None
    source_message_id: UUID | None
    origin: str
    written_at: datetime


class MemoryKey(NamedTuple):
    tenant_id: str
    memory_id: UUID


class LinkTarget(NamedTuple):
    """A link of a written memory: to ``target_id``, as ``relation``."""

    target_id: UUID
    relation: str
    weight: float | None


class Link(NamedTuple):
    memory_id: UUID
    target_id: UUID
    relation: str
    weight: float | None


class VectorUpdate(NamedTuple):
    """An ``engram.embedding.ready`` vector for the memory whose text has ``content_hash``."""

    tenant_id: str
    memory_id: UUID
    content_hash: bytes
    model_id: str
    vector: NDArray[np.float32]


# --- sessions ------------------------------------------------------------------------


class Note(NamedTuple):
    """A chat message of an open session (``memory.session_notes``)."""

    tenant_id: str
    message_id: UUID
    conversation_id: UUID
    session_id: UUID | None
    role: str
    text: str
    occurred_at: datetime


class SessionStart(NamedTuple):
    session_id: UUID
    conversation_id: UUID
    agent_id: str | None
    user_id: str | None
    started_at: datetime


class SeenSession(NamedTuple):
    """What a session's summary reads of its start, when it was seen."""

    agent_id: str | None
    user_id: str | None
    started_at: datetime | None


class SessionKey(NamedTuple):
    tenant_id: str
    session_id: UUID


class EndedSession(NamedTuple):
    """A session whose summary is written: its end event (as JSON values) and its start."""

    ended_event: Mapping[str, Any]
    seen: SeenSession


class SaidNote(NamedTuple):
    """What a session's summary reads of one of its notes."""

    role: str
    text: str
    occurred_at: datetime


# --- consolidation jobs --------------------------------------------------------------


class JobKey(NamedTuple):
    tenant_id: str
    job_id: UUID
    agent_id: str


@dataclass(frozen=True, slots=True)
class JobRow:
    """A claimed ``memory.jobs`` row; the runner replaces it as its progress changes."""

    tenant_id: str
    job_id: UUID
    agent_id: str
    event_id: UUID  # the memory.consolidate event (causation)
    steps: tuple[str, ...]
    steps_done: tuple[str, ...]
    dry_run: bool
    merge_threshold: float | None
    clock: datetime
    attempts: int
    active_before: int | None
    report: tuple[StepReport, ...]

    @property
    def key(self) -> JobKey:
        return JobKey(self.tenant_id, self.job_id, self.agent_id)


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """An active memory as the steps read it (``repo_steps.LOAD_ACTIVE``), or one a step
    derives (``repo_steps.DERIVED_COLUMNS``)."""

    memory_id: UUID
    memory_type: str
    user_id: str | None
    conversation_id: UUID | None
    text: str
    content: dict[str, Any]  # JSON
    content_hash: bytes
    tokens: int
    importance: float
    decay_rate: float
    access_count: int
    last_accessed_at: datetime | None
    decayed_at: datetime
    expires_at: datetime | None
    source_message_id: UUID | None
    origin: str
    written_at: datetime
    model_id: str
    embedding: NDArray[np.float32]


class Supersession(NamedTuple):
    """The source stays, marked superseded by its successor."""

    source_id: UUID
    successor_id: UUID


class Consolidation(NamedTuple):
    """A ``memory.consolidations`` row of a step."""

    source_ids: list[UUID]
    result_id: UUID | None
    tokens_saved: int


class Expiring(NamedTuple):
    """An active memory past its ``expires_at``."""

    memory_id: UUID
    tokens: int


class WorkingMemory(NamedTuple):
    memory_id: UUID
    tokens: int
    last_used: datetime  # the later of its last access and its write
