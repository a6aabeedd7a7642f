-- The summary a finished consolidation job published (engram.memory.consolidated, the
-- whole event as sent). A trigger of the same job id again (a scheduler's retry) finds the
-- job done and publishes this summary again, with the same event id: the retry's
-- `engram trigger consolidate --wait` gets its answer, and JetStream's duplicate window
-- and every inbox drop the repeat. NULL for jobs finished before this migration.
ALTER TABLE jobs ADD COLUMN summary jsonb;
COMMENT ON COLUMN jobs.summary IS
    'engram.memory.consolidated event of the finished job, re-published on a repeated trigger';
