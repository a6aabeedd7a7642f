"""``query.context.build`` and ``query.context.snapshot``: what the next model call of an
agent should see, assembled under a token budget by the context service.

A build asks the other services in parallel (``query.chat.history``,
``query.memory.search`` twice — memories, and the session summaries of the conversation
—, ``query.knowledge.search``, ``query.state.get``), each with its own timeout, and
returns ordered segments: the system text (inline segments with ``{variables}`` filled
from the request), the agent's state, summaries of older turns, memories, knowledge
chunks, and the recent messages. The sum of the segments' ``tokens`` never exceeds
``token_budget``; each segment's ``tokens`` is the count of its own ``text`` with the
request's tokenizer. A source that fails or does not answer in time gives its segment
``status: "missing"`` with the reason, and the rest is returned. Every build is
recorded (a snapshot) and ``query.context.snapshot`` returns it.

Replies are the result (``status: "ok"``) or ``contracts.errors.QueryError``;
``CONTEXT_BUILD_REPLY`` / ``CONTEXT_SNAPSHOT_REPLY`` read them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter, model_validator

from contracts.embedding import MAX_QUERY_CHARS, MAX_TOP_K
from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

CONTEXT_BUILD_SUBJECT = "query.context.build"
CONTEXT_SNAPSHOT_SUBJECT = "query.context.snapshot"
# A reply is one NATS message (1 MiB by default): ~4 bytes of text per token.
MAX_BUDGET = 200_000
MAX_SEGMENT_CHARS = 100_000
DEFAULT_TOKENIZER = "cl100k_base"
TOKENIZERS = ("cl100k_base", "o200k_base", "minilm")
SNAPSHOT_EX = "7c1d9e2a-4b3f-4a6e-9d8c-2f1e0a9b8c7d"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"


class SegmentKind(StrEnum):
    """In the order the segments come in a reply."""

    system = "system"  # inline segments (variables filled): instructions, persona
    state = "state"  # the agent's state for this user (query.state.get), as JSON
    summary = "summary"  # summaries of the conversation's earlier sessions (memory)
    memories = "memories"  # the agent's memories that matter now (query.memory.search)
    knowledge = "knowledge"  # chunks of messages and files (query.knowledge.search)
    messages = "messages"  # the conversation's recent messages (query.chat.history)


SOURCE_KINDS = (
    SegmentKind.state,
    SegmentKind.summary,
    SegmentKind.memories,
    SegmentKind.knowledge,
    SegmentKind.messages,
)


class Shares(Contract):
    """How the budget left after the system text is split among the sources (relative
    weights: they are normalized over the sources asked for). A source that needs less
    than its share leaves the rest to the others."""

    state: float = Field(default=0.10, ge=0, le=1, description="State.", examples=[0.1])
    summary: float = Field(default=0.10, ge=0, le=1, description="Summaries.", examples=[0.1])
    memories: float = Field(default=0.20, ge=0, le=1, description="Memories.", examples=[0.2])
    knowledge: float = Field(default=0.20, ge=0, le=1, description="Knowledge.", examples=[0.2])
    messages: float = Field(
        default=0.40, ge=0, le=1, description="Recent messages.", examples=[0.4]
    )


class ContextOptions(Contract):
    sources: list[SegmentKind] = Field(
        default_factory=lambda: list(SOURCE_KINDS),
        description="Which sources to ask (`system` is always included when given).",
        examples=[["state", "memories", "messages"]],
    )
    shares: Shares = Field(
        default_factory=Shares, description="Budget shares per source.", examples=[{}]
    )
    tokenizer: Literal["cl100k_base", "o200k_base", "minilm"] | None = Field(
        default=None,
        description="Tokenizer that counts and cuts: `cl100k_base` (GPT-4 / GPT-3.5 BPE), "
        "`o200k_base` (GPT-4o BPE), `minilm` (the embedding model's WordPiece). Default: "
        "the service's CONTEXT_TOKENIZER (cl100k_base). All ship in installed packages.",
        examples=["cl100k_base"],
    )
    memory_top_k: int = Field(
        default=20, ge=1, le=MAX_TOP_K, description="Memories asked for.", examples=[20]
    )
    knowledge_top_k: int = Field(
        default=20, ge=1, le=MAX_TOP_K, description="Knowledge chunks asked for.", examples=[20]
    )
    knowledge_scope: Literal["tenant", "agent"] = Field(
        default="tenant",
        description="What the knowledge segment searches: `tenant`, the tenant's messages "
        "and files (every conversation); `agent`, the agent's knowledge sources only (their "
        "documents and the uploads their file sources cover: query.knowledge.search with "
        "`scope`).",
        examples=["agent"],
    )
    knowledge_source_ids: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="With `knowledge_scope` `agent`: only these of the agent's sources "
        "(default: all of them).",
        examples=[["2c4f6a8b-1d3e-4f50-9a7b-8c9d0e1f2a3b"]],
    )
    history_limit: int = Field(
        default=50, ge=1, le=500, description="Recent messages asked for.", examples=[50]
    )
    timeout_ms: int | None = Field(
        default=None,
        ge=10,
        le=30_000,
        description="Longest wait for any one source (default: the service's per-source "
        "timeouts); a source slower than this is `missing`.",
        examples=[200],
    )

    @model_validator(mode="after")
    def _sources_of_the_agent(self) -> ContextOptions:
        if self.knowledge_source_ids and self.knowledge_scope != "agent":
            raise ValueError("knowledge_source_ids needs knowledge_scope 'agent'")
        return self


class InlineSegment(Contract):
    text: str = Field(
        min_length=1,
        max_length=MAX_SEGMENT_CHARS,
        description="System text; `{name}` is replaced by the request's variable `name` "
        "(and `{agent_id}`, `{user_id}`, `{query}`); `{{` and `}}` are literal braces.",
        examples=["You are {agent_id}, a travel assistant. Today is {today}."],
    )
    name: str | None = Field(
        default=None, max_length=200, description="A label (its source id).", examples=["persona"]
    )


class ContextBuildRequest(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])
    agent_id: str = Field(
        min_length=1, max_length=200, description="The agent.", examples=["travel-bot"]
    )
    user_id: str = Field(min_length=1, max_length=200, description="The user.", examples=["u-123"])
    conversation_id: UUID | None = Field(
        default=None,
        description="The conversation (its messages and session summaries); none: those "
        "two sources are left out.",
        examples=[CONVERSATION_EX],
    )
    message_id: UUID | None = Field(
        default=None,
        description="The message this context answers, recorded with the snapshot so it "
        "can be found by message.",
        examples=[None],
    )
    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What the model is asked now: memories and knowledge are searched by it.",
        examples=["which hotel did we book in Lisbon?"],
    )
    token_budget: int = Field(
        ge=1, le=MAX_BUDGET, description="Most tokens of all segments together.", examples=[4000]
    )
    segments: list[InlineSegment] = Field(
        default_factory=list,
        max_length=50,
        description="System text, first in the context (cut last when over budget).",
        examples=[[{"text": "You are {agent_id}.", "name": "persona"}]],
    )
    template: str | None = Field(
        default=None,
        max_length=200,
        description="A named template (`context.template.put`): its segments come first, "
        "before `segments`; `not_found` when the tenant has none of that name.",
        examples=["travel-assistant"],
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        description="Values of the segments' `{name}` placeholders (over the template's defaults).",
        examples=[{"today": "2026-12-06"}],
    )
    options: ContextOptions = Field(
        default_factory=ContextOptions, description="Sources, shares, tokenizer.", examples=[{}]
    )


class Segment(Contract):
    kind: SegmentKind = Field(description="What it holds.", examples=["memories"])
    text: str = Field(description="The text, as the model should see it.", examples=["- ..."])
    tokens: int = Field(ge=0, description="Tokens of `text`.", examples=[120])
    source_ids: list[str] = Field(
        default_factory=list,
        description="Ids of what is in `text` (message, memory, chunk `<source id>:<chunk>`, "
        "state `<user>/<agent>@<version>`, segment name or `segment:<n>`, template segments "
        "as `<template>/<name or n>`), in text order.",
        examples=[["3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"]],
    )
    status: Literal["ok", "empty", "missing"] = Field(
        description="`ok`; `empty`: the source had nothing; `missing`: it failed or did not "
        "answer in time (`reason`).",
        examples=["ok"],
    )
    reason: str | None = Field(default=None, description="Why it is missing.", examples=[None])
    truncated: bool = Field(
        default=False,
        description="Part of what the source gave was left out or cut at a token boundary.",
        examples=[False],
    )
    source_tokens: int = Field(
        ge=0, description="Tokens of everything the source gave (before budgeting).", examples=[900]
    )


class ContextBuildReply(Reply):
    snapshot_id: UUID = Field(description="The recorded build.", examples=[SNAPSHOT_EX])
    tokenizer: str = Field(description="Tokenizer that counted.", examples=["cl100k_base"])
    token_budget: int = Field(description="As asked.", examples=[4000])
    total_tokens: int = Field(description="Sum of the segments' tokens.", examples=[3990])
    source_tokens: int = Field(
        description="Tokens of everything the sources gave (after dedupe).", examples=[9000]
    )
    compression_ratio: float = Field(
        description="source_tokens / total_tokens (1 when nothing was left out).",
        examples=[2.26],
    )
    build_ms: float = Field(description="Time to build, in ms.", examples=[12.5])
    segments: list[Segment] = Field(description="In context order.", examples=[[]])


class ContextBuildAnswer(RootModel[Annotated[ContextBuildReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.context.build`: `ContextBuildReply` (`status: "ok"`) or
    `QueryError` (invalid, unavailable, internal)."""


class ContextSnapshotRequest(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])
    snapshot_id: UUID | None = Field(
        default=None, description="The snapshot (a build's `snapshot_id`).", examples=[SNAPSHOT_EX]
    )
    message_id: UUID | None = Field(
        default=None,
        description="Or: the newest build recorded for this message.",
        examples=[None],
    )

    @model_validator(mode="after")
    def _one_key(self) -> ContextSnapshotRequest:
        if (self.snapshot_id is None) == (self.message_id is None):
            raise ValueError("give exactly one of snapshot_id and message_id")
        return self


class ContextSnapshot(Contract):
    snapshot_id: UUID = Field(description="Its id.", examples=[SNAPSHOT_EX])
    created_at: datetime = Field(description="When built.", examples=["2026-12-06T10:15:00Z"])
    request: ContextBuildRequest = Field(description="The request, as built.", examples=[None])
    tokenizer: str = Field(description="Tokenizer that counted.", examples=["cl100k_base"])
    total_tokens: int = Field(description="Sum of the segments' tokens.", examples=[3990])
    source_tokens: int = Field(description="Tokens the sources gave.", examples=[9000])
    compression_ratio: float = Field(description="source / kept tokens.", examples=[2.26])
    segment_count: int = Field(description="Segments.", examples=[6])
    build_ms: float = Field(description="Build time, ms.", examples=[12.5])
    segments: list[Segment] = Field(description="What the model was shown.", examples=[[]])


class ContextSnapshotReply(Reply):
    snapshot: ContextSnapshot = Field(description="The recorded build.", examples=[None])


class ContextSnapshotAnswer(
    RootModel[Annotated[ContextSnapshotReply | QueryError, ERROR_DISCRIMINATOR]]
):
    """The reply to `query.context.snapshot`: `ContextSnapshotReply` or `QueryError`
    (not_found: no such snapshot in this tenant; invalid; unavailable; internal)."""


CONTEXT_BUILD_REPLY = TypeAdapter[ContextBuildReply | QueryError](
    Annotated[ContextBuildReply | QueryError, ERROR_DISCRIMINATOR]
)
CONTEXT_SNAPSHOT_REPLY = TypeAdapter[ContextSnapshotReply | QueryError](
    Annotated[ContextSnapshotReply | QueryError, ERROR_DISCRIMINATOR]
)
