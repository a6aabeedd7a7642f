"""SQL of knowledge search: one statement gathers the vector and the full-text candidates
of one tenant, with their chunks; the fusion is done by the caller (logic.rrf).

The vector side is an HNSW index scan on the searched model's partial index (a typed
expression, ``embedding::vector(D)``, because models differ in dimensions). Filters are
applied during the scan and pgvector 0.8's iterative scan keeps the scan going until
enough rows pass them (``hnsw.iterative_scan = relaxed_order``; the candidates are sorted
by exact distance afterwards), so a filtered search still finds k hits when k exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
from pgvector import Vector

from contracts.embedding import KnowledgeFilters, KnowledgeSource
from services.embedder.logic import sql_literal
from services.runtime.db import Connection

# The query's words, any of them (plainto_tsquery joins them with AND).
TSQUERY = "replace(plainto_tsquery('english', $3)::text, ' & ', ' | ')::tsquery"


@dataclass(frozen=True)
class Candidate:
    chunk_id: int
    source_type: str
    source_id: UUID
    chunk_index: int
    conversation_id: UUID | None
    agent_id: str | None
    source_at: datetime
    text: str
    distance: float | None  # cosine distance, if a vector candidate
    text_score: float | None  # ts_rank_cd, if a full-text candidate


def _filters(f: KnowledgeFilters, alias: str, params: list[Any]) -> str:
    """AND-ed conditions on ``alias``; values are appended to ``params`` ($4 on)."""

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params) + 3}"

    kinds = [s.value for s in (f.source_types or list(KnowledgeSource))]
    conds = [f"{alias}.source_type = ANY({param(kinds)}::text[])"]
    if f.conversation_ids:
        conds.append(f"{alias}.conversation_id = ANY({param(list(f.conversation_ids))}::uuid[])")
    if f.agent_ids:
        conds.append(f"{alias}.agent_id = ANY({param(list(f.agent_ids))}::text[])")
    if f.since:
        conds.append(f"{alias}.source_at >= {param(f.since)}::timestamptz")
    if f.until:
        conds.append(f"{alias}.source_at < {param(f.until)}::timestamptz")
    return " AND ".join(conds)


def _vector_part(
    model_id: str, dimensions: int, filters: KnowledgeFilters, params: list[Any], *, exact: bool
) -> str:
    typed = f"(v.embedding::vector({int(dimensions)}))"
    # "+ 0" hides the ordering from the HNSW index: an exact sort of the filtered rows.
    order = f"({typed} <=> $2::vector) + 0" if exact else f"{typed} <=> $2::vector"
    return f"""SELECT v.chunk_id, {typed} <=> $2::vector AS distance
                 FROM embedder.chunk_vectors v
                WHERE v.model_id = {sql_literal(model_id)} AND v.tenant_id = $1
                  AND {_filters(filters, "v", params)}
                ORDER BY {order}
                LIMIT $LIMIT"""


def _text_part(filters: KnowledgeFilters, params: list[Any], max_matches: int) -> str:
    # ts_rank_cd has to rank every match (no index gives a top-k by rank), so a query of
    # common words ranks at most max_matches of them: bounded latency, whatever the corpus.
    return f"""SELECT m.chunk_id, ts_rank_cd(m.tsv, m.query) AS score
                 FROM (SELECT c.chunk_id, c.tsv, q.query
                         FROM embedder.chunks c, (SELECT {TSQUERY} AS query) q
                        WHERE c.tenant_id = $1 AND c.tsv @@ q.query
                          AND {_filters(filters, "c", params)}
                        LIMIT {int(max_matches)}) m
                ORDER BY score DESC, m.chunk_id
                LIMIT $LIMIT"""


NO_VECTOR = (
    "SELECT NULL::bigint AS chunk_id, NULL::float8 AS distance WHERE $2::vector IS NULL AND false"
)
NO_TEXT = "SELECT NULL::bigint AS chunk_id, NULL::float4 AS score WHERE $3::text IS NULL AND false"


def search_sql(
    model_id: str,
    dimensions: int,
    filters: KnowledgeFilters,
    *,
    vector: bool,
    text: bool,
    exact: bool = False,
    max_matches: int = 2000,
) -> tuple[str, list[Any]]:
    """The statement and its filter parameters; it takes $1 tenant, $2 query vector,
    $3 query text, then the filter parameters, then the limit."""
    params: list[Any] = []
    vec = _vector_part(model_id, dimensions, filters, params, exact=exact) if vector else NO_VECTOR
    fts = _text_part(filters, params, max_matches) if text else NO_TEXT
    sql = f"""
        WITH vec AS MATERIALIZED ({vec}),
             fts AS MATERIALIZED ({fts})
        SELECT c.chunk_id, c.source_type, c.source_id, c.chunk_index, c.conversation_id,
               c.agent_id, c.source_at, c.text, vec.distance, fts.score
          FROM (SELECT chunk_id FROM vec UNION SELECT chunk_id FROM fts) ids
          JOIN embedder.chunks c ON c.chunk_id = ids.chunk_id AND c.tenant_id = $1
          LEFT JOIN vec ON vec.chunk_id = c.chunk_id
          LEFT JOIN fts ON fts.chunk_id = c.chunk_id"""
    return sql.replace("$LIMIT", f"${len(params) + 4}"), params


async def scope_search(
    conn: Connection, tenant_id: str, *, ef_search: int, max_scan_tuples: int
) -> None:
    """Row-level security to one tenant, and the HNSW scan settings, for this transaction."""
    await conn.execute(
        """SELECT set_config('engram.tenant_id', $1, true),
                  set_config('hnsw.ef_search', $2, true),
                  set_config('hnsw.iterative_scan', 'relaxed_order', true),
                  set_config('hnsw.max_scan_tuples', $3, true),
                  -- an index (HNSW, or btree for a narrow filter), never a full scan
                  set_config('enable_seqscan', 'off', true)""",
        tenant_id,
        str(ef_search),
        str(max_scan_tuples),
    )


async def candidates(
    conn: Connection,
    *,
    tenant_id: str,
    model_id: str,
    dimensions: int,
    query_vector: np.ndarray | None,
    query_text: str,
    filters: KnowledgeFilters,
    limit: int,
    max_matches: int = 2000,
) -> list[Candidate]:
    """Vector and full-text candidates (up to ``limit`` each), in a transaction after
    ``scope_search``. When the index scan returns fewer vector candidates than ``limit``
    (a filter so narrow that even the iterative scan gave up), the filtered rows are
    searched exactly: a filtered search finds k hits whenever k exist."""
    vector = Vector(query_vector) if query_vector is not None else None
    sql, params = search_sql(
        model_id,
        dimensions,
        filters,
        vector=vector is not None,
        text=bool(query_text),
        max_matches=max_matches,
    )
    found = [
        Candidate(*r) for r in await conn.fetch(sql, tenant_id, vector, query_text, *params, limit)
    ]
    if vector is None or sum(c.distance is not None for c in found) >= limit:
        return found
    sql, params = search_sql(model_id, dimensions, filters, vector=True, text=False, exact=True)
    exact = {
        r[0]: Candidate(*r) for r in await conn.fetch(sql, tenant_id, vector, "", *params, limit)
    }
    merged = []
    for c in found:  # keep the full-text scores; take the exact distances
        e = exact.pop(c.chunk_id, None)
        distance = e.distance if e is not None else None
        if distance is not None or c.text_score is not None:
            merged.append(dataclasses.replace(c, distance=distance))
    return merged + list(exact.values())
