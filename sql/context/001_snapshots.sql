-- context: every build of query.context.build, as the model was shown it (seed 002
-- `context_snapshots`). Written once by the build and read by query.context.snapshot;
-- tenant-scoped (row-level security is enabled and forced by `engram migrate`, failing
-- closed when no tenant is set). See docs/context.md.

CREATE TABLE snapshots (
    tenant_id          text NOT NULL,
    snapshot_id        uuid NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    agent_id           text NOT NULL,
    user_id            text NOT NULL,
    conversation_id    uuid,
    message_id         uuid,
    -- The request as built (contracts.context.ContextBuildRequest) and its segments
    -- (kind, text, tokens, source ids, status): exactly what the model was shown.
    request            jsonb NOT NULL CHECK (jsonb_typeof(request) = 'object'),
    segments           jsonb NOT NULL CHECK (jsonb_typeof(segments) = 'array'),
    tokenizer          text NOT NULL,
    token_budget       integer NOT NULL CHECK (token_budget >= 1),
    total_tokens       integer NOT NULL CHECK (total_tokens >= 0 AND total_tokens <= token_budget),
    source_tokens      integer NOT NULL CHECK (source_tokens >= 0),
    -- source_tokens / total_tokens: how much the budget left out (1: nothing).
    compression_ratio  real NOT NULL CHECK (compression_ratio >= 0),
    segment_count      smallint NOT NULL CHECK (segment_count >= 0),
    build_ms           real NOT NULL CHECK (build_ms >= 0),
    PRIMARY KEY (tenant_id, snapshot_id)
);
-- "What was the model shown for this message?": the newest build for it.
CREATE INDEX snapshots_message ON snapshots (tenant_id, message_id, created_at DESC)
    WHERE message_id IS NOT NULL;
-- Retention and the dev view go by time.
CREATE INDEX snapshots_created ON snapshots USING brin (created_at);

COMMENT ON TABLE snapshots IS 'Every query.context.build: the request and the segments the model was shown, with their counts (read back by query.context.snapshot).';
COMMENT ON COLUMN snapshots.message_id IS 'The message the build answered, when the request named it.';
COMMENT ON COLUMN snapshots.request IS 'The request as built (contracts.context.ContextBuildRequest).';
COMMENT ON COLUMN snapshots.segments IS 'The segments in context order: kind, text, tokens, source ids, status (ok, empty, missing with its reason), truncated.';
COMMENT ON COLUMN snapshots.tokenizer IS 'Tokenizer that counted: cl100k_base, o200k_base or minilm.';
COMMENT ON COLUMN snapshots.total_tokens IS 'Sum of the segments'' tokens; never above token_budget.';
COMMENT ON COLUMN snapshots.source_tokens IS 'Tokens of everything the sources gave, after deduplication.';
COMMENT ON COLUMN snapshots.compression_ratio IS 'source_tokens / total_tokens (1: nothing left out).';
COMMENT ON COLUMN snapshots.build_ms IS 'Time from request to reply, fan-out included, in ms.';
