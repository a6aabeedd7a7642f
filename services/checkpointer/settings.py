from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings


class CheckpointerSettings(WorkerSettings):
    """Env prefix CHECKPOINTER_ (e.g. CHECKPOINTER_SNAPSHOT_EVERY); NATS_URL and
    DATABASE_URL are shared."""

    model_config = SettingsConfigDict(
        env_prefix="CHECKPOINTER_", extra="ignore", populate_by_name=True
    )
    service: ClassVar[str] = "checkpointer"

    snapshot_every: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="An automatic snapshot at every multiple of this version, so any "
        "version rebuilds from the nearest snapshot (or the current state) plus at most "
        "half this many patches, forward or backward.",
    )
    compress_level: int = Field(
        default=12, ge=1, le=22, description="zstd level of snapshots (archive: 19)."
    )
    compress_above: int = Field(
        default=4096, ge=0, description="Snapshots at least this big (bytes) are zstd-compressed."
    )
    max_state_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="A patch making the state bigger is rejected."
    )
    cache_states: int = Field(
        default=1024, ge=0, description="Current states kept in memory (0: none)."
    )
    ordering_gate: bool = Field(
        default=True,
        description="Park a message while an earlier message of the same state is still "
        "in flight at another replica (publish order with several replicas).",
    )
    sweep_every_s: float = Field(
        default=1.0, gt=0, description="How often parked messages are re-checked."
    )
    query_pool_max: int = Field(
        default=4, ge=1, description="Connections of the query pool (separate from the writer's)."
    )
    prune_keep_days: float | None = Field(
        default=None, gt=0, description="Prune in the worker every prune_every_s (off if unset)."
    )
    prune_every_s: float = Field(default=3600.0, gt=0)
    langgraph_pool_max: int = Field(
        default=8,
        ge=1,
        description="Connections of the pool query.langgraph.* writes with (the worker's role).",
    )
    langgraph_read_pool_max: int = Field(
        default=4,
        ge=1,
        description="Connections of the pool query.langgraph.* reads with (the reader role; "
        "apart from query.state.*'s, so each session keeps its tenant between reads).",
    )
    langgraph_keyframe_every: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="A LangGraph channel blob is a zstd delta on its previous version except "
        "every this many versions (1: never a delta). A read decodes at most this many.",
    )
    langgraph_level: int = Field(
        default=3, ge=1, le=22, description="zstd level of LangGraph channel blobs."
    )
    langgraph_cache_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Decoded newest blob of each LangGraph channel kept per replica: the "
        "base of the next delta and the head's read without decoding (0: none).",
    )
    langgraph_concurrency: int = Field(
        default=16,
        ge=1,
        description="query.langgraph.* requests of one subject answered at once per replica.",
    )
