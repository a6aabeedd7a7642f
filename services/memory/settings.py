from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings


class MemorySettings(WorkerSettings):
    """Env prefix MEMORY_ (e.g. MEMORY_MERGE_THRESHOLD); NATS_URL and DATABASE_URL are
    shared. The defaults are documented in docs/memory.md."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "memory"
    uses_vectors: ClassVar[bool] = True

    pool_max: int = Field(
        default=8,
        ge=4,
        description="Three consumers, the job runner, the access counts and the outbox "
        "drain share it (searches have their own, search_pool_max).",
    )

    # --- memories -------------------------------------------------------------------
    decay_rates: dict[str, float] = Field(
        default={"episodic": 0.02, "semantic": 0.005, "procedural": 0.002, "working": 0.2},
        description="Default fraction of importance lost per day without access, per type.",
    )

    # --- search ---------------------------------------------------------------------
    weight_similarity: float = Field(default=0.6, ge=0, le=1)
    weight_importance: float = Field(default=0.25, ge=0, le=1)
    weight_recency: float = Field(default=0.15, ge=0, le=1)
    recency_half_life_days: float = Field(default=30.0, gt=0)
    candidates: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Nearest memories re-ranked by the full score (at least top_k).",
    )
    ef_search: int = Field(
        default=100,
        ge=10,
        le=1000,
        description="HNSW candidate list size (at least the candidates and the largest top_k).",
    )
    search_pool_max: int = Field(default=8, ge=1, description="Connections for searches.")
    embed_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a search waits for query.embed."
    )
    query_model_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description="How long the model of the last query.embed reply counts as the active "
        "one: a search's supplied query vector of that model is used without embedding "
        "(0: always embed).",
    )
    access_flush_s: float = Field(
        default=0.5,
        gt=0,
        description="Access counts of returned memories are written in the background, at "
        "most this late (the reply never waits for them).",
    )

    # --- LangGraph store (query.store.*) ---------------------------------------------
    store_pool_max: int = Field(
        default=4, ge=1, description="Connections for query.store.* (the worker's role)."
    )
    store_concurrency: int = Field(
        default=8, ge=1, description="query.store.batch requests answered at once per replica."
    )
    store_importance: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Importance of an indexed store item's memory when its value has no "
        "`importance` in [0, 1].",
    )

    # --- consolidation --------------------------------------------------------------
    merge_threshold: float = Field(
        default=0.88,
        ge=0.5,
        le=1,
        description="Cosine similarity from which two memories "
        "of one type, one user and the same stated facts are duplicates; every two members "
        "of a merge must reach it (measured: bench/memory.py --quality).",
    )
    cluster_threshold: float = Field(
        default=0.7,
        ge=0.3,
        le=1,
        description="Cosine similarity to a cluster's centre for summarize / abstract.",
    )
    min_cluster: int = Field(default=3, ge=2, description="Smallest cluster summarized.")
    summary_sentences: int = Field(
        default=3, ge=1, le=20, description="Sentences kept by an extractive summary."
    )
    working_ttl_days: float = Field(
        default=1.0, gt=0, description="Working memories unused this long expire."
    )
    working_capacity: int = Field(
        default=32,
        ge=1,
        description="Most active working memories per agent; the least "
        "recently used beyond it expire.",
    )
    job_lease_s: float = Field(
        default=600.0, gt=0, description="A job whose runner died is taken over after this."
    )
    job_poll_s: float = Field(default=2.0, gt=0, description="Idle check for queued jobs.")
    llm_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL (e.g. http://vllm:8000/v1) of an optional "
        "summarizer for summarize / abstract (never required; extractive summaries are the "
        "default and the fallback).",
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Model name for llm_url.")
    llm_api_key: str | None = Field(default=None, description="Bearer token for llm_url.")

    # --- sessions -------------------------------------------------------------------
    session_importance: float = Field(
        default=0.5, ge=0, le=1, description="Importance of a session's episodic summary."
    )
    session_late_s: float = Field(
        default=600.0,
        gt=0,
        description="An ended session's notes are kept this long after its summary, so "
        "that a message applied after the end (a crashed worker's message redelivered "
        "behind newer ones) amends the summary; then they are dropped.",
    )
    session_notes_days: float = Field(
        default=7.0,
        gt=0,
        description="Notes of a session that has not ended after this "
        "long are dropped (the streams keep 7 days).",
    )

    @model_validator(mode="after")
    def _weights(self) -> MemorySettings:
        if self.weight_similarity + self.weight_importance + self.weight_recency <= 0:
            raise ValueError("at least one search weight must be positive")
        if self.cluster_threshold > self.merge_threshold:
            raise ValueError("cluster_threshold must not exceed merge_threshold")
        return self
