-- Tokens of each chunk's text: the embedding pump sorts a round of chunks by it into
-- model batches, so each batch pads little (a batch costs its longest text times its size).
ALTER TABLE chunks ADD COLUMN tokens integer NOT NULL DEFAULT 0 CHECK (tokens >= 0);
