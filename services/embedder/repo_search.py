"""Knowledge search's candidates: a vector statement and a full-text statement
(``repo_search_sql``), each in its own read-only transaction on its own pooled connection,
run at the same time; the fusion is done by the caller (logic.rrf).

Under a row-level security policy PostgreSQL cannot put the words of the full-text side
in the GIN index's condition (``@@`` is not leakproof, so the policy is checked first): it
would read every chunk of the tenant. So the matching runs as the service's cross-tenant
role (policy ``true``: no barrier), restricted by ``embedder.rank_text`` to the session's
tenant, and returns ids and ranks only; the chunks it names are then read here as the
reader, under the one-tenant policy, like the vector side's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
import numpy as np
from pgvector import Vector

from contracts.embedding import KnowledgeFilters, KnowledgeScope, KnowledgeSource
from services.embedder.repo_search_sql import DOCUMENT, RANK_TEXT, READ_CHUNKS, vector_sql
from services.runtime.db import Connection


@dataclass(frozen=True)
class Candidate:
    """A chunk either side found: its row (``repo_search_sql.COLUMNS``), then its distance
    and text rank."""

    chunk_id: int
    source_type: str
    source_id: UUID
    chunk_index: int
    conversation_id: UUID | None
    agent_id: str | None
    source_at: datetime
    text: str
    knowledge_source_id: UUID | None
    document_id: str | None
    distance: float | None  # cosine distance, if a vector candidate
    text_rank: int | None  # 1 = best, if a full-text candidate


@dataclass(frozen=True)
class SearchScope:
    """What both sides of one search share."""

    tenant_id: str
    reader: str  # the role a search acts as: reads of exactly this tenant
    filters: KnowledgeFilters
    limit: int  # candidates per side
    ef_search: int
    max_scan_tuples: int
    agent: KnowledgeScope | None = None  # one agent's knowledge sources only
    # The role that matches words (the cross-tenant role: no policy in the way of the GIN
    # index); None: the reader (correct, but it reads every chunk of the tenant).
    matcher: str | None = None


async def scope_search(
    conn: Connection, tenant_id: str, *, reader: str, ef_search: int, max_scan_tuples: int
) -> None:
    """The reader role and row-level security to one tenant, and the planner and HNSW
    settings, for this transaction."""
    await conn.execute(
        """SELECT set_config('role', $4, true),  -- SET LOCAL ROLE, in the same round trip
                  set_config('engram.tenant_id', $1, true),
                  set_config('hnsw.ef_search', $2, true),
                  set_config('hnsw.iterative_scan', 'relaxed_order', true),
                  set_config('hnsw.max_scan_tuples', $3, true),
                  -- an index (HNSW, GIN, or btree for a narrow filter), never a full scan
                  set_config('enable_seqscan', 'off', true),
                  -- plan for this tenant and these filters: asyncpg prepares a statement
                  -- once per connection, and after five runs PostgreSQL may switch to a
                  -- generic plan, blind to whether the tenant has 100 chunks or 10,000
                  set_config('plan_cache_mode', 'force_custom_plan', true)""",
        tenant_id,
        str(ef_search),
        str(max_scan_tuples),
        reader,
    )


async def vector_candidates(
    conn: Connection,
    scope: SearchScope,
    *,
    model_id: str,
    dimensions: int,
    query_vector: np.ndarray,
) -> list[Candidate]:
    """The nearest chunks, in a transaction after ``scope_search``. When the index scan
    returns fewer than ``limit`` (a filter so narrow that even the iterative scan gave
    up), the filtered rows are searched exactly: a filtered search finds k hits whenever
    k exist."""
    vector = Vector(query_vector)
    sql, params = vector_sql(model_id, dimensions, scope.filters, agent=scope.agent)
    found = await conn.fetch(sql, scope.tenant_id, vector, *params, scope.limit)
    if len(found) < scope.limit:
        sql, params = vector_sql(model_id, dimensions, scope.filters, exact=True, agent=scope.agent)
        found = await conn.fetch(sql, scope.tenant_id, vector, *params, scope.limit)
    return [Candidate(*r) for r in found]


async def text_candidates(
    conn: Connection, scope: SearchScope, *, query_text: str, max_matches: int
) -> list[Candidate]:
    """The best full-text matches, in a transaction after ``scope_search`` as
    ``scope.matcher``: the ids are matched and ranked as that role, then the chunks are
    read as ``scope.reader``, under the one-tenant policy."""
    f, agent = scope.filters, scope.agent
    agents: list[str] | None
    conversations: list[UUID] | None
    sources: list[UUID] | None
    if agent is not None:
        kinds, conversations, agents = DOCUMENT, None, [agent.agent_id]
        sources = list(agent.source_ids) if agent.source_ids else None
    else:
        kinds = [s.value for s in (f.source_types or list(KnowledgeSource))]
        conversations = list(f.conversation_ids) if f.conversation_ids else None
        agents, sources = (list(f.agent_ids) if f.agent_ids else None), None
    ranked = await conn.fetch(
        RANK_TEXT,
        query_text,
        kinds,
        conversations,
        agents,
        f.since,
        f.until,
        scope.limit,
        max_matches,
        sources,
    )
    if not ranked:
        return []
    if scope.matcher is not None:
        await conn.execute("SELECT set_config('role', $1, true)", scope.reader)
    ids, ranks = [r[0] for r in ranked], [r[1] for r in ranked]
    return [Candidate(*r) for r in await conn.fetch(READ_CHUNKS, scope.tenant_id, ids, ranks)]


class QueryVector(NamedTuple):
    model_id: str  # the model that encoded the query: its vectors only are searched
    dimensions: int
    vector: np.ndarray


async def candidates(
    pool: asyncpg.Pool,
    scope: SearchScope,
    *,
    query_vector: QueryVector | Awaitable[QueryVector] | None,
    query_text: str,
    max_matches: int,
) -> list[Candidate]:
    """Vector and full-text candidates (up to ``scope.limit`` each), one per chunk.

    The two sides run at the same time, each in its own transaction on its own pooled
    connection; the full-text side starts at once, so it runs while the query is still
    being encoded (``query_vector`` may be the encoding, awaited by the vector side).
    Each side holds one connection and waits for nothing else meanwhile, so searches
    cannot starve each other of connections however small the pool."""

    async def vector_side() -> list[Candidate]:
        assert query_vector is not None
        qv = await query_vector if inspect.isawaitable(query_vector) else query_vector
        return await _in_scope(
            pool,
            scope,
            lambda conn: vector_candidates(
                conn, scope, model_id=qv.model_id, dimensions=qv.dimensions, query_vector=qv.vector
            ),
        )

    async def text_side() -> list[Candidate]:
        return await _in_scope(
            pool,
            scope,
            lambda conn: text_candidates(
                conn, scope, query_text=query_text, max_matches=max_matches
            ),
            role=scope.matcher or scope.reader,
        )

    sides = [vector_side] if query_vector is not None else []
    sides += [text_side] if query_text else []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(side()) for side in sides]
    except BaseExceptionGroup as failed:  # one side failed; the other was cancelled
        raise failed.exceptions[0] from None
    merged: dict[int, Candidate] = {}
    for task in tasks:
        for c in task.result():
            seen = merged.get(c.chunk_id)
            merged[c.chunk_id] = c if seen is None else _both(seen, c)
    return list(merged.values())


async def _in_scope(
    pool: asyncpg.Pool,
    scope: SearchScope,
    side: Callable[[Connection], Awaitable[list[Candidate]]],
    *,
    role: str | None = None,
) -> list[Candidate]:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await scope_search(
            conn,
            scope.tenant_id,
            reader=role or scope.reader,
            ef_search=scope.ef_search,
            max_scan_tuples=scope.max_scan_tuples,
        )
        return await side(conn)


def _both(a: Candidate, b: Candidate) -> Candidate:
    """One chunk found by both sides: its distance and its text rank."""
    return dataclasses.replace(
        a,
        distance=a.distance if a.distance is not None else b.distance,
        text_rank=a.text_rank if a.text_rank is not None else b.text_rank,
    )
