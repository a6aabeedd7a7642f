-- The second wall between tenants (DESIGN.md rule 6). The ingest worker writes batches
-- that mix tenants, so its role sees every row; anything that reads ingest data on a
-- tenant's behalf uses engram_ingest_reader and sets `engram.tenant_id` for its
-- transaction (SET LOCAL engram.tenant_id = 'acme'): it sees that tenant's rows only,
-- and nothing at all when the setting is missing.
DO $$ BEGIN
    CREATE ROLE engram_ingest_reader NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
GRANT USAGE ON SCHEMA ingest TO engram_ingest_reader;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversations', 'conversation_sessions', 'messages',
                             'message_versions', 'files', 'message_files'] LOOP
        EXECUTE format('ALTER TABLE ingest.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY worker_writes ON ingest.%I TO engram_ingest '
                       'USING (true) WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY tenant_reads ON ingest.%I FOR SELECT '
                       'TO engram_ingest_reader '
                       'USING (tenant_id = current_setting(''engram.tenant_id'', true))', t);
        EXECUTE format('GRANT SELECT ON ingest.%I TO engram_ingest_reader', t);
    END LOOP;
END $$;
