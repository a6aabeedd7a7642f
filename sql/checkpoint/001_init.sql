-- checkpoint: versioned agent state. One row per tenant + user + agent holds the current
-- version (four partitions, hash, counters); every version's forward patch and inverse is a
-- transition; checkpoints are full snapshots (zstd above a size threshold). History is
-- never rewritten: a restore is a new version. See docs/checkpointer.md.

CREATE TABLE agent_states (
    state_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          text NOT NULL,
    user_id            text NOT NULL,
    agent_id           text NOT NULL,
    -- The four partitions are separate columns: an update rewrites (and re-TOASTs) only
    -- the partitions it changed; the others keep their stored value. `json` (the text the
    -- service wrote, compact): smaller once compressed than jsonb, and no parse on write;
    -- cast to jsonb to query inside.
    local_state        json NOT NULL DEFAULT '{}' CHECK (json_typeof(local_state) = 'object'),
    shared_state       json NOT NULL DEFAULT '{}' CHECK (json_typeof(shared_state) = 'object'),
    session_state      json NOT NULL DEFAULT '{}' CHECK (json_typeof(session_state) = 'object'),
    persistent_state   json NOT NULL DEFAULT '{}'
        CHECK (json_typeof(persistent_state) = 'object'),
    version            bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- SHA-256 of the canonical JSON of {local, persistent, session, shared}.
    state_hash         bytea NOT NULL CHECK (length(state_hash) = 32),
    size_bytes         integer NOT NULL CHECK (size_bytes >= 0),
    -- Patch operations applied over the state's life (a version may carry many).
    modification_count bigint NOT NULL DEFAULT 0 CHECK (modification_count >= 0),
    -- Retention: versions below history_floor_version are pruned (unless a checkpoint
    -- keeps them); time travel reaches back to history_floor_at (NULL: nothing pruned).
    history_floor_version bigint NOT NULL DEFAULT 0,
    history_floor_at   timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, user_id, agent_id)
);

CREATE TABLE transitions (
    state_id    bigint NOT NULL REFERENCES agent_states ON DELETE CASCADE,
    version     bigint NOT NULL CHECK (version >= 1),
    tenant_id   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('update', 'merge', 'reset', 'restore')),
    -- RFC 6902 arrays, kept as `json` (compact text; ~20% smaller than jsonb for patches of
    -- a few operations) and written only by the service, which validated them.
    patch       json NOT NULL,   -- version-1 -> version
    inverse     json NOT NULL,   -- version -> version-1
    state_hash  bytea NOT NULL CHECK (length(state_hash) = 32),         -- after this version
    trigger     text,            -- NULL: the event type (state.patch, state.restore...)
    actor       text,
    event_id    uuid,
    restored_from_version bigint,
    restored_from_checkpoint uuid,
    occurred_at timestamptz NOT NULL,   -- at the producer
    applied_at  timestamptz NOT NULL,   -- when it became current (monotonic per state)
    PRIMARY KEY (state_id, version)
);
CREATE INDEX transitions_applied ON transitions (state_id, applied_at);

CREATE TABLE checkpoints (
    checkpoint_id   uuid PRIMARY KEY,
    state_id        bigint NOT NULL REFERENCES agent_states ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    version         bigint NOT NULL CHECK (version >= 0),
    checkpoint_type text NOT NULL
        CHECK (checkpoint_type IN ('manual', 'automatic', 'error_recovery', 'milestone')),
    label           text,
    retention       text NOT NULL CHECK (retention IN ('temporary', 'permanent', 'archive')),
    expires_at      timestamptz,
    compression     text NOT NULL CHECK (compression IN ('none', 'zstd')),
    size_bytes      integer NOT NULL CHECK (size_bytes >= 0),   -- uncompressed
    snapshot        bytea NOT NULL,                             -- canonical JSON
    state_hash      bytea NOT NULL CHECK (length(state_hash) = 32),
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    event_id        uuid,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Snapshots are read by nearest version; compressed already, so keep them out of pglz.
ALTER TABLE checkpoints ALTER COLUMN snapshot SET STORAGE EXTERNAL;
CREATE INDEX checkpoints_state_version ON checkpoints (state_id, version);

-- Patches or restores that named a stale version: kept, never applied.
CREATE TABLE conflicts (
    conflict_id      uuid PRIMARY KEY,
    state_id         bigint NOT NULL REFERENCES agent_states ON DELETE CASCADE,
    tenant_id        text NOT NULL,
    event_id         uuid NOT NULL,   -- conflict_id is derived from it (one row per event)
    event_type       text NOT NULL,
    expected_version bigint NOT NULL,
    current_version  bigint NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Events to publish once the transaction that produced them commits (a NOTIFY wakes the
-- drain task; a poll covers a missed notification). Rows are deleted once JetStream acks.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     text NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}',
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The reorder buffer of the ordering gate: STATE messages that arrived (at this or
-- another replica) before an earlier message of the same state was done. Acked once
-- parked; applied in stream order by whoever next holds the state's row lock.
CREATE TABLE parked (
    stream_seq  bigint PRIMARY KEY,
    state_id    bigint NOT NULL REFERENCES agent_states ON DELETE CASCADE,
    tenant_id   text NOT NULL,
    event_id    uuid NOT NULL,
    waits_seq   bigint[] NOT NULL,   -- earlier messages of the state, not done when parked
    waits_id    uuid[] NOT NULL,
    data        bytea NOT NULL,      -- the message as published
    parked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_state ON parked (state_id);

-- Row-level security, the second wall behind the tenant filter of every query: a
-- connection that sets engram.tenant_id (queries do, per transaction) sees only that
-- tenant's rows; the writer, which sets none, works across tenants.
CREATE FUNCTION tenant_visible(row_tenant text) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('engram.tenant_id', true), ''), row_tenant)
           = row_tenant
$$;
ALTER TABLE agent_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE conflicts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON agent_states USING (tenant_visible(tenant_id));
CREATE POLICY tenant_rows ON transitions USING (tenant_visible(tenant_id));
CREATE POLICY tenant_rows ON checkpoints USING (tenant_visible(tenant_id));
CREATE POLICY tenant_rows ON conflicts USING (tenant_visible(tenant_id));
