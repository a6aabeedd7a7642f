-- embedder: the text of messages, files and memories cut into chunks, and their vectors.
--
--   sources        one row per message, file or memory: what text it has now (hash), or a
--                  tombstone once deleted (so a late or redelivered create does not revive it)
--   chunks         the text of each source cut to the model's window; full-text indexed
--   chunk_vectors  one vector per chunk and model; one HNSW index per model (partial, on a
--                  typed expression, because models differ in dimensions). A re-embed fills
--                  a new model's rows while the active model keeps serving, then switches.
--   models         the models with vectors stored; exactly one is active
--   embed_queue    chunks still waiting for a vector (leased by the embedding pump)
--   memory_outbox  engram.embedding.ready events to publish (written with the vectors)
--
-- Tenant isolation, second wall: row-level security on chunks and chunk_vectors. A session
-- sees nothing until it sets engram.tenant_id: to one tenant (searches), or to '*' (the
-- worker's own batch work across tenants).

-- In public (the migration runner puts this schema first on the search path).
CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;

CREATE TABLE models (
    model_id     text PRIMARY KEY,
    -- What a worker loads: a packaged alias, a path, or a sentence-transformers name.
    source       text NOT NULL,
    dimensions   integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    max_tokens   integer NOT NULL CHECK (max_tokens >= 1),
    state        text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retired_at   timestamptz
);
CREATE UNIQUE INDEX models_one_active ON models ((true)) WHERE state = 'active';

CREATE TABLE sources (
    source_type     text NOT NULL CHECK (source_type IN ('message', 'file', 'memory')),
    source_id       uuid NOT NULL,
    tenant_id       text NOT NULL,
    conversation_id uuid,
    agent_id        text,
    -- When the source was created (occurred_at of its create event): the time filter.
    source_at       timestamptz NOT NULL,
    -- Hex SHA-256 of the whole text now, and occurred_at of the event that set it: an
    -- older edit arriving late is ignored (last writer wins).
    content_hash    text NOT NULL,
    text_at         timestamptz NOT NULL,
    -- false: stored but not embedded (e.g. a system message); its edits are not either.
    indexed         boolean NOT NULL DEFAULT true,
    deleted_at      timestamptz,
    -- The event that set the text (causation of engram.embedding.ready).
    event_id        uuid NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_type, source_id)
);
CREATE INDEX sources_tenant ON sources (tenant_id, source_type);

CREATE TABLE chunks (
    chunk_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text NOT NULL,
    source_type     text NOT NULL,
    source_id       uuid NOT NULL,
    conversation_id uuid,
    agent_id        text,
    source_at       timestamptz NOT NULL,
    chunk_index     integer NOT NULL CHECK (chunk_index >= 0),
    text            text NOT NULL,
    content_hash    text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (source_type, source_id) REFERENCES sources ON DELETE CASCADE
);
CREATE INDEX chunks_source ON chunks (source_type, source_id, chunk_index);
-- "Unchanged text is never embedded twice": a new chunk reuses a vector of the same text.
CREATE INDEX chunks_tenant_hash ON chunks (tenant_id, content_hash);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

CREATE TABLE chunk_vectors (
    model_id        text NOT NULL REFERENCES models,
    chunk_id        bigint NOT NULL REFERENCES chunks ON DELETE CASCADE,
    -- Copies of the chunk's filter columns, so a filtered search is one index scan.
    tenant_id       text NOT NULL,
    source_type     text NOT NULL,
    conversation_id uuid,
    agent_id        text,
    source_at       timestamptz NOT NULL,
    embedding       vector NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, chunk_id)
);
CREATE INDEX chunk_vectors_chunk ON chunk_vectors (chunk_id);
-- Exact search of a narrow filter (a small tenant, one conversation, one agent, a short
-- time range): the planner picks these when that is cheaper than the HNSW scan, and the
-- search falls back to them when the index scan returns fewer than k.
CREATE INDEX chunk_vectors_tenant ON chunk_vectors (model_id, tenant_id, source_at);
CREATE INDEX chunk_vectors_conversation ON chunk_vectors (model_id, tenant_id, conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX chunk_vectors_agent ON chunk_vectors (model_id, tenant_id, agent_id)
    WHERE agent_id IS NOT NULL;

CREATE TABLE embed_queue (
    chunk_id    bigint PRIMARY KEY REFERENCES chunks ON DELETE CASCADE,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    lease_token uuid,
    attempts    integer NOT NULL DEFAULT 0
);

CREATE TABLE memory_outbox (
    memory_id    uuid NOT NULL,
    model_id     text NOT NULL,
    content_hash text NOT NULL,
    tenant_id    text NOT NULL,
    causation_id uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (memory_id, model_id, content_hash)
);

-- Row-level security (the table owner, i.e. migrations, is exempt).
ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunk_vectors ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON chunks
    USING (current_setting('engram.tenant_id', true) IN (tenant_id, '*'));
CREATE POLICY tenant_scope ON chunk_vectors
    USING (current_setting('engram.tenant_id', true) IN (tenant_id, '*'));

-- Index DDL needs the table owner; the service role gets exactly these two operations.
CREATE FUNCTION model_index_name(p_model_id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'chunk_vectors_hnsw_' || substr(md5(p_model_id), 1, 16)
$$;

-- Registers a model (state 'building', or 'active' when no model is active yet) and
-- builds its HNSW index over its rows. Returns the model's state after the call.
CREATE FUNCTION register_model(
    p_model_id text, p_source text, p_dimensions integer, p_max_tokens integer,
    p_activate_if_none boolean
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = embedder, public AS $$
DECLARE
    v_state text;
    v_dims integer;
BEGIN
    SELECT state, dimensions INTO v_state, v_dims FROM models WHERE model_id = p_model_id;
    IF v_state IS NOT NULL AND v_dims <> p_dimensions THEN
        RAISE EXCEPTION 'model % is registered with % dimensions, not %',
            p_model_id, v_dims, p_dimensions;
    END IF;
    IF v_state IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('embedder.models'));
        v_state := CASE
            WHEN p_activate_if_none AND NOT EXISTS (SELECT 1 FROM models WHERE state = 'active')
            THEN 'active' ELSE 'building' END;
        INSERT INTO models (model_id, source, dimensions, max_tokens, state, activated_at)
        VALUES (p_model_id, p_source, p_dimensions, p_max_tokens, v_state,
                CASE WHEN v_state = 'active' THEN now() END)
        ON CONFLICT (model_id) DO NOTHING;
        SELECT state INTO v_state FROM models WHERE model_id = p_model_id;
    ELSIF v_state = 'retired' THEN
        UPDATE models SET state = 'building', retired_at = NULL WHERE model_id = p_model_id;
        v_state := 'building';
    END IF;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON chunk_vectors USING hnsw '
        '((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64) '
        'WHERE model_id = %L',
        model_index_name(p_model_id), p_dimensions, p_model_id);
    RETURN v_state;
END $$;

-- Drops a retired model's index (its rows are deleted by the caller, in batches).
CREATE FUNCTION drop_model_index(p_model_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = embedder, public AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM models WHERE model_id = p_model_id AND state <> 'retired') THEN
        RAISE EXCEPTION 'model % is not retired', p_model_id;
    END IF;
    EXECUTE format('DROP INDEX IF EXISTS %I', model_index_name(p_model_id));
END $$;
REVOKE ALL ON FUNCTION register_model(text, text, integer, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION drop_model_index(text) FROM PUBLIC;
