"""The embedder service as the runtime sees it (see services/runtime/spec.py)."""

from __future__ import annotations

from services.embedder.settings import EmbedderSettings
from services.runtime.spec import Command, DevView, ServiceSpec, StatusFact

SPEC = ServiceSpec(
    name="embedder",
    schema="embedder",
    settings=EmbedderSettings,
    assemble="services.embedder.app:assemble",
    description="Cuts message, file and memory text into chunks with the model's "
    "tokenizer, embeds them in model batches (a local sentence-transformers model) into "
    "pgvector, answers query.embed and query.knowledge.search (hybrid: HNSW + full text, "
    "fused by reciprocal rank), and announces memory vectors (engram.embedding.ready).",
    docs="embedder.md#tables",
    commands=(Command("reembed", "services.embedder.cli:reembed"),),
    status_facts=(
        StatusFact("model", "SELECT model_id FROM embedder.models WHERE state = 'active'"),
    ),
    dev_view=DevView(
        title="embedding queue",
        columns=("chunks waiting", "oldest", "failed attempts"),
        sql="""SELECT count(*), min(enqueued_at), coalesce(sum(attempts), 0)
                 FROM embedder.embed_queue LIMIT $1""",
    ),
)
