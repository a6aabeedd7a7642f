"""SQL of the LangGraph tables (sql/checkpoint/005_langgraph.sql, 006) that put, put_writes
and the reads ask (lg_commands), and the rows of a put and of pending writes as its
parameters and results; the deletes, copies and prunes of lg_maintain are in
lg_maintain_sql. Every statement names its tenant; the connection is scoped to it too
(row-level security)."""

from __future__ import annotations

from typing import Any

import asyncpg

from contracts.langgraph import BlobIn, PendingWrite, PutRequest
from services.checkpointer.lg_delta import Encoded, unpack_write
from services.runtime.db import Connection

# ---- writes -------------------------------------------------------------------------

# One statement per put (atomic on its own, no BEGIN/COMMIT round trips): the new blobs,
# then the checkpoint; the blobs' ids come back for the cache. A delta the client sent
# ($19) must name an earlier version of the same channel of this thread, in this tenant:
# any other base becomes 0, which the foreign key refuses (a frame could otherwise copy
# another thread's bytes out of its dictionary); its depth is its base's, plus one.
PUT = """
WITH blobs AS (
    INSERT INTO checkpoint.lg_blobs
           (tenant_id, thread_id, checkpoint_ns, channel, version, type, codec, base_id,
            depth, raw_bytes, data)
    SELECT $1, $2, $3, b.channel, b.version, b.type, b.codec,
           CASE WHEN b.sent AND p.blob_id IS NULL THEN 0 ELSE b.base_id END,
           CASE WHEN b.sent THEN coalesce(p.depth, 0) + 1 ELSE b.depth END,
           b.raw_bytes, b.data
      FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::int[],
                  $10::int[], $11::bytea[], $19::bool[])
           AS b(channel, version, type, codec, base_id, depth, raw_bytes, data, sent)
      LEFT JOIN checkpoint.lg_blobs p
        ON b.sent AND p.blob_id = b.base_id AND p.tenant_id = $1 AND p.thread_id = $2
       AND p.checkpoint_ns = $3 AND p.channel = b.channel
        ON CONFLICT DO NOTHING
    RETURNING channel, version, blob_id, depth
), cp AS (
    INSERT INTO checkpoint.lg_checkpoints
           (tenant_id, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
            body_type, body, channels, versions, metadata)
    VALUES ($1, $2, $3, $12, $13, $14, $15, $16, $17, $18::jsonb)
        ON CONFLICT (tenant_id, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
       SET body_type = EXCLUDED.body_type, body = EXCLUDED.body,
           channels = EXCLUDED.channels, versions = EXCLUDED.versions,
           metadata = EXCLUDED.metadata
)
SELECT channel, version, blob_id, depth FROM blobs
"""

_WRITES_INSERT = """
INSERT INTO checkpoint.lg_writes
       (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel,
        type, codec, data)
SELECT $1, $2, $3, $4, $5, $6, w.idx, w.channel, w.type, w.codec, w.data
  FROM unnest($7::int[], $8::text[], $9::text[], $10::text[], $11::bytea[])
       AS w(idx, channel, type, codec, data)
    ON CONFLICT (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""
INSERT_WRITES = _WRITES_INSERT + " DO NOTHING"
UPSERT_WRITES = (
    _WRITES_INSERT + " DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type,"
    " codec = EXCLUDED.codec, data = EXCLUDED.data"
)

# ---- reads --------------------------------------------------------------------------

# A checkpoint row with its pending writes as arrays (one round trip, not two).
CHECKPOINT_COLUMNS = """c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id,
       c.body_type, c.body, c.channels, c.versions, c.metadata::text AS metadata,
       w.w_task_id, w.w_task_path, w.w_idx, w.w_channel, w.w_type, w.w_codec, w.w_data"""
WRITES_OF_ROW = """LEFT JOIN LATERAL (
    SELECT array_agg(x.task_id ORDER BY x.task_path, x.task_id, x.idx) AS w_task_id,
           array_agg(x.task_path ORDER BY x.task_path, x.task_id, x.idx) AS w_task_path,
           array_agg(x.idx ORDER BY x.task_path, x.task_id, x.idx) AS w_idx,
           array_agg(x.channel ORDER BY x.task_path, x.task_id, x.idx) AS w_channel,
           array_agg(x.type ORDER BY x.task_path, x.task_id, x.idx) AS w_type,
           array_agg(x.codec ORDER BY x.task_path, x.task_id, x.idx) AS w_codec,
           array_agg(x.data ORDER BY x.task_path, x.task_id, x.idx) AS w_data
      FROM checkpoint.lg_writes x
     WHERE x.tenant_id = c.tenant_id AND x.thread_id = c.thread_id
       AND x.checkpoint_ns = c.checkpoint_ns AND x.checkpoint_id = c.checkpoint_id
) w ON true"""

LATEST = f"""
SELECT {CHECKPOINT_COLUMNS}
  FROM (SELECT * FROM checkpoint.lg_checkpoints
         WHERE tenant_id = $1 AND thread_id = $2 AND checkpoint_ns = $3
         ORDER BY checkpoint_id DESC LIMIT 1) c
  {WRITES_OF_ROW}
"""

ONE = f"""
SELECT {CHECKPOINT_COLUMNS} FROM checkpoint.lg_checkpoints c
  {WRITES_OF_ROW}
 WHERE c.tenant_id = $1 AND c.thread_id = $2 AND c.checkpoint_ns = $3
   AND c.checkpoint_id = $4
"""

# Optional filters are NULL; `before` is the cursor of LangGraph's list.
LIST = f"""
SELECT {CHECKPOINT_COLUMNS}
  FROM (SELECT * FROM checkpoint.lg_checkpoints
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR thread_id = $2)
           AND ($3::text IS NULL OR checkpoint_ns = $3)
           AND ($4::text IS NULL OR checkpoint_id = $4)
           AND ($5::jsonb IS NULL OR metadata @> $5::jsonb)
           AND ($6::text IS NULL OR checkpoint_id < $6)
         ORDER BY checkpoint_id DESC
         LIMIT $7) c
  {WRITES_OF_ROW}
 ORDER BY c.checkpoint_id DESC
"""

# The blobs asked for and the chain of bases each delta needs, stopping at a row the
# service has decoded already ($6: those ids; their bytes are not sent) and at a row the
# client holds ($7: asked for only, its bytes not sent and its chain not walked).
BLOB_CHAINS = """
WITH RECURSIVE chain AS (
    SELECT b.blob_id, b.base_id, b.codec, b.thread_id, b.checkpoint_ns, b.channel, b.version,
           b.type, b.depth,
           CASE WHEN b.blob_id = ANY ($6::bigint[]) OR b.blob_id = ANY ($7::bigint[])
                THEN NULL ELSE b.data END,
           b.blob_id = ANY ($7::bigint[]) AS held
      FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
           AS k(thread_id, checkpoint_ns, channel, version)
      JOIN checkpoint.lg_blobs b
        ON b.tenant_id = $1 AND b.thread_id = k.thread_id AND b.checkpoint_ns = k.checkpoint_ns
       AND b.channel = k.channel AND b.version = k.version
    UNION
    SELECT p.blob_id, p.base_id, p.codec, p.thread_id, p.checkpoint_ns, p.channel, p.version,
           p.type, p.depth, CASE WHEN p.blob_id = ANY ($6::bigint[]) THEN NULL ELSE p.data END,
           false
      FROM chain c JOIN checkpoint.lg_blobs p ON p.blob_id = c.base_id AND p.tenant_id = $1
     WHERE c.base_id IS NOT NULL AND NOT c.held AND NOT (c.blob_id = ANY ($6::bigint[]))
)
SELECT blob_id, base_id, codec, thread_id, checkpoint_ns, channel, version, type, depth,
       data, held
  FROM chain
"""

# ---- rows ---------------------------------------------------------------------------


async def insert_put(
    conn: Connection, req: PutRequest, encoded: list[tuple[BlobIn, Encoded]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """The new blobs' (id, depth) by (channel, version)."""
    cols: list[list[Any]] = [[] for _ in range(9)]
    for blob, enc in encoded:
        empty = blob.type == "empty"
        sent = blob.base_id is not None and not empty
        row = (
            blob.channel,
            blob.version,
            blob.type,
            "raw" if empty else enc.codec,
            None if empty else enc.base_id,
            0 if empty else enc.depth,
            (blob.raw_bytes or 0) if sent else len(blob.data or b""),
            None if empty else enc.data,
            sent,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    channels = list(req.channel_versions)
    rows = await conn.fetch(
        PUT,
        req.tenant_id,
        req.thread_id,
        req.checkpoint_ns,
        *cols[:8],
        req.checkpoint_id,
        req.parent_checkpoint_id,
        req.body.type,
        req.body.data or b"",
        channels,
        [req.channel_versions[c] for c in channels],
        req.metadata,  # the pool encodes json/jsonb
        cols[8],
    )
    return {(r["channel"], r["version"]): (r["blob_id"], r["depth"]) for r in rows}


def writes_of(row: asyncpg.Record) -> list[PendingWrite]:
    """The pending writes folded into a checkpoint row (arrays, in LangGraph's order)."""
    if row["w_task_id"] is None:
        return []
    return [
        PendingWrite(task_id=t, task_path=p, idx=i, channel=c, type=k, data=unpack_write(codec, d))
        for t, p, i, c, k, codec, d in zip(
            row["w_task_id"],
            row["w_task_path"],
            row["w_idx"],
            row["w_channel"],
            row["w_type"],
            row["w_codec"],
            row["w_data"],
            strict=True,
        )
    ]
