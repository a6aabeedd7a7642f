"""MEMORY events: what agents publish about their memories. The subject is the type.

``memory.write`` creates or replaces one memory. The memory service owns memories (their
importance, decay, access counts, expiry and links); the embedder reads the same event
to embed ``text`` and answers with ``engram.embedding.ready`` (contracts/embedding.py).

A memory has one of four types, each with its own content:

| memory_type | content                      | for example                                  |
|-------------|------------------------------|----------------------------------------------|
| episodic    | event + temporal             | "On Tuesday the user booked a room in Alfama" |
| semantic    | concept + definition         | "Alfama: the old Moorish quarter of Lisbon"   |
| procedural  | skill + steps                | "Book a hotel: 1. search 2. compare 3. pay"   |
| working     | items + capacity             | the 7 facts the agent keeps in view right now |

The payload is discriminated by ``memory_type``: a semantic memory must carry semantic
content, and the JSON Schema shows each variant.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter, field_validator, model_validator

from contracts.envelope import Contract, Envelope

MAX_MEMORY_TEXT_CHARS = 100_000
MAX_FIELD_CHARS = 20_000
MAX_LINKS = 100
MAX_ITEMS = 1_000
MAX_STEPS = 200

MEMORY_EX = "3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"
OTHER_MEMORY_EX = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"
MESSAGE_EX = "9a3e7b52-1c4d-4f60-8b2a-3d5e6f708192"


class MemoryType(StrEnum):
    episodic = "episodic"
    semantic = "semantic"
    procedural = "procedural"
    working = "working"


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("timestamps need a time zone (e.g. a trailing Z)")
    return value


class Temporal(Contract):
    """When an episode happened: a moment, or a span from ``occurred_at`` to ``ended_at``."""

    occurred_at: datetime = Field(
        description="When the episode happened (or began), with a time zone.",
        examples=["2026-11-17T14:30:00Z"],
    )
    ended_at: datetime | None = Field(
        default=None,
        description="When it ended, for an episode that lasted; not before occurred_at.",
        examples=["2026-11-17T15:10:00Z"],
    )
    description: str | None = Field(
        default=None,
        max_length=500,
        description="The time as the conversation put it.",
        examples=["last Tuesday afternoon"],
    )

    _check_zone = field_validator("occurred_at", "ended_at")(_aware)

    @model_validator(mode="after")
    def _ordered(self) -> Temporal:
        if self.ended_at is not None and self.ended_at < self.occurred_at:
            raise ValueError("ended_at is before occurred_at")
        return self


class EpisodicContent(Contract):
    """Something that happened, and when."""

    event: str = Field(
        min_length=1,
        max_length=MAX_FIELD_CHARS,
        description="What happened.",
        examples=["The user booked a room at Hotel Alfama for 3 nights."],
    )
    temporal: Temporal = Field(
        description="When it happened.",
        examples=[{"occurred_at": "2026-11-17T14:30:00Z", "description": "last Tuesday"}],
    )


class SemanticContent(Contract):
    """A fact: a concept and what it means."""

    concept: str = Field(
        min_length=1, max_length=500, description="The concept.", examples=["Alfama"]
    )
    definition: str = Field(
        min_length=1,
        max_length=MAX_FIELD_CHARS,
        description="What the concept is or means.",
        examples=["The oldest district of Lisbon, on the hill below the castle."],
    )


class ProceduralContent(Contract):
    """How to do something: a skill and its ordered steps."""

    skill: str = Field(
        min_length=1, max_length=500, description="The skill.", examples=["Book a hotel"]
    )
    steps: list[Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)]] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The steps, in order.",
        examples=[["Search by district", "Compare three offers", "Pay with the saved card"]],
    )


class WorkingContent(Contract):
    """What the agent keeps in view now: at most ``capacity`` items."""

    items: list[Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)]] = Field(
        max_length=MAX_ITEMS,
        description="The items, most relevant first; no more than capacity.",
        examples=[["user prefers quiet rooms", "budget 150 EUR/night", "arrives Friday"]],
    )
    capacity: int = Field(
        ge=1, le=MAX_ITEMS, description="How many items the working memory holds.", examples=[7]
    )

    @model_validator(mode="after")
    def _fits(self) -> WorkingContent:
        if len(self.items) > self.capacity:
            raise ValueError(f"{len(self.items)} items exceed the capacity of {self.capacity}")
        return self


class MemoryLink(Contract):
    """A typed edge from this memory to another memory of the same tenant."""

    memory_id: UUID = Field(description="The linked memory.", examples=[OTHER_MEMORY_EX])
    relation: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="How they relate, in snake_case (related, supports, contradicts, "
        "supersedes, derived_from, part_of, ...).",
        examples=["derived_from"],
    )
    weight: float | None = Field(
        default=None, ge=0, le=1, description="Strength of the link, 0-1.", examples=[0.8]
    )


class _MemoryWriteBase(Contract):
    memory_id: UUID = Field(
        description="Chosen by the producer; writing an existing id replaces that memory.",
        examples=[MEMORY_EX],
    )
    agent_id: str = Field(
        min_length=1,
        max_length=200,
        description="Agent whose memory it is.",
        examples=["travel-bot"],
    )
    user_id: str | None = Field(
        default=None, max_length=200, description="User it is about, if any.", examples=["u-123"]
    )
    conversation_id: UUID | None = Field(
        default=None,
        description="Conversation it was formed in, if any.",
        examples=[CONVERSATION_EX],
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_MEMORY_TEXT_CHARS,
        description="The memory as plain text: what is embedded and searched.",
        examples=["The user booked Hotel Alfama in Lisbon for 3 nights from 2026-11-20."],
    )
    importance: float = Field(
        ge=0, le=1, description="How much it matters, 0 (trivial) to 1 (vital).", examples=[0.7]
    )
    decay_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Fraction of its importance lost per day without access; default: "
        "the memory service's rate for the type.",
        examples=[0.05],
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When it must be forgotten, whatever its importance.",
        examples=["2027-01-01T00:00:00Z"],
    )
    source_message_id: UUID | None = Field(
        default=None,
        description="The chat message it was formed from, if any.",
        examples=[MESSAGE_EX],
    )
    links: list[MemoryLink] = Field(
        default_factory=list,
        max_length=MAX_LINKS,
        description="Edges to other memories of the same tenant.",
        examples=[[{"memory_id": OTHER_MEMORY_EX, "relation": "derived_from"}]],
    )

    _check_zone = field_validator("expires_at")(_aware)


class EpisodicMemory(_MemoryWriteBase):
    memory_type: Literal["episodic"] = Field(
        description="The memory's type.", examples=["episodic"]
    )
    content: EpisodicContent = Field(
        description="Event and when it happened.",
        examples=[
            {"event": "Booked Hotel Alfama", "temporal": {"occurred_at": "2026-11-17T14:30:00Z"}}
        ],
    )


class SemanticMemory(_MemoryWriteBase):
    memory_type: Literal["semantic"] = Field(
        description="The memory's type.", examples=["semantic"]
    )
    content: SemanticContent = Field(
        description="Concept and definition.",
        examples=[{"concept": "Alfama", "definition": "The oldest district of Lisbon."}],
    )


class ProceduralMemory(_MemoryWriteBase):
    memory_type: Literal["procedural"] = Field(
        description="The memory's type.", examples=["procedural"]
    )
    content: ProceduralContent = Field(
        description="Skill and steps.",
        examples=[{"skill": "Book a hotel", "steps": ["Search", "Compare", "Pay"]}],
    )


class WorkingMemory(_MemoryWriteBase):
    memory_type: Literal["working"] = Field(description="The memory's type.", examples=["working"])
    content: WorkingContent = Field(
        description="Items and capacity.",
        examples=[{"items": ["budget 150 EUR/night"], "capacity": 7}],
    )


MemoryWritePayload = Annotated[
    EpisodicMemory | SemanticMemory | ProceduralMemory | WorkingMemory,
    Field(discriminator="memory_type"),
]


class MemoryWrite(Envelope):
    """Create or replace one memory of an agent (the memory service stores it; the
    embedder embeds its text and publishes engram.embedding.ready)."""

    type: Literal["memory.write"] = "memory.write"
    payload: MemoryWritePayload


MEMORY_WRITE = TypeAdapter[MemoryWrite](MemoryWrite)
MEMORY_EVENT_TYPES: tuple[type[Envelope], ...] = (MemoryWrite,)
