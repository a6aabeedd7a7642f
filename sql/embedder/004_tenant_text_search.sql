-- Full-text search that reads only the searched tenant's matching chunks.
--
-- 1. A GIN index on (tenant_id, tsv) (btree_gin gives text an equality operator class for
--    GIN), so one index scan finds the tenant's chunks that contain the words. Every text
--    search filters on tenant_id, so the index on tsv alone goes.
-- 2. search_text(): row-level security lets PostgreSQL use an index condition only if its
--    operator is leakproof, and @@ (ts_match_vq) is not. Under the policy on chunks, the
--    service's searches could therefore never use a full-text index: they read every
--    chunk of the tenant and tested each one (tens of milliseconds at 10k chunks). The
--    function runs as the table owner, to whom the policy does not apply, and restricts
--    itself to the tenant the session is scoped to (engram.tenant_id, the setting the
--    policy reads; '*' is refused), so it sees exactly what the policy would let the
--    session see. It returns chunk ids and ranks only; callers read the chunks themselves,
--    under the policy.

CREATE EXTENSION IF NOT EXISTS btree_gin SCHEMA public;
CREATE INDEX chunks_tenant_tsv ON chunks USING gin (tenant_id, tsv);
DROP INDEX chunks_tsv;

-- The best full-text matches of the scoped tenant, best first (text_rank 1). Chunks that
-- contain every word of the query come first, ranked by cover density (ts_rank_cd: how
-- close together the words are). Only when fewer than p_limit do, chunks with some of the
-- words follow, ranked by ts_rank (how often the words occur; 3-6 times cheaper per row
-- than ts_rank_cd with a long OR query, and this tier is the large one). A rank looks at
-- each row it ranks (no index orders by rank), so each tier ranks at most p_max_matches
-- rows: a query of common words does not rank thousands of chunks that each hold one of
-- them. A NULL filter is no filter.
CREATE FUNCTION search_text(
    p_text text, p_source_types text[], p_conversation_ids uuid[], p_agent_ids text[],
    p_since timestamptz, p_until timestamptz, p_limit integer, p_max_matches integer
) RETURNS TABLE (chunk_id bigint, text_rank bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
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
    IF v_tenant IS NULL OR v_tenant IN ('', '*') THEN
        RAISE EXCEPTION 'search_text searches one tenant: set engram.tenant_id to it';
    END IF;
    IF numnode(v_all) = 0 THEN  -- no words left (only stop words)
        RETURN;
    END IF;
    -- Tier 1: every word (ts_rank_cd); tier 2, only if needed: some words (ts_rank).
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
                                   integer, integer) FROM PUBLIC;
