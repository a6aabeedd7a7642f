-- The versions of a message are numbered in one total order, however their events arrive
-- (docs/ingest.md): version 1 is the created event; then the edits by (occurred_at,
-- event_id). A late edit that happened earlier is inserted where it belongs and the later
-- versions are renumbered; the message row always shows its highest version.

-- Renumbering moves versions past each other inside one statement: the key is checked at
-- the end of the statement, not row by row (it is never deferred to COMMIT, and nothing
-- uses it as an ON CONFLICT arbiter).
ALTER TABLE message_versions
    DROP CONSTRAINT message_versions_pkey,
    ADD CONSTRAINT message_versions_pkey PRIMARY KEY (message_id, version)
        DEFERRABLE INITIALLY IMMEDIATE;

-- An edit that names no content_type keeps the one of the version before it, which an
-- edit inserted earlier in the order can change: remember that the type was inherited,
-- so it is derived again on renumbering. (Rows stored before this migration count as
-- explicit: they keep the type they were stored with.)
ALTER TABLE message_versions
    ADD COLUMN content_type_inherited boolean NOT NULL DEFAULT false;

-- Repair what was stored before: versions numbered in delivery order, and the content of
-- the newest edit by occurred_at, not always the highest version.
WITH ranked AS (
    SELECT message_id, version AS old,
           row_number() OVER (PARTITION BY message_id
                              ORDER BY version <> 1, created_at, event_id) AS version
      FROM message_versions
     WHERE message_id IN (SELECT message_id FROM messages WHERE version > 1)
)
UPDATE message_versions v SET version = r.version
  FROM ranked r
 WHERE v.message_id = r.message_id AND v.version = r.old AND r.version <> r.old;

UPDATE messages m
   SET content = t.content, content_type = t.content_type, edited_at = t.created_at,
       version = t.version
  FROM (SELECT DISTINCT ON (message_id) message_id, version, content, content_type, created_at
          FROM message_versions
         WHERE message_id IN (SELECT message_id FROM messages WHERE version > 1)
         ORDER BY message_id, version DESC) t
 WHERE m.message_id = t.message_id
   AND (m.content, m.content_type, m.edited_at, m.version)
       IS DISTINCT FROM (t.content, t.content_type, t.created_at, t.version);
