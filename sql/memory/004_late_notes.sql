-- A session's summary is written at chat.session.ended. A message of that session that is
-- applied after it (JetStream redelivers a crashed worker's unacked messages after the ack
-- wait, behind newer ones) amends the summary instead of waiting, forgotten, in
-- session_notes. So an ended session keeps its row, with its end event, and its notes
-- for MEMORY_SESSION_LATE_S after the end; the notes pruner drops them then.
ALTER TABLE sessions ADD COLUMN ended_event jsonb, ADD COLUMN ended_at timestamptz;
COMMENT ON COLUMN sessions.ended_event IS
    'chat.session.ended as received: a late message re-summarizes the session from it';
COMMENT ON COLUMN sessions.ended_at IS
    'when the summary was written (database clock); the row and its notes are pruned after '
    'MEMORY_SESSION_LATE_S';
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
