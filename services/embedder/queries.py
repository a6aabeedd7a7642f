"""Request/reply: ``query.embed`` and ``query.knowledge.search`` (core NATS, queue group
``embedder``, so replicas share them). A request that breaks its contract gets a
``QueryError`` reply at once rather than a timeout."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import asyncpg
from faststream import Context
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from pydantic import BaseModel

from contracts.embedding import (
    EMBED_SUBJECT,
    KNOWLEDGE_SEARCH_SUBJECT,
    EmbedReply,
    EmbedRequest,
    KnowledgeHit,
    KnowledgeSearchReply,
    KnowledgeSearchRequest,
    SearchMode,
    SourceRef,
    SourceType,
)
from services.embedder import repo_search
from services.embedder.engine import Engine
from services.embedder.logic import candidates_for, rrf
from services.embedder.model import NotReady
from services.runtime.replies import query_failure

log = logging.getLogger("engram.embedder.queries")
QUEUE = "embedder"
Pool = Annotated[asyncpg.Pool | None, Context("pool", default=None)]
CONCURRENCY = 8
MAX_TEXT_QUERY_CHARS = 500


async def embed(engine: Engine, request: EmbedRequest) -> EmbedReply:
    model, vectors = await engine.encoder.encode(request.texts, urgent=True)
    lengths = [len(spans) for spans in model.token_offsets(request.texts)]
    return EmbedReply(
        model_id=model.model_id,
        dimensions=model.dimensions,
        vectors=vectors.tolist(),
        truncated=[n > model.window for n in lengths],
    )


async def knowledge_search(
    engine: Engine, pool: asyncpg.Pool, request: KnowledgeSearchRequest
) -> KnowledgeSearchReply:
    """Hybrid search of one tenant: the vector and full-text rankings fused by RRF."""
    model_id = engine.model.model_id
    encoding = None
    if request.mode is not SearchMode.text:
        encoding = asyncio.ensure_future(_encode(engine, request.text))
    n = candidates_for(request.top_k)
    s = engine.settings
    scope = repo_search.SearchScope(
        tenant_id=request.tenant_id,
        filters=request.filters,
        limit=n,
        ef_search=max(s.ef_search, n),
        max_scan_tuples=s.max_scan_tuples,
    )
    try:
        found = await repo_search.candidates(
            pool,
            scope,
            query_vector=encoding,  # the full-text side runs while the query is encoded
            # full text: the query's first words are plenty
            query_text=request.text[:MAX_TEXT_QUERY_CHARS]
            if request.mode is not SearchMode.vector
            else "",
            max_matches=s.text_max_matches,
        )
    finally:
        if encoding is not None and not encoding.done():
            encoding.cancel()
    if encoding is not None:
        model_id = encoding.result().model_id
    by_id = {c.chunk_id: c for c in found}
    by_vector = sorted(
        (c for c in found if c.distance is not None), key=lambda c: (c.distance, c.chunk_id)
    )
    by_text = sorted((c for c in found if c.text_rank is not None), key=lambda c: c.text_rank or 0)
    vector_rank = {c.chunk_id: i for i, c in enumerate(by_vector, start=1)}
    text_rank = {c.chunk_id: i for i, c in enumerate(by_text, start=1)}
    fused = rrf([[c.chunk_id for c in by_vector], [c.chunk_id for c in by_text]])
    hits = []
    for chunk_id, score in fused[: request.top_k]:
        c = by_id[chunk_id]
        hits.append(
            KnowledgeHit(
                source=SourceRef(
                    source_type=SourceType(c.source_type),
                    source_id=c.source_id,
                    chunk_index=c.chunk_index,
                    conversation_id=c.conversation_id,
                    agent_id=c.agent_id,
                    occurred_at=c.source_at,
                ),
                text=c.text,
                score=score,
                similarity=None if c.distance is None else 1.0 - c.distance,
                vector_rank=vector_rank.get(chunk_id),
                text_rank=text_rank.get(chunk_id),
            )
        )
    return KnowledgeSearchReply(model_id=model_id, hits=hits)


async def _encode(engine: Engine, text: str) -> repo_search.QueryVector:
    model, vectors = await engine.encoder.encode([text], urgent=True)
    # the model that encoded the query: only its vectors are searched, never mixed
    return repo_search.QueryVector(model.model_id, model.dimensions, vectors[0])


def register_queries(broker: NatsBroker, engine: Engine) -> None:
    """Subscribe the two queries on the worker's broker."""

    @broker.subscriber(
        EMBED_SUBJECT,
        queue=QUEUE,
        max_workers=CONCURRENCY,
        title="query.embed",
        description="Texts in, unit vectors of the active model out (EmbedRequest -> "
        "EmbedReply | QueryError).",
    )
    async def on_embed(msg: NatsMessage) -> dict[str, Any]:
        return _reply(await _answer(EMBED_SUBJECT, msg.body, EmbedRequest, engine, None))

    @broker.subscriber(
        KNOWLEDGE_SEARCH_SUBJECT,
        queue=QUEUE,
        max_workers=CONCURRENCY,
        title="query.knowledge.search",
        description="Hybrid search of one tenant's messages and files "
        "(KnowledgeSearchRequest -> KnowledgeSearchReply | QueryError).",
    )
    async def on_search(msg: NatsMessage, pool: Pool) -> dict[str, Any]:
        return _reply(
            await _answer(KNOWLEDGE_SEARCH_SUBJECT, msg.body, KnowledgeSearchRequest, engine, pool)
        )


async def _answer(
    subject: str, body: bytes, model: type[BaseModel], engine: Engine, pool: asyncpg.Pool | None
) -> BaseModel:
    try:
        request = model.model_validate_json(body)
        if isinstance(request, EmbedRequest):
            return await embed(engine, request)
        assert isinstance(request, KnowledgeSearchRequest)
        if pool is None:
            raise NotReady("the embedder is starting: no database pool yet")
        return await knowledge_search(engine, pool, request)
    except Exception as exc:
        return query_failure(exc, subject, (NotReady,))


def _reply(reply: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = reply.model_dump(mode="json")
    return data
