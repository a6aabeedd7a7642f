-- LangGraph threads, written and read through query.langgraph.* (docs/langgraph.md).
--
-- Every key starts with tenant_id: two tenants may use the same thread id. `engram
-- migrate` enables and forces row-level security on each table (it has tenant_id) with
-- the runtime's fail-closed policies, and grants the checkpointer's roles (tenancy.py).
--
-- A checkpoint row holds LangGraph's checkpoint without the channel values kept as blobs
-- (serde bytes, opaque here) and the (channel, version) pairs it reads. Blobs are
-- versioned per (thread, namespace, channel, version); a version is stored as a zstd
-- frame, either alone (a keyframe) or compressed with an earlier version's bytes as its
-- raw-content dictionary (codec 'delta', base_id): a messages list that grows by one
-- message costs about one message. base_id names the exact row, not a version: a base
-- deleted (and maybe written again with other bytes) can never decode a delta wrongly;
-- the foreign key refuses the delta instead and the service writes a keyframe.

CREATE TABLE lg_checkpoints (
    tenant_id            text NOT NULL,
    thread_id            text NOT NULL,
    checkpoint_ns        text NOT NULL,
    checkpoint_id        text NOT NULL,
    parent_checkpoint_id text,
    body_type            text NOT NULL,
    body                 bytea NOT NULL,
    channels             text[] NOT NULL,
    versions             text[] NOT NULL CHECK (cardinality(versions) = cardinality(channels)),
    metadata             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- delete_for_runs looks checkpoints up by their run.
    run_id               text GENERATED ALWAYS AS (metadata ->> 'run_id') STORED,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX lg_checkpoints_run ON lg_checkpoints (tenant_id, run_id) WHERE run_id IS NOT NULL;

CREATE TABLE lg_blobs (
    blob_id       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id     text NOT NULL,
    thread_id     text NOT NULL,
    checkpoint_ns text NOT NULL,
    channel       text NOT NULL,
    version       text NOT NULL,
    type          text NOT NULL,   -- serde type tag; 'empty': no value (data NULL)
    codec         text NOT NULL CHECK (codec IN ('raw', 'zstd', 'delta')),
    base_id       bigint REFERENCES lg_blobs (blob_id),
    depth         integer NOT NULL DEFAULT 0 CHECK (depth >= 0),   -- deltas since a keyframe
    raw_bytes     integer NOT NULL CHECK (raw_bytes >= 0),
    data          bytea,
    CHECK ((codec = 'delta') = (base_id IS NOT NULL)),
    PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, channel, version)
);
CREATE INDEX lg_blobs_base ON lg_blobs (base_id) WHERE base_id IS NOT NULL;
-- Compressed already: keep them out of pglz.
ALTER TABLE lg_blobs ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE lg_writes (
    tenant_id     text NOT NULL,
    thread_id     text NOT NULL,
    checkpoint_ns text NOT NULL,
    checkpoint_id text NOT NULL,
    task_id       text NOT NULL,
    idx           integer NOT NULL,
    task_path     text NOT NULL DEFAULT '',
    channel       text NOT NULL,
    type          text NOT NULL,
    data          bytea,
    PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

COMMENT ON TABLE lg_checkpoints IS
    'LangGraph checkpoints (EngramSaver): the checkpoint without its blob channels, as serde bytes';
COMMENT ON COLUMN lg_checkpoints.channels IS 'Channels of channel_versions, with versions: the blobs it reads';
COMMENT ON TABLE lg_blobs IS
    'LangGraph channel values per version: zstd alone, or a delta on an earlier version (base_id)';
COMMENT ON COLUMN lg_blobs.base_id IS 'The row whose bytes are this delta''s dictionary (codec delta)';
COMMENT ON COLUMN lg_blobs.raw_bytes IS 'Size of the serde bytes before compression';
COMMENT ON TABLE lg_writes IS 'LangGraph pending writes of a checkpoint (serde bytes, uncompressed)';
