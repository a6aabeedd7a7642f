"""The statements of knowledge search (run by ``repo_search``): the vector side's, built for
the searched model and the request's filters, and the full-text side's.

The vector side is an HNSW index scan on the searched model's partial index (a typed
expression, ``embedding::vector(D)``, because models differ in dimensions). Filters are
applied during the scan and pgvector 0.8's iterative scan keeps the scan going until
enough rows pass them (``hnsw.iterative_scan = relaxed_order``; the candidates are sorted
by exact distance afterwards), so a filtered search still finds k hits when k exist.

The full-text side is ``embedder.rank_text`` (sql/embedder/008_text_search_as_caller.sql):
chunks with every word of the query first, then, only if fewer than ``limit``, chunks with
some of them, each tier found through the GIN index on (tenant_id, tsv).
"""

from __future__ import annotations

from typing import Any

from contracts.embedding import KnowledgeFilters, KnowledgeScope, KnowledgeSource, SourceType
from services.embedder.logic import sql_literal

# In the order of repo_search.Candidate's fields (a row is read as Candidate(*row)).
COLUMNS = """c.chunk_id, c.source_type, c.source_id, c.chunk_index, c.conversation_id,
             c.agent_id, c.source_at, c.text, c.knowledge_source_id, c.document_id"""
DOCUMENT = [SourceType.document.value]


def _filters(
    f: KnowledgeFilters, alias: str, params: list[Any], agent: KnowledgeScope | None = None
) -> str:
    """AND-ed conditions on ``alias``; values are appended to ``params`` ($3 on). With an
    agent scope: that agent's knowledge documents only (its other filters but the time
    range do not apply: documents have no conversation, and the agent is given)."""

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params) + 2}"

    if agent is not None:
        conds = [
            f"{alias}.source_type = ANY({param(DOCUMENT)}::text[])",
            f"{alias}.agent_id = {param(agent.agent_id)}::text",
        ]
        if agent.source_ids:
            # chunk_vectors has no knowledge_source_id: the source's chunks, by their ids
            # (a narrow filter: the exact fallback of vector_candidates finds them all).
            conds.append(
                f"{alias}.chunk_id IN (SELECT k.chunk_id FROM embedder.chunks k"
                f" WHERE k.tenant_id = $1"
                f" AND k.knowledge_source_id = ANY({param(list(agent.source_ids))}::uuid[]))"
            )
    else:
        kinds = [s.value for s in (f.source_types or list(KnowledgeSource))]
        conds = [f"{alias}.source_type = ANY({param(kinds)}::text[])"]
        if f.conversation_ids:
            ids = list(f.conversation_ids)
            conds.append(f"{alias}.conversation_id = ANY({param(ids)}::uuid[])")
        if f.agent_ids:
            conds.append(f"{alias}.agent_id = ANY({param(list(f.agent_ids))}::text[])")
    if f.since:
        conds.append(f"{alias}.source_at >= {param(f.since)}::timestamptz")
    if f.until:
        conds.append(f"{alias}.source_at < {param(f.until)}::timestamptz")
    return " AND ".join(conds)


def vector_sql(
    model_id: str,
    dimensions: int,
    filters: KnowledgeFilters,
    *,
    exact: bool = False,
    agent: KnowledgeScope | None = None,
) -> tuple[str, list[Any]]:
    """$1 tenant, $2 query vector, then the filter parameters, then the limit."""
    params: list[Any] = []
    where = _filters(filters, "v", params, agent)
    typed = f"(v.embedding::vector({int(dimensions)}))"
    # "+ 0" hides the ordering from the HNSW index: an exact sort of the filtered rows.
    order = f"({typed} <=> $2::vector) + 0" if exact else f"{typed} <=> $2::vector"
    sql = f"""
        WITH vec AS MATERIALIZED (
            SELECT v.chunk_id, {typed} <=> $2::vector AS distance
              FROM embedder.chunk_vectors v
             WHERE v.model_id = {sql_literal(model_id)} AND v.tenant_id = $1 AND {where}
             ORDER BY {order}
             LIMIT ${len(params) + 3})
        SELECT {COLUMNS}, vec.distance, NULL::bigint AS text_rank
          FROM vec JOIN embedder.chunks c ON c.chunk_id = vec.chunk_id AND c.tenant_id = $1"""
    return sql, params


# $1 query text, $2 source types, $3 conversations, $4 agents, $5 since, $6 until, $7 limit,
# $8 most matches ranked per tier, $9 knowledge sources (rank_text in
# sql/embedder/008_text_search_as_caller.sql: every word first, then any word).
RANK_TEXT = """
    SELECT chunk_id, text_rank
      FROM embedder.rank_text($1, $2::text[], $3::uuid[], $4::text[], $5::timestamptz,
                              $6::timestamptz, $7, $8, $9::uuid[])"""
# The ranked chunks, read under the one-tenant policy ($1 tenant, $2 ids, $3 their ranks).
READ_CHUNKS = f"""
    SELECT {COLUMNS}, NULL::float8 AS distance, t.text_rank
      FROM unnest($2::bigint[], $3::bigint[]) AS t(chunk_id, text_rank)
      JOIN embedder.chunks c ON c.chunk_id = t.chunk_id AND c.tenant_id = $1
     ORDER BY t.text_rank"""
