"""SQL of the LangGraph store (query.store.*): items, their vectors, and the semantic
memory an indexed item is. Every call runs inside the batch's transaction, scoped to its
tenant (row-level security), and names the tenant in its WHERE as well."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from contracts.store import ListNamespacesOp, SearchOp, StoreItem
from services.memory.store_sql import (
    Where,
    exact_prefix,
    namespace_prefix,
    namespace_suffix,
    value_filter,
)
from services.runtime.db import Connection

LIVE = "(i.expires_at IS NULL OR i.expires_at > now())"
ITEM = "i.namespace, i.key, i.value, i.created_at, i.updated_at"
REFRESH = "expires_at = now() + ttl_minutes * interval '1 minute'"


@dataclass(frozen=True)
class StoreMemory:
    """The semantic memory of an indexed item."""

    memory_id: UUID
    agent_id: str
    concept: str
    text: str
    content_hash: bytes
    tokens: int
    importance: float
    decay_rate: float
    model_id: str
    vector: np.ndarray


def _item(row: Any, score: float | None = None) -> StoreItem:
    return StoreItem(
        namespace=list(row["namespace"]),
        key=row["key"],
        value=row["value"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        score=score,
    )


async def get(
    conn: Connection, tenant: str, namespace: list[str], key: str, refresh: bool
) -> StoreItem | None:
    if refresh:
        await refresh_ttl(conn, tenant, [namespace], [key])
    row = await conn.fetchrow(
        f"SELECT {ITEM} FROM memory.store_items i"
        f" WHERE i.tenant_id = $1 AND i.namespace = $2 AND i.key = $3 AND {LIVE}",
        tenant,
        namespace,
        key,
    )
    return None if row is None else _item(row)


async def refresh_ttl(
    conn: Connection, tenant: str, namespaces: Sequence[list[str]], keys: Sequence[str]
) -> None:
    """Restart the time to live of live items (an expired one stays expired), and of the
    memories they are."""
    await conn.execute(
        f"""WITH hit AS (
                UPDATE memory.store_items i SET {REFRESH}
                  FROM unnest($2::text[], $3::text[]) AS k(ns, key)
                 WHERE i.tenant_id = $1 AND i.namespace = k.ns::text[] AND i.key = k.key
                   AND i.ttl_minutes IS NOT NULL AND {LIVE}
             RETURNING i.memory_id, i.expires_at)
            UPDATE memory.memories m SET expires_at = hit.expires_at
              FROM hit WHERE m.tenant_id = $1 AND m.memory_id = hit.memory_id""",
        tenant,
        # text[][] must be rectangular: each namespace travels as its array literal.
        [_array_literal(ns) for ns in namespaces],
        list(keys),
    )


def _array_literal(labels: Sequence[str]) -> str:
    quoted = ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in labels)
    return "{" + ",".join(quoted) + "}"


async def delete(conn: Connection, tenant: str, namespace: list[str], key: str) -> None:
    await conn.execute(
        """WITH gone AS (
               DELETE FROM memory.store_items
                WHERE tenant_id = $1 AND namespace = $2 AND key = $3
            RETURNING memory_id)
           DELETE FROM memory.memories m USING gone
            WHERE m.tenant_id = $1 AND m.memory_id = gone.memory_id""",
        tenant,
        namespace,
        key,
    )


async def put(
    conn: Connection,
    tenant: str,
    namespace: list[str],
    key: str,
    *,
    value: dict[str, Any],
    ttl_minutes: float | None,
    memory_id: UUID | None,
) -> None:
    """Insert or replace the item (created_at stays); its old vectors go, and so does its
    memory when it is no longer indexed (``memory_id`` None). One statement: a put of an
    unindexed item is one round trip (its parts all read the snapshot before it)."""
    await conn.execute(
        """WITH old AS (
               SELECT memory_id FROM memory.store_items
                WHERE tenant_id = $1 AND namespace = $2 AND key = $3),
           item AS (
               INSERT INTO memory.store_items AS i
                      (tenant_id, namespace, key, value, ttl_minutes, expires_at, memory_id)
               VALUES ($1, $2, $3, $4, $5, now() + $5 * interval '1 minute', $6)
               ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET
                   value = EXCLUDED.value, updated_at = now(),
                   ttl_minutes = EXCLUDED.ttl_minutes, expires_at = EXCLUDED.expires_at,
                   memory_id = EXCLUDED.memory_id),
           vectors AS (
               DELETE FROM memory.store_vectors
                WHERE tenant_id = $1 AND namespace = $2 AND key = $3)
           DELETE FROM memory.memories m USING old
            WHERE $6::uuid IS NULL AND m.tenant_id = $1 AND m.memory_id = old.memory_id
              AND m.origin = 'store'""",
        tenant,
        namespace,
        key,
        value,
        ttl_minutes,
        memory_id,
    )


async def add_vectors(
    conn: Connection,
    tenant: str,
    namespace: list[str],
    key: str,
    *,
    model_id: str,
    vectors: Sequence[tuple[str, np.ndarray]],
) -> None:
    await conn.executemany(
        """INSERT INTO memory.store_vectors (tenant_id, namespace, key, path, model_id, embedding)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        [(tenant, namespace, key, path, model_id, v) for path, v in vectors],
    )


async def upsert_memory(
    conn: Connection, tenant: str, m: StoreMemory, ttl_minutes: float | None
) -> None:
    """The item as a semantic memory, with its vector (so query.memory.search finds it at
    once). A memory forgotten through memory.forget stays forgotten (forgetting is final)."""
    await conn.execute(
        """INSERT INTO memory.memories AS m (tenant_id, memory_id, agent_id, memory_type, text,
               content, content_hash, tokens, model_id, embedding, importance, decay_rate,
               decayed_at, expires_at, origin, written_at)
           VALUES ($1, $2, $3, 'semantic', $4, $5, $6, $7, $8, $9, $10, $11, now(),
                   now() + $12 * interval '1 minute', 'store', now())
           ON CONFLICT (tenant_id, memory_id) DO UPDATE SET
               agent_id = EXCLUDED.agent_id, memory_type = 'semantic', status = 'active',
               superseded_by = NULL, text = EXCLUDED.text, content = EXCLUDED.content,
               content_hash = EXCLUDED.content_hash, tokens = EXCLUDED.tokens,
               model_id = EXCLUDED.model_id, embedding = EXCLUDED.embedding,
               importance = EXCLUDED.importance, decay_rate = EXCLUDED.decay_rate,
               decayed_at = now(), expires_at = EXCLUDED.expires_at,
               written_at = now(), updated_at = now()
           WHERE m.status <> 'forgotten'""",
        tenant,
        m.memory_id,
        m.agent_id,
        m.text,
        {"concept": m.concept, "definition": m.text},
        m.content_hash,
        m.tokens,
        m.model_id,
        m.vector,
        m.importance,
        m.decay_rate,
        ttl_minutes,
    )


async def search(
    conn: Connection,
    tenant: str,
    op: SearchOp,
    query: tuple[str, np.ndarray] | None,
) -> list[StoreItem]:
    """Exact (not approximate) ranking: every vector of the live, filtered items under the
    prefix is compared, so a filter never empties a page that an index scan cut short."""
    if query is None:
        score, order = "NULL::float8", "i.updated_at DESC, i.namespace, i.key"
        head: list[Any] = [tenant]
    else:
        score = """(SELECT max(CASE WHEN v.model_id = $2 THEN 1 - (v.embedding <=> $3) END)
                      FROM memory.store_vectors v
                     WHERE v.tenant_id = i.tenant_id AND v.namespace = i.namespace
                       AND v.key = i.key)"""
        order = "score DESC NULLS LAST, i.updated_at DESC, i.namespace, i.key"
        head = [tenant, *query]
    where = Where(first=len(head) + 1)
    exact_prefix(where, op.namespace_prefix, "i.namespace")
    value_filter(where, op.filter, "i.value")
    lim = len(head) + len(where.params) + 1
    rows = await conn.fetch(
        f"SELECT {ITEM}, {score} AS score FROM memory.store_items i"
        f" WHERE i.tenant_id = $1 AND {LIVE}{where.sql()}"
        f" ORDER BY {order} LIMIT ${lim} OFFSET ${lim + 1}",
        *head,
        *where.params,
        op.limit,
        op.offset,
    )
    items = [_item(r, None if r["score"] is None else float(r["score"])) for r in rows]
    if op.refresh_ttl and items:
        await refresh_ttl(conn, tenant, [i.namespace for i in items], [i.key for i in items])
    return items


async def list_namespaces(conn: Connection, tenant: str, op: ListNamespacesOp) -> list[list[str]]:
    where = Where(first=2)
    namespace_prefix(where, op.prefix or [], "i.namespace")
    namespace_suffix(where, op.suffix or [], "i.namespace")
    depth = "i.namespace" if op.max_depth is None else f"i.namespace[1:{int(op.max_depth)}]"
    n = 2 + len(where.params)
    rows = await conn.fetch(
        f"SELECT DISTINCT {depth} AS ns FROM memory.store_items i"
        f" WHERE i.tenant_id = $1 AND {LIVE}{where.sql()}"
        f" ORDER BY ns LIMIT ${n} OFFSET ${n + 1}",
        tenant,
        *where.params,
        op.limit,
        op.offset,
    )
    return [list(r["ns"]) for r in rows]


async def sweep(conn: Connection, tenant: str) -> int:
    """Delete the expired items and the memories they are."""
    gone = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM memory.store_items
                WHERE tenant_id = $1 AND expires_at <= now()
            RETURNING memory_id),
           mems AS (
               DELETE FROM memory.memories m USING gone
                WHERE m.tenant_id = $1 AND m.memory_id = gone.memory_id)
           SELECT count(*) FROM gone""",
        tenant,
    )
    return int(gone or 0)
