-- engram.embedding.ready now goes through the runtime's outbox (event_outbox, see
-- sql/runtime/003_outbox.sql): the transaction that stores a memory's last vector adds the
-- event itself, so memory_outbox, and publishing from it, go.
--
-- Rows still pending here are not converted into event_outbox rows (the envelope, its
-- mean vector and its event id are built by the worker, not in SQL). Instead the chunks
-- of those memories are queued again: the pump finds their vectors already stored (it
-- encodes nothing), writes them (a no-op) and, in that transaction, announces each memory
-- that is complete under the same deterministic event id (memory, model, content hash).
-- An event published just before this migration is dropped by JetStream as a duplicate
-- within its window, and after it by the memory service's inbox (the same event id).
INSERT INTO embed_queue (chunk_id)
SELECT c.chunk_id
  FROM chunks c
  JOIN (SELECT DISTINCT memory_id FROM memory_outbox) o
    ON c.source_type = 'memory' AND c.source_id = o.memory_id
ON CONFLICT (chunk_id) DO NOTHING;

DROP TABLE memory_outbox;
