"""The embedder's public API: the ``engram.embedding.ready`` event and two queries.

Queries are core-NATS request/reply; the request is JSON of the request model and the
reply is JSON of either the reply model (``status: "ok"``) or ``contracts.errors.QueryError``
(``status: "error"``): ``EmbedAnswer`` / ``KnowledgeSearchAnswer`` are that union (the
published reply schemas); ``EMBED_REPLY`` / ``KNOWLEDGE_SEARCH_REPLY`` read a reply.
Vectors are unit length (cosine similarity is their dot product).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter, model_validator

from contracts.envelope import TENANT_PATTERN, Contract, Envelope
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

EMBEDDING_READY_SUBJECT = "engram.embedding.ready"
EMBED_SUBJECT = "query.embed"
KNOWLEDGE_SEARCH_SUBJECT = "query.knowledge.search"

MAX_EMBED_TEXTS = 256
MAX_EMBED_TEXT_CHARS = 100_000
MAX_QUERY_CHARS = 10_000
MAX_TOP_K = 100
MAX_DIMENSIONS = 16_000

MODEL_EX = "sentence-transformers/all-MiniLM-L6-v2"
HASH_EX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MEMORY_EX = "3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"
MESSAGE_EX = "9a3e7b52-1c4d-4f60-8b2a-3d5e6f708192"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"


class SourceType(StrEnum):
    message = "message"  # chat.message.created / edited
    file = "file"  # chat.file.uploaded (its extracted text)
    memory = "memory"  # memory.write
    document = "document"  # a document of an agent's knowledge source (contracts.knowledge)


class KnowledgeSource(StrEnum):
    """What knowledge search covers (memories are searched by the memory service)."""

    message = "message"
    file = "file"


# --- engram.embedding.ready ---------------------------------------------------------


class EmbeddingReadyPayload(Contract):
    source_type: SourceType = Field(
        description="What was embedded; today only memories are announced.",
        examples=["memory"],
    )
    source_id: UUID = Field(
        description="Id of what was embedded (the memory_id of a memory.write).",
        examples=[MEMORY_EX],
    )
    model_id: str = Field(
        min_length=1,
        max_length=300,
        description="Model that made the vector; vectors of different models never mix.",
        examples=[MODEL_EX],
    )
    dimensions: int = Field(
        # 3, as long as the example vector below: an example must validate.
        ge=1,
        le=MAX_DIMENSIONS,
        description="Length of the vector.",
        examples=[3],
    )
    vector: list[float] = Field(
        min_length=1,
        max_length=MAX_DIMENSIONS,
        description="The unit-length embedding of the text (for a text longer than the "
        "model's window: the normalized mean of its chunks' vectors).",
        examples=[[0.0123, -0.0456, 0.0789]],
    )
    content_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the UTF-8 text that was embedded.",
        examples=[HASH_EX],
    )
    chunks: int = Field(
        default=1, ge=1, description="How many chunks the text was embedded as.", examples=[1]
    )

    @model_validator(mode="after")
    def _length(self) -> EmbeddingReadyPayload:
        if len(self.vector) != self.dimensions:
            raise ValueError(f"vector has {len(self.vector)} values, not {self.dimensions}")
        return self


class EmbeddingReady(Envelope):
    """A vector for a memory (or a new model's vector after a model switch)."""

    type: Literal["engram.embedding.ready"] = "engram.embedding.ready"
    payload: EmbeddingReadyPayload


EMBEDDING_READY = TypeAdapter[EmbeddingReady](EmbeddingReady)
EMBEDDING_EVENT_TYPES: tuple[type[Envelope], ...] = (EmbeddingReady,)


# --- query.embed ---------------------------------------------------------------------


class EmbedRequest(Contract):
    """Texts to embed with the active model."""

    texts: list[Annotated[str, Field(max_length=MAX_EMBED_TEXT_CHARS)]] = Field(
        min_length=1,
        max_length=MAX_EMBED_TEXTS,
        description="Texts to embed (a text longer than the model's window is cut to it; "
        "see `truncated`).",
        examples=[["Find me a hotel near the river.", "quiet room, late check-in"]],
    )


class EmbedReply(Reply):
    """The vectors (a reply over the message limit is a `too_large` error instead: ask for
    fewer texts, `detail.fits` of them)."""

    model_id: str = Field(description="Model that made the vectors.", examples=[MODEL_EX])
    dimensions: int = Field(ge=1, description="Length of each vector.", examples=[384])
    vectors: list[list[float]] = Field(
        description="One unit-length vector per text, in request order.",
        examples=[[[0.0123, -0.0456, 0.0789]]],
    )
    truncated: list[bool] = Field(
        description="Per text: it was longer than the model's window and only its start "
        "was embedded.",
        examples=[[False, False]],
    )


class EmbedAnswer(RootModel[Annotated[EmbedReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.embed`: `EmbedReply` (`status: "ok"`) or `QueryError`
    (`status: "error"`), told apart by `status`."""


EMBED_REPLY = TypeAdapter[EmbedReply | QueryError](
    Annotated[EmbedReply | QueryError, ERROR_DISCRIMINATOR]
)


# --- query.knowledge.search ----------------------------------------------------------


class QueryEmbedding(Contract):
    """A query's vector made by the caller (with ``query.embed``), so that one text asked of
    several searches is embedded once. A search uses it only when ``model_id`` is the model
    it searches; otherwise it embeds the text itself (``query_vector: "replaced"``)."""

    model_id: str = Field(
        min_length=1,
        max_length=300,
        description="Model that made the vector (the `model_id` of the `query.embed` reply).",
        examples=[MODEL_EX],
    )
    vector: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=1,
        max_length=MAX_DIMENSIONS,
        description="The vector of the request's `text` by that model (`query.embed`'s, "
        "unit length). Of the model's length, or the request is `invalid`.",
        examples=[[0.0123, -0.0456, 0.0789]],
    )


class QueryVectorUse(StrEnum):
    """How a search got its query's vector."""

    embedded = "embedded"  # none supplied: the service embedded the text
    supplied = "supplied"  # the request's query_vector was used
    replaced = "replaced"  # one of another model was supplied: the text was embedded


QUERY_VECTOR_DESCRIPTION = (
    "The query's vector, already made with `query.embed` (saves embedding the text "
    "again). Used when its model is the one searched; another model's is ignored and the "
    "text embedded (`query_vector` in the reply says which); the right model with the "
    "wrong length is `invalid`."
)
QUERY_VECTOR_USE_DESCRIPTION = (
    "How the query's vector was got: `embedded` (from the text), `supplied` (the "
    "request's), `replaced` (the request's was of another model; the text was embedded); "
    "null when no vector was searched (full-text mode)."
)


class SearchMode(StrEnum):
    hybrid = "hybrid"  # vector similarity and full-text rank, fused (reciprocal rank fusion)
    vector = "vector"
    text = "text"


class KnowledgeFilters(Contract):
    """Every filter given must hold (AND); a list matches any of its values (OR)."""

    conversation_ids: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Only chunks of these conversations.",
        examples=[[CONVERSATION_EX]],
    )
    agent_ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Only chunks written by these agents (a message's sender_agent_id).",
        examples=[["travel-bot"]],
    )
    source_types: list[KnowledgeSource] | None = Field(
        default=None,
        min_length=1,
        description="Only these kinds of source; default: messages and files.",
        examples=[["message"]],
    )
    since: datetime | None = Field(
        default=None,
        description="Only sources created at or after this time (inclusive).",
        examples=["2026-11-01T00:00:00Z"],
    )
    until: datetime | None = Field(
        default=None,
        description="Only sources created before this time (exclusive).",
        examples=["2026-12-01T00:00:00Z"],
    )

    @model_validator(mode="after")
    def _range(self) -> KnowledgeFilters:
        for value in (self.since, self.until):
            if value is not None and value.tzinfo is None:
                raise ValueError("since/until need a time zone (e.g. a trailing Z)")
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class KnowledgeScope(Contract):
    """Search only the knowledge of one agent (its sources of contracts.knowledge): their
    documents and the uploads their file sources cover. Messages, and other agents'
    sources, are not searched."""

    agent_id: str = Field(
        min_length=1, max_length=200, description="The agent.", examples=["travel-bot"]
    )
    source_ids: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Only these sources of the agent (default: all of them).",
        examples=[["2c4f6a8b-1d3e-4f50-9a7b-8c9d0e1f2a3b"]],
    )


class KnowledgeSearchRequest(Contract):
    """Search one tenant's messages and files by meaning and by words."""

    tenant_id: str = Field(
        pattern=TENANT_PATTERN,
        description="Tenant to search; required, and nothing of another tenant is returned.",
        examples=["acme"],
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What to look for, in natural language.",
        examples=["which hotel did we pick in Lisbon?"],
    )
    top_k: int = Field(
        default=10, ge=1, le=MAX_TOP_K, description="Most hits to return.", examples=[10]
    )
    filters: KnowledgeFilters = Field(
        default_factory=KnowledgeFilters,
        description="Narrow the search.",
        examples=[{"conversation_ids": [CONVERSATION_EX]}],
    )
    mode: SearchMode = Field(
        default=SearchMode.hybrid,
        description="hybrid (default), vector only, or full-text only.",
        examples=["hybrid"],
    )
    query_vector: QueryEmbedding | None = Field(
        default=None,
        description=QUERY_VECTOR_DESCRIPTION,
        examples=[None],
    )
    scope: KnowledgeScope | None = Field(
        default=None,
        description="Search one agent's knowledge sources only (then `filters` other than "
        "since/until do not apply); default: the tenant's messages and files.",
        examples=[{"agent_id": "travel-bot"}],
    )


class SourceRef(Contract):
    """Where a hit comes from."""

    source_type: SourceType = Field(
        description="message or file; document in a scoped search.", examples=["message"]
    )
    source_id: UUID = Field(
        description="message_id or file_id (a document: an id derived from its source and "
        "document_id).",
        examples=[MESSAGE_EX],
    )
    chunk_index: int = Field(
        ge=0, description="Position of the chunk in its source, from 0.", examples=[0]
    )
    conversation_id: UUID | None = Field(
        default=None, description="Conversation of the source.", examples=[CONVERSATION_EX]
    )
    agent_id: str | None = Field(
        default=None, description="Agent that wrote it, if any.", examples=["travel-bot"]
    )
    occurred_at: datetime = Field(
        description="When the source was created.", examples=["2026-11-17T14:30:00Z"]
    )
    knowledge_source_id: UUID | None = Field(
        default=None,
        description="For a `document`: the knowledge source it belongs to.",
        examples=["2c4f6a8b-1d3e-4f50-9a7b-8c9d0e1f2a3b"],
    )
    document_id: str | None = Field(
        default=None,
        description="For a `document`: its document_id (an upload's: its file_id).",
        examples=["policies/cancellation.md"],
    )


class KnowledgeHit(Contract):
    source: SourceRef = Field(
        description="The chunk's source.",
        examples=[
            {
                "source_type": "message",
                "source_id": MESSAGE_EX,
                "chunk_index": 0,
                "occurred_at": "2026-11-17T14:30:00Z",
            }
        ],
    )
    text: str = Field(
        description="The chunk's text.", examples=["We booked Hotel Alfama, by the river."]
    )
    score: float = Field(
        description="Fused score (reciprocal rank fusion; higher is better; only "
        "comparable within one reply).",
        examples=[0.0325],
    )
    similarity: float | None = Field(
        default=None,
        description="Cosine similarity to the query, if among the vector candidates.",
        examples=[0.71],
    )
    vector_rank: int | None = Field(
        default=None, ge=1, description="Rank among the vector candidates.", examples=[1]
    )
    text_rank: int | None = Field(
        default=None, ge=1, description="Rank among the full-text candidates.", examples=[2]
    )


class KnowledgeSearchReply(Reply):
    model_id: str = Field(description="Model whose vectors were searched.", examples=[MODEL_EX])
    hits: list[KnowledgeHit] = Field(
        description="Best first; at most top_k.",
        examples=[[]],
    )
    omitted: int = Field(
        default=0,
        ge=0,
        description="Hits left out (the lowest ranked) because the reply would not fit in "
        "one NATS message; 0 when every hit up to top_k is here.",
        examples=[0],
    )
    query_vector: QueryVectorUse | None = Field(
        default=QueryVectorUse.embedded,
        description=QUERY_VECTOR_USE_DESCRIPTION,
        examples=["supplied"],
    )


class KnowledgeSearchAnswer(
    RootModel[Annotated[KnowledgeSearchReply | QueryError, ERROR_DISCRIMINATOR]]
):
    """The reply to `query.knowledge.search`: `KnowledgeSearchReply` (`status: "ok"`) or
    `QueryError` (`status: "error"`), told apart by `status`."""


KNOWLEDGE_SEARCH_REPLY = TypeAdapter[KnowledgeSearchReply | QueryError](
    Annotated[KnowledgeSearchReply | QueryError, ERROR_DISCRIMINATOR]
)

QUERY_CONTRACTS: tuple[type[Contract], ...] = (
    EmbedRequest,
    EmbedReply,
    KnowledgeSearchRequest,
    KnowledgeSearchReply,
    QueryError,
)
