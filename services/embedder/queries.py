"""Request/reply: ``query.embed`` and ``query.knowledge.search``, two ``QueryRoute``s that
the runtime serves in the worker's queue group (replicas share them): a request that
breaks its contract gets an ``invalid`` ``QueryError`` at once rather than a timeout, and
a reply that would not fit in one message is shortened (search: the lowest ranked hits
are left out, ``omitted``) or is a ``too_large`` error (embed: how many texts fit). Asked
before the model or the pool is there (starting, stopping): ``unavailable``."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
from pydantic import BaseModel

from contracts.embedding import (
    EMBED_SUBJECT,
    KNOWLEDGE_SEARCH_SUBJECT,
    EmbedReply,
    EmbedRequest,
    KnowledgeHit,
    KnowledgeSearchReply,
    KnowledgeSearchRequest,
    QueryVectorUse,
    SearchMode,
    SourceRef,
    SourceType,
)
from contracts.errors import ErrorCode
from contracts.knowledge import (
    KNOWLEDGE_SOURCES_SUBJECT,
    KnowledgeSourceInfo,
    KnowledgeSourcesReply,
    KnowledgeSourcesRequest,
)
from services.embedder import repo_knowledge, repo_search
from services.embedder.active_model import ActiveModel
from services.embedder.knowledge_logic import shown_status
from services.embedder.logic import candidates_for, rrf
from services.embedder.model import NotReady
from services.embedder.settings import EmbedderSettings
from services.runtime.component import NotStarted
from services.runtime.replies import PACK_SLACK, QueryFailed, fit_items, json_size
from services.runtime.router import QueryRoute

CONCURRENCY = 8  # requests of each subject one replica answers at once
MAX_TEXT_QUERY_CHARS = 500


async def embed(active: ActiveModel, request: EmbedRequest) -> EmbedReply:
    model, vectors = await active.encoder.encode(request.texts, urgent=True)
    lengths = [len(spans) for spans in model.token_offsets(request.texts)]
    return EmbedReply(
        model_id=model.model_id,
        dimensions=model.dimensions,
        vectors=vectors.tolist(),
        truncated=[n > model.window for n in lengths],
    )


def search_scope(s: EmbedderSettings, request: KnowledgeSearchRequest) -> repo_search.SearchScope:
    """What both sides of this search share: its tenant, the roles it acts as, filters,
    candidates per side and the index settings."""
    n = candidates_for(request.top_k)
    return repo_search.SearchScope(
        tenant_id=request.tenant_id,
        reader=s.roles.reader,
        filters=request.filters,
        limit=n,
        ef_search=max(s.ef_search, n),
        max_scan_tuples=s.max_scan_tuples,
        agent=request.scope,
        # words are matched as the cross-tenant role, where no policy keeps them out of
        # the GIN index's condition (repo_search, sql/embedder/008_…); hits are read as
        # the reader
        matcher=s.roles.all_tenants,
    )


async def knowledge_search(
    active: ActiveModel, pool: asyncpg.Pool, request: KnowledgeSearchRequest
) -> KnowledgeSearchReply:
    """Hybrid search of one tenant: the vector and full-text rankings fused by RRF."""
    model_id = active.model.model_id
    encoding = None
    use = None
    if request.mode is not SearchMode.text:
        encoding, use = _query_vector(active, request)
    s = active.settings
    scope = search_scope(s, request)
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
                    knowledge_source_id=c.knowledge_source_id,
                    document_id=c.document_id,
                ),
                text=c.text,
                score=score,
                similarity=None if c.distance is None else 1.0 - c.distance,
                vector_rank=vector_rank.get(chunk_id),
                text_rank=text_rank.get(chunk_id),
            )
        )
    return KnowledgeSearchReply(model_id=model_id, hits=hits, query_vector=use)


def _query_vector(
    active: ActiveModel, request: KnowledgeSearchRequest
) -> tuple[asyncio.Future[repo_search.QueryVector], QueryVectorUse]:
    """The request's own vector when it is of the active model (the caller embedded the
    query once for several searches), else the text, encoded now."""
    supplied, model = request.query_vector, active.model
    if supplied is None or supplied.model_id != model.model_id:
        use = QueryVectorUse.embedded if supplied is None else QueryVectorUse.replaced
        return asyncio.ensure_future(_encode(active, request.text)), use
    if len(supplied.vector) != model.dimensions:
        raise QueryFailed(
            ErrorCode.invalid,
            f"query_vector has {len(supplied.vector)} values; {model.model_id} makes "
            f"{model.dimensions}",
            hint="send the vector of query.embed's reply as it is, or no query_vector",
            detail={"model_id": model.model_id, "dimensions": model.dimensions},
        )
    given: asyncio.Future[repo_search.QueryVector] = asyncio.get_running_loop().create_future()
    vector = np.asarray(supplied.vector, dtype=np.float32)
    given.set_result(repo_search.QueryVector(model.model_id, model.dimensions, vector))
    return given, QueryVectorUse.supplied


async def knowledge_sources(
    active: ActiveModel, pool: asyncpg.Pool, request: KnowledgeSourcesRequest
) -> KnowledgeSourcesReply:
    """An agent's sources, read as the reader role walled in to the request's tenant."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(
            "SELECT set_config('role', $2, true), set_config('engram.tenant_id', $1, true)",
            request.tenant_id,
            active.settings.roles.reader,
        )
        rows = await repo_knowledge.list_sources(conn, request.tenant_id, request.agent_id)
    return KnowledgeSourcesReply(
        sources=[
            KnowledgeSourceInfo(
                source_id=r.source_id,
                agent_id=r.agent_id,
                type=r.type,
                name=r.name,
                configuration=r.configuration,
                status=shown_status(r.status, r.waiting),
                status_reason=r.status_reason,
                documents=r.documents,
                chunk_count=r.chunks,
                chunks_waiting=r.waiting,
                registered_at=r.registered_at,
                last_synced_at=r.last_synced_at,
            )
            for r in rows
        ]
    )


async def _encode(active: ActiveModel, text: str) -> repo_search.QueryVector:
    model, vectors = await active.encoder.encode([text], urgent=True)
    # the model that encoded the query: only its vectors are searched, never mixed
    return repo_search.QueryVector(model.model_id, model.dimensions, vectors[0])


EMBED_HINT = "send fewer texts per request (see detail.fits)"
SEARCH_HINT = "ask with a smaller top_k"


def query_routes(active: ActiveModel) -> list[QueryRoute]:
    """The embedder's two queries, answered with the model ``active`` serves."""

    async def on_embed(request: EmbedRequest, limit: int) -> BaseModel:
        return fit_embed(await embed(active, request), limit)

    async def on_search(request: KnowledgeSearchRequest, limit: int) -> BaseModel:
        reply = await knowledge_search(active, active.pool, request)
        reply, omitted = fit_items(reply, "hits", limit)
        if omitted and not reply.hits:
            raise QueryFailed(
                ErrorCode.too_large,
                "the best hit alone does not fit in one message",
                hint=SEARCH_HINT,
            )
        return reply.model_copy(update={"omitted": omitted}) if omitted else reply

    async def on_sources(request: KnowledgeSourcesRequest, limit: int) -> BaseModel:
        reply = await knowledge_sources(active, active.pool, request)
        reply, omitted = fit_items(reply, "sources", limit)
        if omitted:
            raise QueryFailed(
                ErrorCode.too_large,
                f"{len(reply.sources) + omitted} sources do not fit in one message",
                hint="list fewer sources per agent",
            )
        return reply

    unavailable = (NotReady, NotStarted)
    return [
        QueryRoute(
            EMBED_SUBJECT,
            EmbedRequest,
            on_embed,
            description="Texts in, unit vectors of the active model out (EmbedRequest -> "
            "EmbedReply | QueryError).",
            hint=EMBED_HINT,
            unavailable=unavailable,
            max_workers=CONCURRENCY,
        ),
        QueryRoute(
            KNOWLEDGE_SEARCH_SUBJECT,
            KnowledgeSearchRequest,
            on_search,
            description="Hybrid search of one tenant's messages and files "
            "(KnowledgeSearchRequest -> KnowledgeSearchReply | QueryError).",
            hint=SEARCH_HINT,
            unavailable=unavailable,
            max_workers=CONCURRENCY,
        ),
        QueryRoute(
            KNOWLEDGE_SOURCES_SUBJECT,
            KnowledgeSourcesRequest,
            on_sources,
            description="An agent's knowledge sources with status and counts "
            "(KnowledgeSourcesRequest -> KnowledgeSourcesReply | QueryError).",
            hint="list fewer sources per agent",
            unavailable=unavailable,
            max_workers=CONCURRENCY,
        ),
    ]


def fit_embed(reply: EmbedReply, limit: int) -> EmbedReply:
    """The vectors, or ``too_large`` saying how many texts would fit (vectors are not
    dropped: a client needs one per text)."""
    size = json_size(reply)
    if size <= limit:
        return reply
    per_text = max(1, size // max(1, len(reply.vectors)))
    fits = max(1, (limit - PACK_SLACK) // per_text)
    raise QueryFailed(
        ErrorCode.too_large,
        f"{len(reply.vectors)} vectors make a {size}-byte reply; one message carries at "
        f"most {limit}",
        hint=f"send at most {fits} texts per request",
        detail={"size": size, "limit": limit, "fits": fits},
    )
