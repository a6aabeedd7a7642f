-- updated_at says when a row's own fields changed. New messages only move a
-- conversation's last_message_at, which must not rewrite updated_at (and its index) on
-- every batch: the touch trigger fires for the conversation's own columns only, and free
-- space on each page lets those activity updates stay HOT (no index writes).
DROP TRIGGER conversations_touch ON conversations;
CREATE TRIGGER conversations_touch
    BEFORE UPDATE OF title, user_id, agent_id, status, metadata, is_placeholder, archived_at,
                     archived_by, source_updated_at, created_at
    ON conversations FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
ALTER TABLE conversations SET (fillfactor = 80);
-- The same for sessions, whose counters move with every message.
DROP TRIGGER sessions_touch ON conversation_sessions;
CREATE TRIGGER sessions_touch
    BEFORE UPDATE OF user_id, agent_id, status, started_at, ended_at, end_reason, metadata
    ON conversation_sessions FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
ALTER TABLE conversation_sessions SET (fillfactor = 80);
