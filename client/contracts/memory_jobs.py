"""MEMORY events beyond writes: forgetting and consolidation jobs, and what the memory
service announces when they are done.

- ``memory.forget`` (agents, users' deletion requests): erase memories by id or by filter.
  The text and vector are erased; a tombstone keeps the id, who asked and why.
- ``memory.consolidate`` (schedulers): run consolidation steps for one agent or every
  agent of a tenant. The same ``job_id`` twice does the work once.
- ``engram.memory.consolidated``: a job's summary, one per agent.
- ``engram.memory.forgotten``: the ids erased, so other services drop their copies
  (the embedder's chunks of those memories).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, TypeAdapter, model_validator

from contracts.envelope import Contract, Envelope

JOB_EX = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
MEMORY_EX = "3d9e4c1a-6b2f-4e7d-8a90-1f2e3d4c5b6a"
CONVERSATION_EX = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"
MAX_FORGET_IDS = 10_000
MAX_FORGOTTEN_IDS = 10_000


class ForgetPayload(Contract):
    """Which memories to erase: ``memory_ids``, or a filter (every field given must hold).
    At least one of them; a filter needs ``agent_id`` or ``user_id`` so that no request
    erases a whole tenant by accident."""

    memory_ids: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_FORGET_IDS,
        description="Memories to erase, by id.",
        examples=[[MEMORY_EX]],
    )
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Erase memories of this agent.",
        examples=["travel-bot"],
    )
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Erase memories about this user (the right to deletion).",
        examples=["u-123"],
    )
    conversation_id: UUID | None = Field(
        default=None,
        description="Erase memories formed in this conversation.",
        examples=[CONVERSATION_EX],
    )
    requested_by: str = Field(
        min_length=1,
        max_length=200,
        description="Who asked; kept on every tombstone.",
        examples=["u-123"],
    )
    reason: str | None = Field(
        default=None, max_length=1000, description="Why.", examples=["GDPR erasure request"]
    )

    @model_validator(mode="after")
    def _target(self) -> ForgetPayload:
        by_filter = self.agent_id or self.user_id or self.conversation_id
        if not self.memory_ids and not by_filter:
            raise ValueError("give memory_ids or a filter (agent_id, user_id, conversation_id)")
        if self.memory_ids and by_filter:
            raise ValueError("give memory_ids or a filter, not both")
        if by_filter and not (self.agent_id or self.user_id):
            raise ValueError("a filter needs agent_id or user_id")
        return self


class MemoryForget(Envelope):
    """Erase memories: text and vector are deleted, a tombstone keeps the id and who asked."""

    type: Literal["memory.forget"] = "memory.forget"
    payload: ForgetPayload


class Step(StrEnum):
    merge = "merge"  # near-duplicates of one type become one memory
    summarize = "summarize"  # a cluster of episodes becomes one episodic summary
    abstract = "abstract"  # a cluster of episodes yields a semantic memory (kept linked)
    decay = "decay"  # importance decays with time since last access
    expire = "expire"  # past expires_at; working memories past TTL or capacity


# The order steps always run in: abstract before summarize, because summarize supersedes
# the episodes both work from.
ALL_STEPS: tuple[Step, ...] = (Step.expire, Step.merge, Step.abstract, Step.summarize, Step.decay)


class ConsolidatePayload(Contract):
    job_id: UUID = Field(
        description="Chosen by the scheduler; the same job id twice does the work once.",
        examples=[JOB_EX],
    )
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Agent to consolidate; default: every agent of the tenant.",
        examples=["travel-bot"],
    )
    steps: list[Step] = Field(
        default_factory=lambda: list(ALL_STEPS),
        min_length=1,
        description="Steps to run; they always run in the order expire, merge, "
        "abstract, summarize, decay.",
        examples=[["merge", "decay"]],
    )
    dry_run: bool = Field(
        default=False,
        description="Report what would change, change nothing.",
        examples=[False],
    )
    merge_threshold: float | None = Field(
        default=None,
        ge=0.5,
        le=1,
        description="Cosine similarity from which two memories are duplicates; default: "
        "the service's setting.",
        examples=[0.86],
    )


class MemoryConsolidate(Envelope):
    """A consolidation job from a scheduler. Its clock is ``occurred_at``: decay and expiry
    are computed as of that time, so a job run twice gives the same result."""

    type: Literal["memory.consolidate"] = "memory.consolidate"
    payload: ConsolidatePayload


MEMORY_FORGET = TypeAdapter[MemoryForget](MemoryForget)
MEMORY_CONSOLIDATE = TypeAdapter[MemoryConsolidate](MemoryConsolidate)


class StepReport(Contract):
    step: Step = Field(description="The step.", examples=["merge"])
    examined: int = Field(ge=0, description="Memories looked at.", examples=[2000])
    created: int = Field(ge=0, description="Memories made (merged, summaries).", examples=[180])
    superseded: int = Field(ge=0, description="Memories replaced by a new one.", examples=[380])
    forgotten: int = Field(ge=0, description="Memories erased (expiry).", examples=[0])
    changed: int = Field(ge=0, description="Memories whose importance changed.", examples=[0])
    tokens_saved: int = Field(
        description="Tokens of the memories replaced or erased, minus tokens of those made "
        "(estimated at 4 characters a token).",
        examples=[5120],
    )


class ConsolidatedPayload(Contract):
    job_id: UUID = Field(description="The job.", examples=[JOB_EX])
    agent_id: str = Field(description="The agent consolidated.", examples=["travel-bot"])
    dry_run: bool = Field(description="Nothing was changed.", examples=[False])
    steps: list[StepReport] = Field(description="What each step did, in order.", examples=[[]])
    active_before: int = Field(ge=0, description="Active memories before.", examples=[2000])
    active_after: int = Field(ge=0, description="Active memories after.", examples=[1820])
    duration_ms: int = Field(ge=0, description="Time the job took.", examples=[1840])


class MemoryConsolidated(Envelope):
    """A consolidation job's summary for one agent (one event per agent)."""

    type: Literal["engram.memory.consolidated"] = "engram.memory.consolidated"
    payload: ConsolidatedPayload


class ForgottenPayload(Contract):
    memory_ids: list[UUID] = Field(
        min_length=1,
        max_length=MAX_FORGOTTEN_IDS,
        description="Memories erased; drop every copy of their text and vectors.",
        examples=[[MEMORY_EX]],
    )
    reason: str = Field(
        description="forget (a memory.forget request) or expired.", examples=["forget"]
    )


class MemoryForgotten(Envelope):
    """Memories the memory service erased, for services that keep copies of their text."""

    type: Literal["engram.memory.forgotten"] = "engram.memory.forgotten"
    payload: ForgottenPayload


MEMORY_FORGOTTEN = TypeAdapter[MemoryForgotten](MemoryForgotten)
MEMORY_JOB_EVENT_TYPES: tuple[type[Envelope], ...] = (MemoryForget, MemoryConsolidate)
MEMORY_NOTICE_TYPES: tuple[type[Envelope], ...] = (MemoryConsolidated, MemoryForgotten)
