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
