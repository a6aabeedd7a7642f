-- Knowledge sources per agent (seed 004 agent_knowledge_sources; contracts/knowledge.py).
--
--   knowledge_sources  one row per (tenant, source): its agent, type, configuration, status
--                      (pending / ready / failed, with the reason), when its chunks last
--                      changed and how many it has. A removed source stays as a tombstone
--                      (removed_at), so a late document or registration does not revive it.
--   sources/chunks     a source's documents are sources of type 'document' (one per
--                      document, id derived from the knowledge source and document_id), cut
--                      and embedded like messages; knowledge_source_id and document_id say
--                      whose they are. An upload a file source covers is copied as one of
--                      its documents (document_id = the file_id).
--
-- Row-level security: every table with tenant_id is walled per tenant by the migration
-- runner (enabled, forced, failing closed: services/runtime/tenancy.py).

CREATE TABLE knowledge_sources (
    tenant_id       text NOT NULL,
    source_id       uuid NOT NULL,
    agent_id        text NOT NULL,
    type            text NOT NULL CHECK (type IN ('file', 'folder', 'url', 'database', 'api')),
    name            text,
    configuration   jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL CHECK (status IN ('pending', 'ready', 'failed')),
    status_reason   text,
    registered_at   timestamptz NOT NULL,
    -- occurred_at of the last registration/update applied: an older update is ignored.
    changed_at      timestamptz NOT NULL,
    removed_at      timestamptz,
    last_synced_at  timestamptz,
    chunk_count     integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    document_count  integer NOT NULL DEFAULT 0 CHECK (document_count >= 0),
    event_id        uuid NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, source_id)
);
COMMENT ON TABLE knowledge_sources IS
    'Knowledge sources of agents (knowledge.source.* events); a removed one stays as a tombstone.';
COMMENT ON COLUMN knowledge_sources.status IS
    'pending (a file source with nothing covered yet), ready (documents indexed), failed (engram cannot read the type; see status_reason)';
COMMENT ON COLUMN knowledge_sources.changed_at IS
    'occurred_at of the last registration or update applied: an older update is ignored';
COMMENT ON COLUMN knowledge_sources.last_synced_at IS 'When its documents last changed';
CREATE INDEX knowledge_sources_agent ON knowledge_sources (tenant_id, agent_id)
    WHERE removed_at IS NULL;

ALTER TABLE sources DROP CONSTRAINT sources_source_type_check;
ALTER TABLE sources ADD CONSTRAINT sources_source_type_check
    CHECK (source_type IN ('message', 'file', 'memory', 'document'));
ALTER TABLE sources ADD COLUMN knowledge_source_id uuid;
ALTER TABLE sources ADD COLUMN document_id text;
ALTER TABLE chunks ADD COLUMN knowledge_source_id uuid;
ALTER TABLE chunks ADD COLUMN document_id text;
COMMENT ON COLUMN sources.knowledge_source_id IS
    'A document (source_type document): the knowledge source it belongs to';
COMMENT ON COLUMN sources.document_id IS
    'A document: its id within its knowledge source (an upload copied into a file source: the file_id)';
CREATE INDEX sources_knowledge ON sources (tenant_id, knowledge_source_id)
    WHERE knowledge_source_id IS NOT NULL;
CREATE INDEX chunks_knowledge ON chunks (tenant_id, knowledge_source_id)
    WHERE knowledge_source_id IS NOT NULL;

-- search_text (004) with one more filter, the knowledge sources of a scoped search (NULL:
-- no filter). The 8-argument function stays for workers of the previous release.
CREATE FUNCTION search_text(
    p_text text, p_source_types text[], p_conversation_ids uuid[], p_agent_ids text[],
    p_since timestamptz, p_until timestamptz, p_limit integer, p_max_matches integer,
    p_knowledge_source_ids uuid[]
) RETURNS TABLE (chunk_id bigint, text_rank bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = embedder, public
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_tenant text := current_setting('engram.tenant_id', true);
    v_all tsquery := plainto_tsquery('english', p_text);
    v_words tsquery;
    v_found bigint := 0;
    v_rows bigint;
BEGIN
    IF v_tenant IS NULL OR v_tenant IN ('', '*') THEN
        RAISE EXCEPTION 'search_text searches one tenant: set engram.tenant_id to it';
    END IF;
    IF numnode(v_all) = 0 THEN
        RETURN;
    END IF;
    FOR v_tier IN 1..2 LOOP
        v_words := CASE v_tier WHEN 1 THEN v_all
                        ELSE replace(v_all::text, ' & ', ' | ')::tsquery END;
        RETURN QUERY
            SELECT m.chunk_id, v_found + row_number() OVER (ORDER BY m.score DESC, m.chunk_id)
              FROM (SELECT c.chunk_id,
                           CASE v_tier WHEN 1 THEN ts_rank_cd(c.tsv, v_words)
                                       ELSE ts_rank(c.tsv, v_words) END AS score
                      FROM chunks c
                     WHERE c.tenant_id = v_tenant AND c.tsv @@ v_words
                       AND (v_tier = 1 OR NOT c.tsv @@ v_all)
                       AND c.source_type = ANY (p_source_types)
                       AND (p_conversation_ids IS NULL OR c.conversation_id = ANY (p_conversation_ids))
                       AND (p_agent_ids IS NULL OR c.agent_id = ANY (p_agent_ids))
                       AND (p_knowledge_source_ids IS NULL
                            OR c.knowledge_source_id = ANY (p_knowledge_source_ids))
                       AND (p_since IS NULL OR c.source_at >= p_since)
                       AND (p_until IS NULL OR c.source_at < p_until)
                     LIMIT p_max_matches) m
             ORDER BY 2
             LIMIT p_limit - v_found;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_found := v_found + v_rows;
        EXIT WHEN v_found >= p_limit;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION search_text(text, text[], uuid[], text[], timestamptz, timestamptz,
                                   integer, integer, uuid[]) FROM PUBLIC;
