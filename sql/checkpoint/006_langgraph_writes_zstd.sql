-- Pending writes compressed (docs/langgraph.md): a write is a serde value (a chat message,
-- a tool result) stored once per task, and text compresses to a half or a third with
-- zstd. Rows written before this stay 'raw' (the default); the service reads both.
ALTER TABLE lg_writes
    ADD COLUMN codec text NOT NULL DEFAULT 'raw' CHECK (codec IN ('raw', 'zstd'));
-- Compressed already: keep them out of pglz.
ALTER TABLE lg_writes ALTER COLUMN data SET STORAGE EXTERNAL;

COMMENT ON TABLE lg_writes IS 'LangGraph pending writes of a checkpoint (serde bytes, codec raw or zstd)';
COMMENT ON COLUMN lg_writes.codec IS 'raw: data is the serde bytes; zstd: a zstd frame of them';
