-- One round trip for a read (query.state.get, each side of query.state.diff): scope the
-- connection to the tenant, find the version asked for, and fetch what rebuilds it — the
-- nearest full document (a checkpoint, or the current row) and the patches between it and
-- the target, as one JSON array in the order to apply them. The service applies them and
-- checks the result against target_hash. See docs/checkpointer.md.
--
-- plpgsql rather than one SQL statement: set_config must run before any statement reads
-- a table, so that row-level security (tenant_visible) already sees this tenant. Inside
-- one statement the order in which PostgreSQL evaluates it against the policy's quals is
-- not guaranteed; between the statements of a function it is.
--
-- STABLE: every statement here reads with the snapshot of the calling statement, so the
-- read is one consistent view (the head row, the checkpoint and the transitions agree even
-- while the writer commits a new version). set_config changes a session setting, not the
-- database; it stays set after the call (like the SELECT set_config the other queries
-- run), so a connection of the query pool is always scoped to the tenant it last served.
--
-- direction: 'head' (the target is the current version: head_doc), 'forward' (snapshot or
-- the empty state at base, then `patch` of base+1..target ascending), 'backward' (head_doc
-- or snapshot at base, then `inverse` of base..target+1 descending), NULL (the target is
-- not there: out of range, or its history was pruned). The nearer base is tried first (a
-- tie goes backward); if retention removed part of its range, the other one.
CREATE FUNCTION read_version(p_tenant text, p_user text, p_agent text,
                             p_version bigint, p_time timestamptz)
RETURNS TABLE (state_id bigint, version bigint, state_hash bytea,
               modification_count bigint, history_floor_version bigint,
               history_floor_at timestamptz, updated_at timestamptz, target bigint,
               target_applied_at timestamptz, target_hash bytea, direction text,
               base bigint, snapshot bytea, compression text, head_doc text, patches text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    below bigint;
    above bigint;
    tries text[];
    try text;
    n bigint;
BEGIN
    PERFORM set_config('engram.tenant_id', p_tenant, false);
    SELECT s.state_id, s.version, s.state_hash, s.modification_count,
           s.history_floor_version, s.history_floor_at, s.updated_at
      INTO state_id, version, state_hash, modification_count, history_floor_version,
           history_floor_at, updated_at
      FROM checkpoint.agent_states s
     WHERE s.tenant_id = p_tenant AND s.user_id = p_user AND s.agent_id = p_agent;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    target := CASE
        WHEN p_version IS NOT NULL THEN p_version
        WHEN p_time IS NOT NULL THEN least(read_version.version, greatest(
            read_version.history_floor_version, coalesce(
            (SELECT max(t.version) FROM checkpoint.transitions t
              WHERE t.state_id = read_version.state_id AND t.applied_at <= p_time), 0)))
        ELSE version END;
    IF target = version THEN
        direction := 'head';
        target_hash := state_hash;
        target_applied_at := updated_at;
        SELECT json_build_object('local', s.local_state, 'shared', s.shared_state,
                                 'session', s.session_state,
                                 'persistent', s.persistent_state)::text
          INTO head_doc FROM checkpoint.agent_states s WHERE s.state_id = read_version.state_id;
        RETURN NEXT;
        RETURN;
    END IF;
    IF target < 0 OR target > version THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT t.applied_at, t.state_hash INTO target_applied_at, target_hash
      FROM checkpoint.transitions t
     WHERE t.state_id = read_version.state_id AND t.version = target;
    SELECT max(c.version) INTO below FROM checkpoint.checkpoints c
     WHERE c.state_id = read_version.state_id AND c.version <= target;
    SELECT min(c.version) INTO above FROM checkpoint.checkpoints c
     WHERE c.state_id = read_version.state_id AND c.version >= target;
    IF history_floor_version = 0 THEN
        below := coalesce(below, 0);  -- version 0 is the empty state
    END IF;
    above := least(coalesce(above, version), version);  -- the current row is a snapshot too
    tries := CASE WHEN below IS NULL THEN ARRAY['backward']
                  WHEN target - below < above - target THEN ARRAY['forward', 'backward']
                  ELSE ARRAY['backward', 'forward'] END;
    FOREACH try IN ARRAY tries LOOP
        base := CASE try WHEN 'forward' THEN below ELSE above END;
        snapshot := NULL;
        compression := NULL;
        head_doc := NULL;
        IF try = 'backward' AND base = version THEN
            SELECT json_build_object('local', s.local_state, 'shared', s.shared_state,
                                     'session', s.session_state,
                                     'persistent', s.persistent_state)::text
              INTO head_doc
              FROM checkpoint.agent_states s WHERE s.state_id = read_version.state_id;
        ELSE
            -- A checkpoint at the target itself vouches for its hash when retention
            -- removed the target's transition.
            SELECT c.snapshot, c.compression,
                   CASE WHEN base = target THEN coalesce(target_hash, c.state_hash)
                        ELSE target_hash END
              INTO snapshot, compression, target_hash
              FROM checkpoint.checkpoints c
             WHERE c.state_id = read_version.state_id AND c.version = base
             ORDER BY (c.compression = 'none') DESC LIMIT 1;
            CONTINUE WHEN NOT FOUND AND NOT (try = 'forward' AND base = 0);
        END IF;
        IF try = 'forward' THEN
            SELECT count(*), '[' || coalesce(string_agg(t.patch::text, ',' ORDER BY t.version),
                                              '') || ']'
              INTO n, patches
              FROM checkpoint.transitions t
             WHERE t.state_id = read_version.state_id AND t.version > base
               AND t.version <= target;
            CONTINUE WHEN n <> target - base;
        ELSE
            SELECT count(*), '[' || coalesce(string_agg(t.inverse::text, ','
                                                        ORDER BY t.version DESC), '') || ']'
              INTO n, patches
              FROM checkpoint.transitions t
             WHERE t.state_id = read_version.state_id AND t.version > target
               AND t.version <= base;
            CONTINUE WHEN n <> base - target;
        END IF;
        direction := try;
        RETURN NEXT;
        RETURN;
    END LOOP;
    -- Neither way is complete: retention removed this version.
    base := NULL;
    snapshot := NULL;
    compression := NULL;
    head_doc := NULL;
    patches := NULL;
    RETURN NEXT;
END
$$;
