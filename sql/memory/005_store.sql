-- LangGraph's long-term store (BaseStore) in the memory service: query.store.* commands
-- (services/memory/store.py, client engram_client.store.EngramStore; docs/langgraph.md).
--
--   store_items    one row per (tenant, namespace, key): the item's JSON value, its times
--                  and time to live. The item is the source of truth of the store API.
--   store_vectors  one vector per indexed text of an item (a path of its value), for
--                  search(query=...); deleted with the item.
--
-- An indexed item is also an engram memory (memory_id, a semantic memory of the store's
-- agent: concept = the key, definition = its indexed texts, importance = value.importance
-- or 0.5, expires_at = the item's), so query.memory.search and consolidation see it. A
-- separate table and not columns on memories: an item's value is any JSON object, which
-- memories' per-type content rules (content_fits_type) do not admit, and an unindexed
-- item (no text) is no memory at all. Both tables are tenant-scoped (row-level security
-- from the migration runner, forced, fail-closed).

CREATE TABLE store_items (
    tenant_id   text NOT NULL,
    namespace   text[] NOT NULL CHECK (cardinality(namespace) BETWEEN 1 AND 64),
    key         text NOT NULL,
    value       jsonb NOT NULL CHECK (jsonb_typeof(value) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    ttl_minutes double precision CHECK (ttl_minutes > 0),
    expires_at  timestamptz,
    memory_id   uuid,  -- the memory it is (memories.memory_id), when indexed
    PRIMARY KEY (tenant_id, namespace, key),
    CHECK ((ttl_minutes IS NULL) = (expires_at IS NULL))
);
-- Sweeps find the expired rows without reading the live ones.
CREATE INDEX store_items_expiry ON store_items (tenant_id, expires_at)
    WHERE expires_at IS NOT NULL;
-- search() without a query: newest first within a prefix.
CREATE INDEX store_items_updated ON store_items (tenant_id, updated_at DESC);

CREATE TABLE store_vectors (
    tenant_id text NOT NULL,
    namespace text[] NOT NULL,
    key       text NOT NULL,
    path      text NOT NULL,
    model_id  text NOT NULL,
    -- Any dimension (the embedder's model decides), as memories.embedding.
    embedding vector NOT NULL,
    PRIMARY KEY (tenant_id, namespace, key, path),
    FOREIGN KEY (tenant_id, namespace, key) REFERENCES store_items ON DELETE CASCADE
);

COMMENT ON TABLE store_items IS
    'LangGraph store items (query.store.batch): value, times, time to live; indexed items are memories too';
COMMENT ON COLUMN store_items.memory_id IS
    'the semantic memory this item is (memories.memory_id) when it has indexed texts, else NULL';
COMMENT ON COLUMN store_items.expires_at IS
    'reads never return the item after this; query.store.sweep deletes it (and its memory)';
COMMENT ON TABLE store_vectors IS
    'one vector per indexed text of a store item (search(query=...) scores by the best)';
