-- Checkpoints are keyed by (tenant_id, checkpoint_id), not checkpoint_id alone.
--
-- checkpoint_id is chosen by the producer of state.checkpoint, and every producer-chosen
-- id is scoped by its tenant (DESIGN.md): tenant B's checkpoint that reuses tenant A's id
-- is another checkpoint. Keyed by the id alone, B's insert hit A's row (invisible to B's
-- batch under row-level security) and its event was dead-lettered on a bare unique
-- violation.
--
-- conflicts follows the same rule for consistency: its conflict_id is derived by the
-- service from (tenant, event id), but the key states what the id means.
--
-- No table is rewritten and nothing refers to these keys (transitions keep the checkpoint
-- a restore came from as a plain value): each new key is one index built and promoted to
-- the primary key, keeping the usual constraint name.
--
-- Upgrade: conflicts are written with ON CONFLICT (conflict_id) by the previous release,
-- which has no unique index to match after this file: stop the checkpointer workers
-- (scale them to zero), migrate, then start the new release. Nothing is lost:
-- unacknowledged messages wait in their streams.
CREATE UNIQUE INDEX checkpoints_tenant_key ON checkpoints (tenant_id, checkpoint_id);
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_pkey;
ALTER TABLE checkpoints ADD CONSTRAINT checkpoints_pkey
    PRIMARY KEY USING INDEX checkpoints_tenant_key;

CREATE UNIQUE INDEX conflicts_tenant_key ON conflicts (tenant_id, conflict_id);
ALTER TABLE conflicts DROP CONSTRAINT conflicts_pkey;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_pkey PRIMARY KEY USING INDEX conflicts_tenant_key;
