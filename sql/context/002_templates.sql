-- context: named templates (seed 002 `context_templates`), from context.template.put /
-- .deleted. A delete keeps the row as a tombstone (deleted_at) so that a put older than it,
-- delivered late, does not bring the template back: the newest occurred_at wins.

CREATE TABLE templates (
    tenant_id     text NOT NULL,
    name          text NOT NULL,
    segments      jsonb NOT NULL CHECK (jsonb_typeof(segments) = 'array'),
    defaults      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(defaults) = 'object'),
    description   text,
    use_cases     text[] NOT NULL DEFAULT '{}',
    agent_types   text[] NOT NULL DEFAULT '{}',
    -- Tokens of the segments' text as written (placeholders unfilled), with the service's
    -- default tokenizer: a guide to what a template costs, not a build's count.
    token_total   integer NOT NULL DEFAULT 0 CHECK (token_total >= 0),
    -- Builds that used it (since it was first put; kept across puts).
    use_count     bigint NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    last_used_at  timestamptz,
    occurred_at   timestamptz NOT NULL,   -- of the event now in force (put or delete)
    event_id      uuid NOT NULL,
    deleted_at    timestamptz,            -- a tombstone: not found by builds
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

COMMENT ON TABLE templates IS 'Named context templates of a tenant (context.template.put / .deleted); a build naming one starts with its segments.';
COMMENT ON COLUMN templates.segments IS 'System text segments (name, text with {variable} placeholders), in order.';
COMMENT ON COLUMN templates.defaults IS 'Values of variables a build does not give.';
COMMENT ON COLUMN templates.token_total IS 'Tokens of the segments as written, with the service''s default tokenizer.';
COMMENT ON COLUMN templates.use_count IS 'Builds that used it, counted in each build''s transaction.';
COMMENT ON COLUMN templates.occurred_at IS 'Time of the put or delete in force: an older event is ignored.';
COMMENT ON COLUMN templates.deleted_at IS 'Set by a delete (a tombstone that a late, older put cannot undo); builds do not find it.';
