-- Full-text matching that uses its GIN index again (issue 16: the knowledge search's
-- full-text half took 80 ms at p50 on 26,500 chunks of one tenant, 90% of a context build).
--
-- search_text (004, 007) is SECURITY DEFINER so that it runs as the table owner, to whom
-- the policy on chunks did not apply. Since the walls of issue 13 (services/runtime/
-- tenancy.py) row-level security is forced, and the owner has a policy of its own
-- (engram_reader: one tenant). Under any policy PostgreSQL evaluates the policy before a
-- condition whose operator is not leakproof, and @@ is not: the index can then find only
-- the tenant's rows, never the words, so every search read and tested every chunk of the
-- tenant (EXPLAIN ANALYZE on the bench's data: "Index Cond: tenant_id = ...", "Rows
-- Removed by Filter: 26497", 2,812 heap pages, 140-160 ms per tier under load; the same
-- statement with the words in the index condition: 642 rows, 1-2 ms in the index).
--
-- rank_text is the same matching and ranking, run with the caller's rights (SECURITY
-- INVOKER). The embedder calls it as its cross-tenant role, whose policy is "true" and
-- therefore no barrier, so (tenant_id, tsv @@ words) is one GIN index condition. It
-- restricts itself to the tenant the session is scoped to (engram.tenant_id; unset or '*'
-- is refused, as before) and returns chunk ids and ranks only: the caller reads the
-- chunks' rows and text back as its reader role, under the one-tenant policy, so a chunk
-- of another tenant could never be returned even if this filter were wrong. Called by a
-- role under a policy, it is correct, only as slow as search_text.
--
-- The ranking is unchanged: chunks with every word first (ts_rank_cd), then, only if
-- fewer than p_limit, chunks with some word (ts_rank), each tier ranking at most
-- p_max_matches rows. search_text stays for workers of the previous release.
CREATE FUNCTION rank_text(
    p_text text, p_source_types text[], p_conversation_ids uuid[], p_agent_ids text[],
    p_since timestamptz, p_until timestamptz, p_limit integer, p_max_matches integer,
    p_knowledge_source_ids uuid[]
) RETURNS TABLE (chunk_id bigint, text_rank bigint)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = embedder, public
-- Plan each call for its words and filters: a generic plan cannot tell a rare word from a
-- common one, nor a NULL filter from a given one.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_tenant text := current_setting('engram.tenant_id', true);
    v_all tsquery := plainto_tsquery('english', p_text);
    v_words tsquery;
    v_found bigint := 0;
    v_rows bigint;
BEGIN
    IF v_tenant IS NULL OR v_tenant IN ('', '*') OR position(',' IN v_tenant) > 0 THEN
        RAISE EXCEPTION 'rank_text searches one tenant: set engram.tenant_id to it';
    END IF;
    IF numnode(v_all) = 0 THEN  -- no words left (only stop words)
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
REVOKE ALL ON FUNCTION rank_text(text, text[], uuid[], text[], timestamptz, timestamptz,
                                 integer, integer, uuid[]) FROM PUBLIC;
