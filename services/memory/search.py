"""``query.memory.search``: the nearest memories of one agent (HNSW, pgvector iterative
scan so filters still fill the list), re-ranked by similarity, importance and recency.

The query's vector comes from the embedder (``query.embed``): this service loads no model.
Returning a memory counts as an access; the counts are written by ``AccessLog`` in the
background, so the reply never waits for that write. ``MemorySearch`` is the component
that answers: it owns the search connections and is the query route's handler.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.embedding import MAX_TOP_K
from contracts.errors import ErrorCode
from contracts.memory_search import (
    MemoryHit,
    MemorySearchReply,
    MemorySearchRequest,
    ScoreParts,
    ScoreWeights,
)
from services.memory.access import AccessLog
from services.memory.logic import Weights, recency
from services.memory.query_vector import ActiveModel, query_of
from services.memory.settings import MemorySettings
from services.runtime.component import NotStarted, WorkerContext
from services.runtime.db import create_pool, scope_session
from services.runtime.own_pool import OwnPool
from services.runtime.replies import QueryFailed, fit_items
from services.runtime.settings import WorkerSettings

log = logging.getLogger("engram.memory.search")


class MemorySearch(OwnPool):
    """The component behind ``query.memory.search``: its own connections (see
    ``create_search_pool``) from start to stop, the worker's NATS connection for
    ``query.embed``, and the access log the hits are counted in."""

    name = "memory-search"

    def __init__(self, settings: MemorySettings, access: AccessLog) -> None:
        super().__init__(settings.search_pool_max)
        self.settings = settings
        self.access = access
        self._nc: NatsClient | None = None
        self._active = ActiveModel(settings.query_model_ttl_s)

    async def open(self, settings: WorkerSettings) -> asyncpg.Pool:
        return await create_search_pool(self.settings)

    async def start(self, ctx: WorkerContext) -> None:
        await super().start(ctx)
        self._nc = ctx.nc

    async def answer(self, request: MemorySearchRequest, limit: int) -> MemorySearchReply:
        if self._nc is None:
            raise NotStarted("memory search")
        return await search(
            self.pool,
            self._nc,
            self.settings,
            self.access,
            request,
            reply_bytes=limit,
            active=self._active,
        )


def weights_of(settings: MemorySettings) -> Weights:
    return Weights(
        settings.weight_similarity,
        settings.weight_importance,
        settings.weight_recency,
        settings.recency_half_life_days,
    )


def search_sql(dimensions: int) -> str:
    # The cast matches the model's partial HNSW index (sql/memory: ensure_model_index).
    # The distance is selected as it is ordered by, so it is computed once per candidate
    # row (an exact sort reads thousands): ``1 - distance`` would be a second expression,
    # computed for every row before the sort. The similarity is ``rank``'s ``1 - distance``.
    cast = f"embedding::vector({int(dimensions)})"
    return f"""
SELECT memory_id, memory_type, status, text, content, user_id, conversation_id, importance,
       access_count, last_accessed_at, written_at,
       {cast} <=> $3::vector({int(dimensions)}) AS distance
  FROM memory.memories
 WHERE model_id = $4 AND tenant_id = $1 AND agent_id = $2
   AND status = ANY($5::text[])
   AND ($6::text[] IS NULL OR memory_type = ANY($6))
   AND ($7::real IS NULL OR importance >= $7)
   AND ($8::text IS NULL OR user_id = $8)
   AND ($9::uuid IS NULL OR conversation_id = $9)
   AND (expires_at IS NULL OR expires_at > $11)
 ORDER BY {cast} <=> $3::vector({int(dimensions)})
 LIMIT $10"""


async def create_search_pool(settings: MemorySettings) -> asyncpg.Pool:
    """Connections for searches only: the HNSW settings are fixed per session, and a
    connection is not reset on release (each search sets its tenant first, unless the
    session has it already), so a search is one or two round trips, not the four of a
    transaction."""
    ef_search = max(settings.ef_search, settings.candidates, MAX_TOP_K)
    return await create_pool(
        settings.database_url,
        role=settings.roles.reader,  # reads of the one tenant set, nothing else
        worker=True,
        min_size=1,
        max_size=settings.search_pool_max,
        vectors=True,
        keep_session=True,
        server_settings={
            "hnsw.ef_search": str(ef_search),
            "plan_cache_mode": "force_custom_plan",
            "hnsw.iterative_scan": "relaxed_order",
        },
    )


async def search(
    pool: asyncpg.Pool,
    nc: NatsClient,
    settings: MemorySettings,
    access: AccessLog,
    request: MemorySearchRequest,
    *,
    reply_bytes: int | None = None,
    active: ActiveModel | None = None,
) -> MemorySearchReply:
    """The hits; with ``reply_bytes`` (the reply's byte budget) the lowest ranked are left out
    (``omitted``) when they would not fit, and only the hits returned count as accessed.
    ``active``: the model last seen (a supplied query vector of it is used as it is)."""
    known = active if active is not None else ActiveModel(settings.query_model_ttl_s)
    model_id, query, use = await query_of(nc, known, request, settings.embed_timeout_s)
    f = request.filters
    statuses = ["active", "superseded"] if f.include_superseded else ["active"]
    limit = max(settings.candidates, request.top_k)
    now = datetime.now(UTC)  # expired memories are never returned, expire job or not
    async with pool.acquire() as conn:
        # Session-level: row-level security shows this tenant until a search sets another;
        # a session scoped to it already saves the round trip (never in a transaction
        # here, so no rollback undoes the setting behind scope_session's back).
        await scope_session(conn, request.tenant_id)
        rows = await conn.fetch(
            search_sql(len(query)),
            request.tenant_id,
            request.agent_id,
            query,
            model_id,
            statuses,
            [t.value for t in f.types] if f.types else None,
            f.min_importance,
            f.user_id,
            f.conversation_id,
            limit,
            now,
        )
    w = weights_of(settings)
    hits = rank(rows, w, now, request.top_k)
    reply = MemorySearchReply(
        model_id=model_id,
        query_vector=use,
        hits=hits,
        weights=ScoreWeights(
            similarity=w.similarity,
            importance=w.importance,
            recency=w.recency,
            recency_half_life_days=w.half_life_days,
        ),
    )
    if reply_bytes is not None:
        reply = fit_hits(reply, reply_bytes)
    access.record(request.tenant_id, [h.memory_id for h in reply.hits])
    return reply


def fit_hits(reply: MemorySearchReply, limit: int) -> MemorySearchReply:
    """Whole hits, best first, as many as fit in ``limit`` bytes (``omitted``: the rest);
    ``too_large`` when not even the best one does."""
    fitted, omitted = fit_items(reply, "hits", limit)
    if not omitted:
        return reply
    if not fitted.hits:
        raise QueryFailed(
            ErrorCode.too_large,
            "the best hit alone does not fit in one message",
            hint="narrow the filters (e.g. types) or the query",
            detail={"limit": limit},
        )
    return fitted.model_copy(update={"omitted": omitted})


def rank(
    rows: list[asyncpg.Record], weights: Weights, now: datetime, top_k: int
) -> list[MemoryHit]:
    """The ``top_k`` best candidates by the full score (ties: by id, for a stable order)."""
    scored = []
    for r in rows:
        fresh = recency(r["last_accessed_at"] or r["written_at"], now, weights.half_life_days)
        similarity = 1.0 - float(r["distance"])
        importance = min(1.0, max(0.0, float(r["importance"])))
        parts = (similarity, importance, fresh)
        scored.append((weights.score(*parts), r, parts))
    scored.sort(key=lambda s: (-s[0], str(s[1]["memory_id"])))
    return [  # hits (pydantic models) for the top k only
        MemoryHit(
            memory_id=r["memory_id"],
            memory_type=r["memory_type"],
            status=r["status"],
            text=r["text"],
            content=r["content"],
            user_id=r["user_id"],
            conversation_id=r["conversation_id"],
            access_count=r["access_count"],
            last_accessed_at=r["last_accessed_at"],
            score=score,
            parts=ScoreParts(similarity=similarity, importance=importance, recency=fresh),
        )
        for score, r, (similarity, importance, fresh) in scored[:top_k]
    ]
