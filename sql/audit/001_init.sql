-- audit: an append-only, hash-chained record of every message on the bus (docs/audit.md).
--
-- One chain per tenant: position 1, 2, 3... and
--   hash = SHA-256(prev_hash || canonical record)   (services/audit/logic.py: chain_hash)
-- computed by the writer while it holds the tenant's advisory lock. Rows are never
-- changed: a trigger refuses UPDATE, DELETE and TRUNCATE for everyone (ENABLE ALWAYS, so
-- session_replication_role = replica does not skip it either); the worker's role has only
-- SELECT and INSERT. Monthly partitions are the unit of retention: `engram audit retain`
-- drops the old ones after appending, to each tenant's chain, the last hash they held.

CREATE TABLE events (
    tenant_id      text        NOT NULL,  -- the chain; _unknown / _malformed when none
    position       bigint      NOT NULL CHECK (position > 0),
    record_id      uuid        NOT NULL,  -- one bus message: uuid5(stream, seq, bytes digest)
    event_id       uuid,                  -- the envelope's (a DLQ copy repeats it)
    stream         text        NOT NULL,  -- '_audit' for the chain's own records
    stream_seq     bigint      NOT NULL,
    subject        text        NOT NULL,
    type           text,
    producer       text,
    schema_version text,
    correlation_id uuid,
    causation_id   uuid,
    occurred_at    timestamptz,           -- at the producer, as the envelope says
    received_at    timestamptz NOT NULL,  -- stored by JetStream
    recorded_at    timestamptz NOT NULL,  -- committed here; the partition key
    headers        jsonb,
    payload        jsonb,                 -- redacted paths hold {"redacted_sha256": ...}
    extra          jsonb,                 -- envelope fields unknown or not of their type
    raw            bytea,                 -- a body that is not a JSON object, as received
    redacted       text[],
    payload_sha256 bytea CHECK (octet_length(payload_sha256) = 32),  -- as received
    prev_hash      bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (octet_length(hash) = 32)
) PARTITION BY RANGE (recorded_at);

-- verify walks each chain in order; a position cannot be unique across partitions, the
-- chain itself (and verify) guarantees it.
CREATE INDEX events_chain ON events (tenant_id, position);
CREATE INDEX events_event_id ON events (event_id);
-- Retention anchors, found without scanning the chain.
CREATE INDEX events_audit_records ON events (tenant_id, position) WHERE stream = '_audit';

-- The head of each chain, updated in the transaction that appends to it. A cache for the
-- writer (one row read instead of max(position)), and a witness for verify: a chain whose
-- rows end before its head was cut.
CREATE TABLE chain_heads (
    tenant_id   text PRIMARY KEY,
    position    bigint      NOT NULL,
    hash        bytea       NOT NULL,
    recorded_at timestamptz NOT NULL
);
-- The migration runner grants SELECT, INSERT on every table and never revokes; the head
-- is the one thing the writer updates.
GRANT UPDATE ON chain_heads TO engram_audit;
-- The inbox is bookkeeping, not the trail: the pipeline deletes a claim it gives back (a
-- record retried later), and old claims are pruned.
GRANT DELETE ON inbox TO engram_audit;

CREATE FUNCTION reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'E0A01',
              HINT = 'old months are removed only with `engram audit retain --months N`';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reject_change();
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;

-- Monthly partitions (UTC months), from the month of `at` to `months_ahead` months later;
-- returns the end of the last one. The writer calls it when its clock nears that end, so
-- there is never a DEFAULT partition to split (and no row without a month). SECURITY
-- DEFINER: the writer's role may not create tables; it can only run this.
CREATE FUNCTION ensure_partitions(at timestamptz DEFAULT now(), months_ahead int DEFAULT 2)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    first_month timestamptz := date_trunc('month', at, 'UTC');
    lower_bound timestamptz;
    upper_bound timestamptz;
    name text;
BEGIN
    IF months_ahead NOT BETWEEN 0 AND 24 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 24, not %', months_ahead;
    END IF;
    -- Replicas starting together: one creates, the others then find the tables.
    PERFORM pg_advisory_xact_lock(hashtext('engram.audit.partitions'));
    FOR i IN 0..months_ahead LOOP
        lower_bound := first_month + make_interval(months => i);
        upper_bound := first_month + make_interval(months => i + 1);
        name := 'events_' || to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(format('audit.%I', name)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE audit.%I PARTITION OF audit.events FOR VALUES FROM (%L) TO (%L)',
                name, lower_bound, upper_bound);
            -- Row triggers are cloned from the parent; a TRUNCATE of the partition itself
            -- is not, so each partition gets its own.
            EXECUTE format(
                'CREATE TRIGGER no_truncate BEFORE TRUNCATE ON audit.%I '
                'FOR EACH STATEMENT EXECUTE FUNCTION audit.reject_change()', name);
            EXECUTE format('ALTER TABLE audit.%I ENABLE ALWAYS TRIGGER no_truncate', name);
        END IF;
    END LOOP;
    RETURN upper_bound;
END $$;
REVOKE EXECUTE ON FUNCTION ensure_partitions(timestamptz, int) FROM PUBLIC;

SELECT ensure_partitions(now(), 2);

-- What `engram audit retain` removed, read from the chain's own records.
CREATE VIEW retained_ranges AS
SELECT tenant_id,
       payload ->> 'partition' AS partition,
       (payload ->> 'range_from')::timestamptz AS range_from,
       (payload ->> 'range_to')::timestamptz AS range_to,
       (payload ->> 'first_position')::bigint AS first_position,
       (payload ->> 'last_position')::bigint AS last_position,
       payload ->> 'last_hash' AS last_hash,
       (payload ->> 'rows')::bigint AS rows,
       recorded_at AS retained_at,
       position AS recorded_at_position
  FROM events
 WHERE stream = '_audit' AND type = 'audit.retained';
