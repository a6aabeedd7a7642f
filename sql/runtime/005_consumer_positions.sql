-- Applied inside every service's schema (search_path is set by the runner).
-- What lets a durable consumer that went missing (deleted by hand, lost with a server's
-- storage) be re-created without replaying the stream's history: where it stood, and
-- which messages it already dead-lettered.
CREATE TABLE consumer_positions (
    stream         text NOT NULL,
    durable        text NOT NULL,
    ack_floor      bigint NOT NULL,
    stream_created timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, durable)
);
COMMENT ON TABLE consumer_positions IS
    'Where each durable consumer of the service stood, polled from JetStream: a consumer '
    'found missing is re-created to deliver from ack_floor + 1.';
COMMENT ON COLUMN consumer_positions.ack_floor IS
    'Stream sequence up to which every message was acknowledged (the server''s ack floor).';
COMMENT ON COLUMN consumer_positions.stream_created IS
    'Creation time of the stream the floor belongs to: a re-created stream restarts its '
    'sequences, and a floor of the old one means nothing there.';

-- A re-created consumer replays what follows its last known floor (a few seconds' worth);
-- valid events find their inbox row, and invalid ones find theirs here, so a message is
-- dead-lettered once even when the DLQ's own duplicate window (2 minutes) has passed.
CREATE TABLE dead_letters_sent (
    stream   text NOT NULL,
    sequence bigint NOT NULL,
    digest   text NOT NULL,
    sent_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, sequence)
);
CREATE INDEX dead_letters_sent_at ON dead_letters_sent USING brin (sent_at);
COMMENT ON TABLE dead_letters_sent IS
    'Messages of the streams the service consumes that it has dead-lettered; kept as long '
    'as the streams keep messages.';
COMMENT ON COLUMN dead_letters_sent.digest IS
    'SHA-256 of the original bytes: the same sequence in a re-created stream is another '
    'message, and is dead-lettered on its own.';

-- Writes go through these functions, which run with their owner's rights: a service role
-- that may only add and read rows (audit's) must still move its positions and drop old
-- records, and no service role needs UPDATE or DELETE on these tables for it.
CREATE FUNCTION save_consumer_position(
    p_stream text, p_durable text, p_ack_floor bigint, p_stream_created timestamptz
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    INSERT INTO consumer_positions (stream, durable, ack_floor, stream_created)
    VALUES (p_stream, p_durable, p_ack_floor, p_stream_created)
    ON CONFLICT (stream, durable) DO UPDATE
       SET ack_floor = EXCLUDED.ack_floor,
           stream_created = EXCLUDED.stream_created,
           updated_at = now();
$$;

CREATE FUNCTION record_dead_letter(p_stream text, p_sequence bigint, p_digest text)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    INSERT INTO dead_letters_sent (stream, sequence, digest)
    VALUES (p_stream, p_sequence, p_digest)
    ON CONFLICT (stream, sequence) DO UPDATE
       SET digest = EXCLUDED.digest, sent_at = now();
$$;

CREATE FUNCTION prune_dead_letters_sent(p_older_than interval) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH gone AS (
        DELETE FROM dead_letters_sent WHERE sent_at < now() - p_older_than RETURNING 1
    )
    SELECT count(*) FROM gone;
$$;

-- The runner grants EXECUTE on the schema's functions to the service's role only.
REVOKE ALL ON FUNCTION save_consumer_position(text, text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION record_dead_letter(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION prune_dead_letters_sent(interval) FROM PUBLIC;
