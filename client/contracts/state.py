"""STATE events (agents publish) and the conflict event the checkpointer emits (the
``query.state.*`` request/reply contracts are in ``contracts/state_queries.py``).

An agent's state is one JSON document per tenant + user + agent with four partitions,
each a JSON object: ``local``, ``shared``, ``session`` and ``persistent``. Patches address
the whole document (``/session/cart/0``), so one patch may change several partitions
atomically; a patch must leave the four partitions in place, each an object.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import Field, TypeAdapter, model_validator

from contracts.envelope import Contract, Envelope

PARTITIONS = ("local", "shared", "session", "persistent")
MAX_PATCH_OPS = 10_000
POINTER = r"^(/([^~/]|~[01])*)*$"  # RFC 6901 JSON Pointer ("" is the whole document)
CHECKPOINT_EX = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
EVENT_EX = "0b6f3f0e-5d1b-4a53-9f7e-8a51f3c1a9d2"

UserId = Annotated[
    str,
    Field(
        min_length=1, max_length=200, description="User the state belongs to.", examples=["u-123"]
    ),
]
AgentId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Agent whose state it is.",
        examples=["travel-bot"],
    ),
]
Pointer = Annotated[
    str,
    Field(
        max_length=2000,
        pattern=POINTER,
        description="RFC 6901 JSON Pointer.",
        examples=["/session/cart/0"],
    ),
]
Actor = Annotated[
    str | None,
    Field(
        default=None,
        max_length=200,
        examples=["planner-node"],
        description="Who made the change (default: the event's producer).",
    ),
]


# RFC 6902 operations. Structural mistakes (unknown op, missing value, malformed pointer)
# break the contract; semantic ones (missing path, failed test) are found when applying.
class PatchAdd(Contract):
    op: Literal["add"] = "add"
    path: Pointer
    value: Any = Field(description="Any JSON value.", examples=[{"sku": "A1", "qty": 2}])


class PatchRemove(Contract):
    op: Literal["remove"] = "remove"
    path: Pointer


class PatchReplace(Contract):
    op: Literal["replace"] = "replace"
    path: Pointer
    value: Any = Field(description="Any JSON value.", examples=["EUR"])


class PatchMove(Contract):
    op: Literal["move"] = "move"
    from_: Pointer = Field(alias="from", description="Where the value is taken from.")
    path: Pointer


class PatchCopy(Contract):
    op: Literal["copy"] = "copy"
    from_: Pointer = Field(alias="from", description="Where the value is copied from.")
    path: Pointer


class PatchTest(Contract):
    op: Literal["test"] = "test"
    path: Pointer
    value: Any = Field(description="Value the path must equal.", examples=[3])


PatchOp = Annotated[
    PatchAdd | PatchRemove | PatchReplace | PatchMove | PatchCopy | PatchTest,
    Field(discriminator="op"),
]


class StateKey(Contract):
    user_id: UserId
    agent_id: AgentId


class StatePatchPayload(StateKey):
    """Exactly one of ``patch`` (RFC 6902) and ``merge_patch`` (RFC 7386)."""

    patch: list[PatchOp] | None = Field(
        default=None,
        max_length=MAX_PATCH_OPS,
        description="RFC 6902 JSON Patch over the whole document.",
        examples=[[{"op": "add", "path": "/session/cart/-", "value": {"sku": "A1"}}]],
    )
    merge_patch: dict[str, Any] | None = Field(
        default=None,
        description="RFC 7386 JSON Merge Patch (an object; null removes a key).",
        examples=[{"persistent": {"currency": "EUR"}, "session": {"draft": None}}],
    )
    expected_version: int | None = Field(
        default=None,
        ge=0,
        description="Apply only if the state is at this version; otherwise the patch is "
        "recorded as a conflict and `engram.state.conflict` is published.",
        examples=[41],
    )
    actor: Actor = None
    trigger: str | None = Field(
        default=None,
        max_length=200,
        description="What caused the change.",
        examples=["tool:search_hotels"],
    )

    @model_validator(mode="after")
    def _one_kind(self) -> StatePatchPayload:
        if (self.patch is None) == (self.merge_patch is None):
            raise ValueError("give exactly one of `patch` (RFC 6902) and `merge_patch` (RFC 7386)")
        return self


class CheckpointType(StrEnum):
    manual = "manual"
    automatic = "automatic"
    error_recovery = "error_recovery"
    milestone = "milestone"


class Retention(StrEnum):
    temporary = "temporary"  # removed by `engram state prune` once old or expired
    permanent = "permanent"  # never pruned
    archive = "archive"  # never pruned; always compressed


class StateCheckpointPayload(StateKey):
    checkpoint_id: UUID = Field(
        default_factory=uuid4,
        description="Chosen by the producer, to restore it later.",
        examples=[CHECKPOINT_EX],
    )
    label: str | None = Field(
        default=None, max_length=200, description="Human label.", examples=["before booking"]
    )
    checkpoint_type: CheckpointType = Field(
        default=CheckpointType.manual, description="Why it was taken.", examples=["milestone"]
    )
    retention: Retention = Field(
        default=Retention.temporary, description="How long it is kept.", examples=["permanent"]
    )
    expires_at: datetime | None = Field(
        default=None,
        description="A temporary checkpoint may be pruned after this.",
        examples=["2026-12-31T00:00:00Z"],
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form JSON object.", examples=[{"step": 7}]
    )


class StateRestorePayload(StateKey):
    """Exactly one of ``checkpoint_id`` and ``version``. Creates a new version."""

    checkpoint_id: UUID | None = Field(
        default=None, description="Checkpoint to restore.", examples=[CHECKPOINT_EX]
    )
    version: int | None = Field(
        default=None, ge=0, description="Version to restore (0: empty).", examples=[12]
    )
    expected_version: int | None = Field(
        default=None, ge=0, description="As for a patch.", examples=[41]
    )
    actor: Actor = None
    reason: str | None = Field(
        default=None, max_length=1000, description="Why.", examples=["tool loop went wrong"]
    )

    @model_validator(mode="after")
    def _one_target(self) -> StateRestorePayload:
        if (self.checkpoint_id is None) == (self.version is None):
            raise ValueError("give exactly one of `checkpoint_id` and `version`")
        return self


class StatePatch(Envelope):
    """Change an agent's state by a JSON Patch or a JSON Merge Patch."""

    type: Literal["state.patch"] = "state.patch"
    payload: StatePatchPayload


class StateCheckpoint(Envelope):
    """Take a full snapshot of the current state."""

    type: Literal["state.checkpoint"] = "state.checkpoint"
    payload: StateCheckpointPayload


class StateRestore(Envelope):
    """Make a checkpoint or a past version the current state (as a new version)."""

    type: Literal["state.restore"] = "state.restore"
    payload: StateRestorePayload


StateEvent = Annotated[StatePatch | StateCheckpoint | StateRestore, Field(discriminator="type")]
STATE_EVENT = TypeAdapter[StateEvent](StateEvent)
STATE_EVENT_TYPES: tuple[type[Envelope], ...] = (StatePatch, StateCheckpoint, StateRestore)


class StateConflictPayload(StateKey):
    conflict_id: UUID = Field(description="Row id of the recorded conflict.", examples=[EVENT_EX])
    rejected_event_id: UUID = Field(description="The patch not applied.", examples=[EVENT_EX])
    rejected_type: str = Field(description="Its type.", examples=["state.patch"])
    expected_version: int = Field(description="Version the sender expected.", examples=[41])
    current_version: int = Field(description="Version the state is at.", examples=[43])
    current_state_hash: str = Field(
        description="Hex SHA-256 of the current state's canonical JSON.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


class StateConflict(Envelope):
    """A patch or restore named a stale version: recorded, not applied (emitted on ENGRAM)."""

    type: Literal["engram.state.conflict"] = "engram.state.conflict"
    payload: StateConflictPayload


# The query.state.* request/reply contracts: contracts/state_queries.py.
