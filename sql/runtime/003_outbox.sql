-- Applied inside every service's schema (search_path is set by the runner).
-- The transactional outbox: events a service publishes as a side effect of a change are
-- written here in the change's own transaction (with a NOTIFY, delivered at commit), and
-- published by the runtime's drain only after that commit. ``msg_id`` is deterministic, so
-- a crash between publish and delete re-publishes a duplicate that JetStream drops.
CREATE TABLE event_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     text NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}',
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Why the row can never be published (it is over the server's max_payload); kept as
    -- the record of what was not sent, skipped by the drain.
    failed     text
);
CREATE INDEX event_outbox_pending ON event_outbox (id) WHERE failed IS NULL;
