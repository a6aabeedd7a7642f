-- A source is keyed by (tenant_id, source_type, source_id), not (source_type, source_id).
--
-- Message, file and memory ids are chosen by producers, and every producer-chosen id is
-- scoped by its tenant (DESIGN.md): tenant B's message that reuses tenant A's message_id
-- is another source. Keyed by the id alone, B's event met A's row: it was refused (and a
-- memory.write dead-lettered, never searchable), and under the forced row-level security
-- of a batch that holds only B it could not even see A's row, only collide with it.
--
-- Nothing else refers to a source by its producer's id: chunk_vectors and embed_queue
-- refer to chunks by chunk_id (an identity), and chunks carry tenant_id already (written
-- from their source's row), so the foreign key of chunks only gains that column.
--
-- No table is rewritten: every column exists and is NOT NULL. What this costs on a large
-- database: one index built over sources (the new key), and one scan of chunks that
-- validates the new foreign key (a chunk whose tenant is not its source's tenant fails
-- the migration rather than being carried over unnoticed).
--
-- Upgrade: a worker of the previous release writes sources with ON CONFLICT (source_type,
-- source_id), which has no unique index to match after this file, and fails every batch:
-- stop the embedder workers (scale them to zero), migrate, then start the new release.
-- Nothing is lost: unacknowledged messages wait in their streams, queued chunks in
-- embed_queue.

-- The new key's index first (the old key still guards the rows while it is built), then
-- promoted to the primary key: no second index build, and the constraint keeps the usual
-- name (sources_pkey).
CREATE UNIQUE INDEX sources_tenant_key ON sources (tenant_id, source_type, source_id);
ALTER TABLE chunks DROP CONSTRAINT chunks_source_type_source_id_fkey;
ALTER TABLE sources DROP CONSTRAINT sources_pkey;
ALTER TABLE sources ADD CONSTRAINT sources_pkey PRIMARY KEY USING INDEX sources_tenant_key;
-- (tenant_id, source_type) is a prefix of the new key, whose index serves those look-ups.
DROP INDEX sources_tenant;

ALTER TABLE chunks ADD CONSTRAINT chunks_source_fkey
    FOREIGN KEY (tenant_id, source_type, source_id) REFERENCES sources ON DELETE CASCADE;
-- chunks_source (source_type, source_id, chunk_index) stays: a source id is a UUID, so it
-- picks out the chunks of one source per tenant that uses the id (in practice one), and
-- the tenant is checked on those few rows. An index with tenant_id in front would have to
-- be built over every chunk for the same look-ups.
