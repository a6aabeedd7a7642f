-- Reading conversations back (query.chat.history, query.chat.conversations; issue 16).
--
-- 1. A conversation's counters: messages created in it and their tokens, like its
--    sessions' (docs/ingest.md: deletes and edits change no counter). The batch that adds
--    messages already updates the conversation's row once (last_message_at, locked in key
--    order); the counters move in the same update. Neither column is indexed, so that
--    update stays HOT (003).
-- 2. History pages are keyset pages in (created_at, message_id) order: the index of a
--    conversation's messages gets message_id as its last column, so a page is one index
--    range scan in either direction, whatever ties there are on created_at. It replaces
--    the index without it (same leading columns: every plan that used it can use this).
-- 3. A listing of an agent's conversations starts from an index on (tenant_id, agent_id)
--    (a user's has conversations_tenant_user). No index holds last_message_at: indexing
--    it would make every batch's activity update a non-HOT update writing every index of
--    the table (bench/README.md measures that update at a fifth of a batch's cost); a
--    listing sorts the owner's conversations instead (docs/ingest.md has the figures).
--
-- Cost: the two columns are added without a rewrite (constant default); the backfill
-- updates every conversation that has messages (one grouped scan of messages), and the
-- index build is one sort of messages, under an exclusive lock. Upgrade as for 005: stop
-- the previous release's workers (they would add messages without counting them), then
-- migrate, then start this release.

ALTER TABLE conversations
    ADD COLUMN message_count integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    ADD COLUMN total_tokens bigint NOT NULL DEFAULT 0 CHECK (total_tokens >= 0);

COMMENT ON COLUMN conversations.message_count IS
    'Messages created in the conversation (soft-deleted ones too; edits add none).';
COMMENT ON COLUMN conversations.total_tokens IS
    'Sum of its messages'' metadata.tokens, as created.';

UPDATE conversations c
   SET message_count = m.count, total_tokens = m.tokens
  FROM (SELECT tenant_id, conversation_id, count(*) AS count,
               coalesce(sum(tokens), 0) AS tokens
          FROM messages GROUP BY tenant_id, conversation_id) m
 WHERE c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id;

CREATE INDEX messages_conversation_order
    ON messages (tenant_id, conversation_id, created_at, message_id);
DROP INDEX messages_conversation_created;

CREATE INDEX conversations_tenant_agent ON conversations (tenant_id, agent_id)
    WHERE agent_id IS NOT NULL;
