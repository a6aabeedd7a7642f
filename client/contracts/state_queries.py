"""``query.state.get``, ``query.state.history`` and ``query.state.diff``: request and reply
contracts (core NATS request/reply; every request is scoped by tenant).

Each reply is the query's result (``status: "ok"``) or ``contracts.errors.QueryError``
(``status: "error"``); ``StateGetAnswer`` / ``StateHistoryAnswer`` / ``StateDiffAnswer`` are
those unions (the published reply schemas) and ``STATE_GET_REPLY`` / ``STATE_HISTORY_REPLY``
/ ``STATE_DIFF_REPLY`` read a reply. A reply must fit in one NATS message (1 MiB by
default, while a state may reach 8 MiB): ``partitions`` reads a large state a part at a
time, a history page stops early (``size_limited``), and what still does not fit is a
``too_large`` error with a ``hint``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, RootModel, TypeAdapter, field_validator, model_validator

from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply
from contracts.state import EVENT_EX, StateKey

Partition = Literal["local", "shared", "session", "persistent"]
HASH_EX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class QueryKey(StateKey):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])


# ---- query.state.get ----------------------------------------------------------------


class StateGetRequest(QueryKey):
    at_version: int | None = Field(default=None, ge=0, description="A past version.", examples=[12])
    at_time: datetime | None = Field(
        default=None, description="The version current then.", examples=["2026-11-22T10:15:00Z"]
    )
    partitions: list[Partition] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Only these partitions in the reply (default: all four; the others come "
        "back null). A state larger than one NATS message is read a partition at a time.",
        examples=[["session", "local"]],
    )

    @field_validator("at_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("at_time needs a time zone")
        return value

    @model_validator(mode="after")
    def _one_point(self) -> StateGetRequest:
        if self.at_version is not None and self.at_time is not None:
            raise ValueError("give at most one of at_version and at_time")
        return self


class StateView(Contract):
    version: int = Field(description="Version number.", examples=[42])
    state_hash: str = Field(
        description="Hex SHA-256 of the whole state's canonical JSON (all four partitions, "
        "whichever were asked for).",
        examples=[HASH_EX],
    )
    local: dict[str, Any] | None = Field(
        description="Partition local (null when not asked for).", examples=[{}]
    )
    shared: dict[str, Any] | None = Field(
        description="Partition shared (null when not asked for).", examples=[{}]
    )
    session: dict[str, Any] | None = Field(
        description="Partition session (null when not asked for).", examples=[{"cart": []}]
    )
    persistent: dict[str, Any] | None = Field(
        description="Partition persistent (null when not asked for).", examples=[{}]
    )
    applied_at: datetime | None = Field(
        default=None, description="When it became current.", examples=["2026-11-22T10:15:00Z"]
    )


class StateGetReply(Reply):
    """The state (a state too large for one message is a `too_large` error whose `detail`
    gives each partition's size: ask for fewer `partitions`)."""

    state: StateView = Field(description="The version asked for.", examples=[None])
    modification_count: int | None = Field(
        default=None,
        description="Operations applied over the state's life (current version only).",
        examples=[120],
    )


class StateGetAnswer(RootModel[Annotated[StateGetReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.state.get`: `StateGetReply` (`status: "ok"`) or `QueryError`
    (`status: "error"`: not_found, pruned, invalid, too_large, unavailable, internal)."""


# ---- query.state.history ------------------------------------------------------------


class StateHistoryRequest(QueryKey):
    before_version: int | None = Field(
        default=None,
        ge=1,
        description="Page cursor: versions below this, newest first.",
        examples=[101],
    )
    limit: int = Field(default=50, ge=1, le=500, description="Page size.", examples=[50])
    include_patches: bool = Field(
        default=True, description="Include patch and inverse.", examples=[True]
    )


class TransitionView(Contract):
    version: int = Field(description="The version this transition made.", examples=[42])
    kind: Literal["update", "merge", "reset", "restore"] = Field(
        description="What made it.", examples=["update"]
    )
    trigger: str = Field(description="Subject of the event.", examples=["state.patch"])
    actor: str | None = Field(default=None, description="Who.", examples=["planner-node"])
    event_id: UUID | None = Field(default=None, description="The event.", examples=[EVENT_EX])
    state_hash: str = Field(description="Hash after this version.", examples=[HASH_EX])
    op_count: int = Field(description="Operations in the patch.", examples=[3])
    occurred_at: datetime = Field(description="Producer's time.", examples=["2026-11-22T10:15:00Z"])
    applied_at: datetime = Field(description="Apply time.", examples=["2026-11-22T10:15:00Z"])
    patch: list[dict[str, Any]] | None = Field(
        default=None, description="RFC 6902, forward.", examples=[[]]
    )
    inverse: list[dict[str, Any]] | None = Field(
        default=None, description="RFC 6902, back.", examples=[[]]
    )


class StateHistoryReply(Reply):
    """A page of transitions, newest first."""

    items: list[TransitionView] = Field(
        default_factory=list, description="Newest first.", examples=[[]]
    )
    next_before_version: int | None = Field(
        default=None,
        description="Cursor of the next page (its `before_version`); null on the last page.",
        examples=[51],
    )
    current_version: int = Field(description="The state's current version.", examples=[100])
    oldest_version: int | None = Field(
        default=None, description="Oldest readable version.", examples=[0]
    )
    size_limited: bool = Field(
        default=False,
        description="The page holds fewer than `limit` items because more would not fit in "
        "one NATS message; continue from `next_before_version`.",
        examples=[False],
    )


class StateHistoryAnswer(RootModel[Annotated[StateHistoryReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.state.history`: `StateHistoryReply` (`status: "ok"`) or
    `QueryError` (`status: "error"`: not_found, invalid, too_large — one transition's
    patches alone do not fit: ask with `include_patches: false` — unavailable, internal)."""


# ---- query.state.diff ---------------------------------------------------------------


class StateDiffRequest(QueryKey):
    from_version: int = Field(ge=0, description="Version to start from.", examples=[10])
    to_version: int = Field(ge=0, description="Version to arrive at.", examples=[42])


class StateDiffReply(Reply):
    from_version: int = Field(description="As asked.", examples=[10])
    to_version: int = Field(description="As asked.", examples=[42])
    patch: list[dict[str, Any]] = Field(
        default_factory=list,
        description="RFC 6902 from→to.",
        examples=[[{"op": "replace", "path": "/local/step", "value": 3}]],
    )


class StateDiffAnswer(RootModel[Annotated[StateDiffReply | QueryError, ERROR_DISCRIMINATOR]]):
    """The reply to `query.state.diff`: `StateDiffReply` (`status: "ok"`) or `QueryError`
    (`status: "error"`: not_found, pruned, invalid, too_large — diff a shorter range —
    unavailable, internal)."""


STATE_GET_REPLY = TypeAdapter[StateGetReply | QueryError](
    Annotated[StateGetReply | QueryError, ERROR_DISCRIMINATOR]
)
STATE_HISTORY_REPLY = TypeAdapter[StateHistoryReply | QueryError](
    Annotated[StateHistoryReply | QueryError, ERROR_DISCRIMINATOR]
)
STATE_DIFF_REPLY = TypeAdapter[StateDiffReply | QueryError](
    Annotated[StateDiffReply | QueryError, ERROR_DISCRIMINATOR]
)
