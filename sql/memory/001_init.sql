-- memory: typed agent memories (seed 002 agent_memories, seed 000 importance indexes),
-- what consolidation did to them, and the service's own working tables. See docs/memory.md.
--
--   memories        one row per memory; a forgotten memory is a tombstone (no text, no
--                   content, no vector; who asked and why)
--   memory_links    typed edges between memories (from writes and from consolidation)
--   consolidations  what each consolidation step did: sources, result, tokens saved
--   jobs            consolidation jobs, one row per tenant + job + agent, leased by runners
--   session_notes   the text of chat messages of open sessions (their summary source);
--                   deleted once the session is summarized
--   sessions        sessions seen starting, for their time window

CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;

CREATE TABLE memories (
    tenant_id         text NOT NULL,
    memory_id         uuid NOT NULL,
    agent_id          text NOT NULL,
    user_id           text,
    conversation_id   uuid,
    -- NULL only on the tombstone of a memory forgotten before it was ever written.
    memory_type       text
        CHECK (memory_type IN ('episodic', 'semantic', 'procedural', 'working')),
    status            text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'superseded', 'forgotten')),
    text              text,
    content           jsonb,
    -- SHA-256 of text: a vector from engram.embedding.ready is stored only for this text.
    content_hash      bytea CHECK (length(content_hash) = 32),
    tokens            integer NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    model_id          text,
    -- Any dimension (the model decides); each model has its own partial HNSW index.
    embedding         vector,
    importance        real NOT NULL CHECK (importance BETWEEN 0 AND 1),
    decay_rate        real NOT NULL CHECK (decay_rate BETWEEN 0 AND 1),
    access_count      integer NOT NULL DEFAULT 0 CHECK (access_count >= 0),
    last_accessed_at  timestamptz,
    -- Importance has been decayed up to this time (decay counts from the later of this
    -- and last_accessed_at).
    decayed_at        timestamptz NOT NULL,
    expires_at        timestamptz,
    source_message_id uuid,
    -- write (memory.write), session (a session summary), merge / summarize / abstract.
    origin            text NOT NULL DEFAULT 'write',
    superseded_by     uuid,
    written_at        timestamptz NOT NULL,  -- occurred_at of the write that set the text
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    forgotten_at      timestamptz,
    forgotten_by      text,
    forget_reason     text,
    PRIMARY KEY (tenant_id, memory_id),
    CONSTRAINT erased_when_forgotten CHECK (
        CASE WHEN status = 'forgotten'
             THEN text IS NULL AND content IS NULL AND embedding IS NULL
                  AND forgotten_by IS NOT NULL
             ELSE text IS NOT NULL AND content IS NOT NULL END),
    CONSTRAINT typed_unless_tombstone CHECK (memory_type IS NOT NULL OR status = 'forgotten'),
    CONSTRAINT superseded_has_successor CHECK (
        status <> 'superseded' OR superseded_by IS NOT NULL),
    -- The per-type content rules of contracts/memory.py, again at the last line of defence.
    CONSTRAINT content_fits_type CHECK (status = 'forgotten' OR CASE memory_type
        WHEN 'episodic' THEN jsonb_typeof(content -> 'event') = 'string'
            AND jsonb_typeof(content -> 'temporal' -> 'occurred_at') = 'string'
        WHEN 'semantic' THEN jsonb_typeof(content -> 'concept') = 'string'
            AND jsonb_typeof(content -> 'definition') = 'string'
        WHEN 'procedural' THEN jsonb_typeof(content -> 'skill') = 'string'
            AND jsonb_typeof(content -> 'steps') = 'array'
            AND jsonb_array_length(content -> 'steps') >= 1
        WHEN 'working' THEN jsonb_typeof(content -> 'items') = 'array'
            AND jsonb_typeof(content -> 'capacity') = 'number'
            AND (content ->> 'capacity')::numeric >= 1
            AND jsonb_array_length(content -> 'items') <= (content ->> 'capacity')::numeric
        ELSE false END)
);
-- Search and consolidation read one agent's memories by status and type.
CREATE INDEX memories_agent ON memories (tenant_id, agent_id, status, memory_type);
-- seed 000: the most important memories of an agent first.
CREATE INDEX memories_importance ON memories (tenant_id, agent_id, importance DESC)
    WHERE status = 'active';
CREATE INDEX memories_user ON memories (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX memories_conversation ON memories (tenant_id, conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX memories_expiry ON memories (tenant_id, agent_id, expires_at)
    WHERE expires_at IS NOT NULL AND status = 'active';

CREATE TABLE memory_links (
    tenant_id  text NOT NULL,
    memory_id  uuid NOT NULL,
    target_id  uuid NOT NULL,
    relation   text NOT NULL,
    weight     real CHECK (weight BETWEEN 0 AND 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, memory_id, target_id, relation),
    FOREIGN KEY (tenant_id, memory_id) REFERENCES memories ON DELETE CASCADE
);
CREATE INDEX memory_links_target ON memory_links (tenant_id, target_id);

CREATE TABLE jobs (
    tenant_id       text NOT NULL,
    job_id          uuid NOT NULL,
    agent_id        text NOT NULL,
    steps           text[] NOT NULL,
    dry_run         boolean NOT NULL,
    merge_threshold real,
    clock           timestamptz NOT NULL,  -- the job's occurred_at: decay/expiry "now"
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done')),
    steps_done      text[] NOT NULL DEFAULT '{}',
    report          jsonb NOT NULL DEFAULT '[]',
    active_before   integer,
    attempts        integer NOT NULL DEFAULT 0,
    lease_until     timestamptz,
    last_error      text,
    event_id        uuid NOT NULL,  -- the memory.consolidate event (causation)
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    duration_ms     integer,
    PRIMARY KEY (tenant_id, job_id, agent_id)
);
CREATE INDEX jobs_queued ON jobs (created_at) WHERE state = 'queued';

CREATE TABLE consolidations (
    consolidation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL,
    job_id           uuid NOT NULL,
    agent_id         text NOT NULL,
    step             text NOT NULL
        CHECK (step IN ('merge', 'summarize', 'abstract', 'decay', 'expire')),
    source_ids       uuid[] NOT NULL,
    result_id        uuid,
    tokens_saved     integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consolidations_job ON consolidations (tenant_id, job_id);
CREATE INDEX consolidations_result ON consolidations (tenant_id, result_id)
    WHERE result_id IS NOT NULL;

CREATE TABLE sessions (
    tenant_id       text NOT NULL,
    session_id      uuid NOT NULL,
    conversation_id uuid NOT NULL,
    agent_id        text,
    user_id         text,
    started_at      timestamptz,
    PRIMARY KEY (tenant_id, session_id)
);

CREATE TABLE session_notes (
    tenant_id       text NOT NULL,
    message_id      uuid NOT NULL,
    conversation_id uuid NOT NULL,
    session_id      uuid,
    role            text NOT NULL,
    text            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX session_notes_conversation ON session_notes (tenant_id, conversation_id,
                                                          occurred_at);

-- Tenant isolation, second wall: a session sees the tenant in engram.tenant_id, or every
-- tenant with '*' (the worker's batch and job sessions).
ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_scope ON memories
    USING (current_setting('engram.tenant_id', true) IN (tenant_id, '*'));
CREATE POLICY tenant_scope ON memory_links
    USING (current_setting('engram.tenant_id', true) IN (tenant_id, '*'));

CREATE FUNCTION model_index_name(p_model_id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'memories_hnsw_' || substr(md5(p_model_id), 1, 16)
$$;

-- Index DDL needs the table owner: the service role may call exactly this.
CREATE FUNCTION ensure_model_index(p_model_id text, p_dimensions integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = memory, public AS $$
BEGIN
    IF p_dimensions < 1 OR p_dimensions > 16000 THEN
        RAISE EXCEPTION 'bad dimensions %', p_dimensions;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('memory.model_index'));
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON memories USING hnsw '
        '((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64) '
        'WHERE model_id = %L',
        model_index_name(p_model_id), p_dimensions, p_model_id);
END $$;
REVOKE ALL ON FUNCTION ensure_model_index(text, integer) FROM PUBLIC;
