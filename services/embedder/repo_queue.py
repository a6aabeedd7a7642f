"""SQL of the embedding pump: leasing queued chunks, known vectors, writing vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from pgvector import Vector

from services.embedder.repo import NOTIFY_CHANNEL
from services.runtime.db import Connection


@dataclass(frozen=True)
class Claimed:
    chunk_id: int
    tenant_id: str
    source_type: str
    source_id: UUID
    content_hash: str
    text: str
    tokens: int


@dataclass(frozen=True)
class LeasePolicy:
    lease_s: float  # a claim holds its chunks this long
    max_attempts: int  # leases a chunk may lose (its holder died) before it is given up
    given_up_retry_s: float  # a given-up chunk is leased again this long after its last lease


async def claim(conn: Connection, limit: int, token: UUID, policy: LeasePolicy) -> list[Claimed]:
    """Lease up to ``limit`` queued chunks (free, or whose lease ran out) to ``token``; a
    given-up chunk only once it has waited ``given_up_retry_s``."""
    rows = await conn.fetch(
        """WITH picked AS (
               SELECT chunk_id FROM embedder.embed_queue
                WHERE (lease_until IS NULL OR lease_until < now())
                  AND (attempts < $4 OR lease_until < now() - make_interval(secs => $5))
                ORDER BY chunk_id
                LIMIT $1
                  FOR UPDATE SKIP LOCKED),
           leased AS (
               UPDATE embedder.embed_queue q
                  SET lease_until = now() + make_interval(secs => $2), lease_token = $3,
                      attempts = q.attempts + 1
                 FROM picked WHERE q.chunk_id = picked.chunk_id
               RETURNING q.chunk_id)
           SELECT c.chunk_id, c.tenant_id, c.source_type, c.source_id, c.content_hash, c.text,
                  c.tokens
             FROM leased JOIN embedder.chunks c USING (chunk_id)
            ORDER BY c.chunk_id""",
        limit,
        policy.lease_s,
        token,
        policy.max_attempts,
        policy.given_up_retry_s,
    )
    return [Claimed(*r) for r in rows]


async def given_up(conn: Connection, max_attempts: int) -> int:
    """Queued chunks that lost ``max_attempts`` leases."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM embedder.embed_queue WHERE attempts >= $1", max_attempts
        )
    )


async def known_vectors(
    conn: Connection, model_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], np.ndarray]:
    """Vectors already stored for (tenant, text hash) pairs."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (k.tenant, k.hash) k.tenant, k.hash, v.embedding
             FROM unnest($2::text[], $3::text[]) AS k(tenant, hash)
             JOIN embedder.chunks c ON c.tenant_id = k.tenant AND c.content_hash = k.hash
             JOIN embedder.chunk_vectors v ON v.chunk_id = c.chunk_id AND v.model_id = $1""",
        model_id,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r[0], r[1]): r[2].to_numpy() for r in rows}


async def write_vectors(
    conn: Connection,
    model_id: str,
    chunk_ids: Sequence[int],
    vectors: Sequence[np.ndarray],
    token: UUID,
) -> None:
    """Store vectors (skipping chunks replaced meanwhile) and drop their queue rows that
    this lease still holds (a row re-queued by a model switch stays)."""
    await conn.execute(
        """INSERT INTO embedder.chunk_vectors (model_id, chunk_id, tenant_id, source_type,
               conversation_id, agent_id, source_at, embedding)
           SELECT $1, c.chunk_id, c.tenant_id, c.source_type, c.conversation_id, c.agent_id,
                  c.source_at, v.embedding
             FROM unnest($2::bigint[], $3::vector[]) AS v(chunk_id, embedding)
             JOIN embedder.chunks c USING (chunk_id)
           ON CONFLICT (model_id, chunk_id) DO NOTHING""",
        model_id,
        list(chunk_ids),
        [Vector(v) for v in vectors],
    )
    await conn.execute(
        "DELETE FROM embedder.embed_queue WHERE chunk_id = ANY($1::bigint[]) AND lease_token = $2",
        list(chunk_ids),
        token,
    )


async def release(conn: Connection, token: UUID, chunk_ids: Sequence[int]) -> None:
    """Give back leased chunks that were not embedded (shutdown)."""
    await conn.execute(
        """UPDATE embedder.embed_queue SET lease_until = NULL, lease_token = NULL,
                  attempts = greatest(attempts - 1, 0)
            WHERE chunk_id = ANY($1::bigint[]) AND lease_token = $2""",
        list(chunk_ids),
        token,
    )


async def backfill(conn: Connection, model_id: str) -> int:
    """Queue every chunk that has no vector for ``model_id`` (after a model switch)."""
    status = await conn.execute(
        """INSERT INTO embedder.embed_queue (chunk_id)
           SELECT c.chunk_id FROM embedder.chunks c
            WHERE NOT EXISTS (SELECT 1 FROM embedder.chunk_vectors v
                               WHERE v.model_id = $1 AND v.chunk_id = c.chunk_id)
           ON CONFLICT (chunk_id) DO UPDATE SET lease_until = NULL, lease_token = NULL""",
        model_id,
    )
    count = int(status.split()[-1])
    if count:
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return count
