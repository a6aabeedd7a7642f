"""SQL of the LangGraph tables' deletes, copies and prunes (lg_maintain): statements only,
as lg_repo holds those of puts and reads. Every statement names its tenant; the
connection is scoped to it too (row-level security)."""

DELETE_THREAD = (
    "DELETE FROM checkpoint.lg_writes WHERE tenant_id = $1 AND thread_id = ANY ($2::text[])",
    "DELETE FROM checkpoint.lg_blobs WHERE tenant_id = $1 AND thread_id = ANY ($2::text[])",
)
DELETE_CHECKPOINTS = """
DELETE FROM checkpoint.lg_checkpoints WHERE tenant_id = $1 AND thread_id = ANY ($2::text[])
"""

DELETE_RUNS = """
DELETE FROM checkpoint.lg_checkpoints WHERE tenant_id = $1 AND run_id = ANY ($2::text[])
RETURNING thread_id
"""

# keep_latest: all but the newest checkpoint of each namespace.
DELETE_ALL_BUT_LATEST = """
DELETE FROM checkpoint.lg_checkpoints c
 WHERE c.tenant_id = $1 AND c.thread_id = ANY ($2::text[])
   AND c.checkpoint_id < (SELECT max(m.checkpoint_id) FROM checkpoint.lg_checkpoints m
                           WHERE m.tenant_id = c.tenant_id AND m.thread_id = c.thread_id
                             AND m.checkpoint_ns = c.checkpoint_ns)
"""

# A thread whose graph uses a DeltaChannel rebuilds it from older checkpoints' writes:
# keep_latest would lose it silently (LangGraph's own saver refuses these threads too).
DELTA_THREADS = """
SELECT DISTINCT thread_id FROM checkpoint.lg_checkpoints
 WHERE tenant_id = $1 AND thread_id = ANY ($2::text[])
   AND (metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned')
"""

# After checkpoints were deleted: their writes, and every blob that no remaining
# checkpoint reads, directly or as the base of a delta it reads.
DELETE_ORPHAN_WRITES = """
DELETE FROM checkpoint.lg_writes w
 WHERE w.tenant_id = $1 AND w.thread_id = ANY ($2::text[])
   AND NOT EXISTS (SELECT 1 FROM checkpoint.lg_checkpoints c
                    WHERE c.tenant_id = w.tenant_id AND c.thread_id = w.thread_id
                      AND c.checkpoint_ns = w.checkpoint_ns
                      AND c.checkpoint_id = w.checkpoint_id)
"""
DELETE_ORPHAN_BLOBS = """
WITH RECURSIVE used AS (
    SELECT b.blob_id, b.base_id
      FROM checkpoint.lg_checkpoints c
      CROSS JOIN LATERAL unnest(c.channels, c.versions) AS r(channel, version)
      JOIN checkpoint.lg_blobs b
        ON b.tenant_id = c.tenant_id AND b.thread_id = c.thread_id
       AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = r.channel
       AND b.version = r.version
     WHERE c.tenant_id = $1 AND c.thread_id = ANY ($2::text[])
    UNION
    SELECT p.blob_id, p.base_id FROM used u JOIN checkpoint.lg_blobs p ON p.blob_id = u.base_id
)
DELETE FROM checkpoint.lg_blobs b
 WHERE b.tenant_id = $1 AND b.thread_id = ANY ($2::text[])
   AND NOT EXISTS (SELECT 1 FROM used u WHERE u.blob_id = b.blob_id)
"""

COPY_CHECKPOINTS = """
INSERT INTO checkpoint.lg_checkpoints
       (tenant_id, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, body_type,
        body, channels, versions, metadata)
SELECT tenant_id, $3, checkpoint_ns, checkpoint_id, parent_checkpoint_id, body_type, body,
       channels, versions, metadata
  FROM checkpoint.lg_checkpoints WHERE tenant_id = $1 AND thread_id = $2
    ON CONFLICT DO NOTHING
"""
COPY_WRITES = """
INSERT INTO checkpoint.lg_writes
       (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel,
        type, codec, data)
SELECT tenant_id, $3, checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel, type,
       codec, data
  FROM checkpoint.lg_writes WHERE tenant_id = $1 AND thread_id = $2
    ON CONFLICT DO NOTHING
"""
# Blobs are copied as keyframes-to-be (base_id NULL, codec kept) and their bases set in a
# second statement, once every copy has its new blob_id: a delta's base is a row of the
# same thread. Only the rows this copy inserted are touched.
COPY_BLOBS = """
INSERT INTO checkpoint.lg_blobs
       (tenant_id, thread_id, checkpoint_ns, channel, version, type, codec, base_id, depth,
        raw_bytes, data)
SELECT tenant_id, $3, checkpoint_ns, channel, version, type,
       CASE WHEN codec = 'delta' THEN 'zstd' ELSE codec END, NULL, depth, raw_bytes, data
  FROM checkpoint.lg_blobs WHERE tenant_id = $1 AND thread_id = $2
    ON CONFLICT DO NOTHING
RETURNING blob_id
"""
LINK_COPIED_BLOBS = """
UPDATE checkpoint.lg_blobs d
   SET codec = 'delta', base_id = nb.blob_id
  FROM checkpoint.lg_blobs s
  JOIN checkpoint.lg_blobs sb ON sb.blob_id = s.base_id
  JOIN checkpoint.lg_blobs nb
    ON nb.tenant_id = sb.tenant_id AND nb.thread_id = $3
   AND nb.checkpoint_ns = sb.checkpoint_ns AND nb.channel = sb.channel
   AND nb.version = sb.version
 WHERE d.blob_id = ANY ($4::bigint[])
   AND s.tenant_id = $1 AND s.thread_id = $2 AND s.checkpoint_ns = d.checkpoint_ns
   AND s.channel = d.channel AND s.version = d.version AND s.codec = 'delta'
"""
