from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings


class ContextSettings(WorkerSettings):
    """Env prefix CONTEXT_ (e.g. CONTEXT_MEMORY_TIMEOUT_S); NATS_URL and DATABASE_URL are
    shared."""

    model_config = SettingsConfigDict(env_prefix="CONTEXT_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "context"

    tokenizer: Literal["cl100k_base", "o200k_base", "minilm"] = Field(
        default="cl100k_base",
        description="Tokenizer of a build that names none (loaded at start; the others on "
        "first use).",
    )
    token_count_cache: int = Field(
        default=100_000,
        ge=0,
        description="Token counts kept across builds (per text and tokenizer, least recently "
        "used out first; ~200 bytes each, ~20 MB at 100,000): a chat's next turn counts "
        "only its new texts. 0: every build counts every text.",
    )
    history_timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="Longest wait for query.chat.history."
    )
    memory_timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="Longest wait for query.memory.search."
    )
    knowledge_timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="Longest wait for query.knowledge.search."
    )
    state_timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="Longest wait for query.state.get."
    )
    embed_timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="Longest wait for query.embed (the query's vector, made once per build "
        "for the searches; without it each search embeds the query itself).",
    )
    max_builds: int = Field(
        default=8, ge=1, le=64, description="Builds one replica answers at once."
    )
    snapshot_keep_days: float | None = Field(
        default=30.0,
        gt=0,
        description="Snapshots older than this are deleted by the worker (unset: kept for ever).",
    )
    snapshot_prune_every_s: float = Field(
        default=3600.0, gt=0, description="How often old snapshots are looked for."
    )
