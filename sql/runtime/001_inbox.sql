-- Applied inside every service's schema (search_path is set by the runner).
-- One row per event the service has applied: the effects and this row commit together,
-- so a redelivered or re-published event finds its row and is acked with no effect.
CREATE TABLE inbox (
    event_id    uuid PRIMARY KEY,
    subject     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
-- Pruning old rows (older than the streams' max age) scans by time.
CREATE INDEX inbox_received_at ON inbox (received_at);
