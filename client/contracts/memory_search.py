"""``query.memory.search``: the memories of one agent that matter now.

The score of a memory is ``w_similarity * similarity + w_importance * importance +
w_recency * recency`` (weights in the reply; defaults 0.6 / 0.25 / 0.15), where
similarity is the cosine similarity of its vector to the query's, importance is its
current (decayed) importance, and recency halves every ``recency_half_life_days`` since it
was last accessed (or written). Each hit carries the three parts. Replies are
``MemorySearchReply`` or ``contracts.errors.QueryError`` (``MemorySearchAnswer``, the
published reply schema): read them with ``MEMORY_SEARCH_REPLY``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter

from contracts.embedding import (
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    QUERY_VECTOR_DESCRIPTION,
    QUERY_VECTOR_USE_DESCRIPTION,
    QueryEmbedding,
    QueryVectorUse,
)
from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply
from contracts.memory import MemoryType

MEMORY_SEARCH_SUBJECT = "query.memory.search"
MEMORY_EX = "3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"


class MemoryFilters(Contract):
    """Every filter given must hold."""

    types: list[MemoryType] | None = Field(
        default=None,
        min_length=1,
        description="Only these memory types.",
        examples=[["semantic", "episodic"]],
    )
    min_importance: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Only memories at least this important.",
        examples=[0.3],
    )
    user_id: str | None = Field(
        default=None,
        max_length=200,
        description="Only memories about this user.",
        examples=["u-123"],
    )
    conversation_id: UUID | None = Field(
        default=None,
        description="Only memories formed in this conversation.",
        examples=[CONVERSATION_EX],
    )
    include_superseded: bool = Field(
        default=False,
        description="Also return memories replaced by a consolidation (never forgotten ones).",
        examples=[False],
    )


class MemorySearchRequest(Contract):
    tenant_id: str = Field(
        pattern=TENANT_PATTERN, description="Tenant; required.", examples=["acme"]
    )
    agent_id: str = Field(
        min_length=1, max_length=200, description="Agent; required.", examples=["travel-bot"]
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What the agent is thinking about now.",
        examples=["where is the user staying in Lisbon?"],
    )
    top_k: int = Field(
        default=10, ge=1, le=MAX_TOP_K, description="Most memories to return.", examples=[10]
    )
    filters: MemoryFilters = Field(
        default_factory=MemoryFilters, description="Narrow the search.", examples=[{}]
    )
    query_vector: QueryEmbedding | None = Field(
        default=None, description=QUERY_VECTOR_DESCRIPTION, examples=[None]
    )


class ScoreParts(Contract):
    similarity: float = Field(description="Cosine similarity to the query, -1..1.", examples=[0.74])
    importance: float = Field(ge=0, le=1, description="Current importance.", examples=[0.7])
    recency: float = Field(
        ge=0, le=1, description="1 when just accessed; halves every half-life.", examples=[0.93]
    )


class MemoryHit(Contract):
    memory_id: UUID = Field(description="The memory.", examples=[MEMORY_EX])
    memory_type: MemoryType = Field(description="Its type.", examples=["episodic"])
    status: Literal["active", "superseded"] = Field(description="Its status.", examples=["active"])
    text: str = Field(description="Its text.", examples=["The user booked Hotel Alfama."])
    content: dict[str, Any] = Field(
        description="Its typed content.", examples=[{"concept": "Alfama", "definition": "..."}]
    )
    user_id: str | None = Field(default=None, description="User it is about.", examples=["u-123"])
    conversation_id: UUID | None = Field(
        default=None, description="Where it was formed.", examples=[None]
    )
    access_count: int = Field(
        ge=0, description="Times returned by a search before this one.", examples=[3]
    )
    last_accessed_at: datetime | None = Field(
        default=None, description="Last returned by a search.", examples=[None]
    )
    score: float = Field(
        description="Weighted sum of the parts; higher is better.", examples=[0.71]
    )
    parts: ScoreParts = Field(
        description="What the score is made of.",
        examples=[{"similarity": 0.74, "importance": 0.7, "recency": 0.93}],
    )


class ScoreWeights(Contract):
    similarity: float = Field(examples=[0.6], description="Weight of similarity.")
    importance: float = Field(examples=[0.25], description="Weight of importance.")
    recency: float = Field(examples=[0.15], description="Weight of recency.")
    recency_half_life_days: float = Field(examples=[30.0], description="Days for recency to halve.")


class MemorySearchReply(Reply):
    """The hits, whole: when they would not fit in one NATS message the lowest ranked are
    left out (`omitted`); when even the best one alone does not fit, the reply is a
    `too_large` error."""

    model_id: str = Field(
        description="Model of the vectors compared.",
        examples=["sentence-transformers/all-MiniLM-L6-v2"],
    )
    weights: ScoreWeights = Field(
        description="How scores were combined.",
        examples=[
            {"similarity": 0.6, "importance": 0.25, "recency": 0.15, "recency_half_life_days": 30}
        ],
    )
    hits: list[MemoryHit] = Field(description="Best first; at most top_k.", examples=[[]])
    pending: int = Field(
        ge=0,
        default=0,
        description="Matching memories not searchable yet (no vector yet).",
        examples=[0],
    )
    omitted: int = Field(
        ge=0,
        default=0,
        description="Hits left out (the lowest ranked) because the reply "
        "would not fit in one NATS message; they are not counted as "
        "accessed.",
        examples=[0],
    )
    query_vector: QueryVectorUse = Field(
        default=QueryVectorUse.embedded,
        description=QUERY_VECTOR_USE_DESCRIPTION,
        examples=["supplied"],
    )


class MemorySearchAnswer(RootModel[Annotated[MemorySearchReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.memory.search`: `MemorySearchReply` (`status: "ok"`) or
    `QueryError` (`status: "error"`), told apart by `status`."""


MEMORY_SEARCH_REPLY = TypeAdapter[MemorySearchReply | QueryError](
    Annotated[MemorySearchReply | QueryError, ERROR_DISCRIMINATOR]
)
