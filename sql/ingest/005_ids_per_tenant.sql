-- Ids are per tenant (DESIGN.md, issue 13): conversation_id, session_id, message_id and
-- file_id are chosen by producers, and two tenants may choose the same one without either
-- noticing. Until now each table's primary key was the bare id (with a UNIQUE (tenant_id,
-- id) for the composite foreign keys), so the second tenant's event met the first
-- tenant's row: the worker refused it as poison, or, once row-level security hid that
-- row, an `ON CONFLICT (id) DO NOTHING` dropped it silently. From here every key is
-- (tenant_id, id) and every statement of the worker names the tenant with the id
-- (services/ingest): the same id in two tenants is two rows that never meet.
--
-- Cost: no table is rewritten (no column changes), but PostgreSQL cannot turn a UNIQUE
-- constraint into the primary key (ADD PRIMARY KEY USING INDEX refuses an index that
-- already belongs to a constraint, and the composite foreign keys depend on it), so each
-- key's index is built once, the foreign keys that used the old indexes are checked again
-- (one join each), and the secondary indexes that started with a bare id are rebuilt
-- with tenant_id first. That is a few sorts and scans of each table, under an exclusive
-- lock (nothing reads or writes ingest while it runs): about 6 s for a million messages
-- with their versions and 50,000 files, measured on two shared cores.
--
-- Upgrade: a worker of the previous release upserts with ON CONFLICT (conversation_id)
-- etc., which has no unique index to match after this file, so every event it applies
-- fails (dead-lettered as poison, docs/operations.md): stop the workers (scale them to
-- zero), migrate, then start the new release (as sql/runtime/004); no event is lost
-- (unacked messages wait in their streams).
--
-- Ownership, grants and policies are not touched here: `engram migrate` re-applies them
-- after the files (services/runtime/tenancy.py).

-- Foreign keys first: each depends on the index of the key it references.
ALTER TABLE message_versions DROP CONSTRAINT message_versions_message_id_fkey;
ALTER TABLE message_files
    DROP CONSTRAINT message_files_tenant_id_message_id_fkey,
    DROP CONSTRAINT message_files_tenant_id_file_id_fkey;
ALTER TABLE messages
    DROP CONSTRAINT messages_tenant_id_conversation_id_fkey,
    DROP CONSTRAINT messages_tenant_id_session_id_fkey;
ALTER TABLE conversation_sessions
    DROP CONSTRAINT conversation_sessions_tenant_id_conversation_id_fkey;
ALTER TABLE files DROP CONSTRAINT files_tenant_id_conversation_id_fkey;

-- The keys. The UNIQUE (tenant_id, id) constraints become the primary keys: same columns,
-- same order, so the foreign keys below reference what they referenced before.
ALTER TABLE conversations
    DROP CONSTRAINT conversations_pkey,
    DROP CONSTRAINT conversations_tenant_id_conversation_id_key,
    ADD CONSTRAINT conversations_pkey PRIMARY KEY (tenant_id, conversation_id);
ALTER TABLE conversation_sessions
    DROP CONSTRAINT conversation_sessions_pkey,
    DROP CONSTRAINT conversation_sessions_tenant_id_session_id_key,
    ADD CONSTRAINT conversation_sessions_pkey PRIMARY KEY (tenant_id, session_id);
ALTER TABLE messages
    DROP CONSTRAINT messages_pkey,
    DROP CONSTRAINT messages_tenant_id_message_id_key,
    ADD CONSTRAINT messages_pkey PRIMARY KEY (tenant_id, message_id);
ALTER TABLE files
    DROP CONSTRAINT files_pkey,
    DROP CONSTRAINT files_tenant_id_file_id_key,
    ADD CONSTRAINT files_pkey PRIMARY KEY (tenant_id, file_id);
-- Still checked at the end of each statement, for the renumbering of versions (004).
ALTER TABLE message_versions
    DROP CONSTRAINT message_versions_pkey,
    ADD CONSTRAINT message_versions_pkey PRIMARY KEY (tenant_id, message_id, version)
        DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE message_files
    DROP CONSTRAINT message_files_pkey,
    ADD CONSTRAINT message_files_pkey PRIMARY KEY (tenant_id, message_id, file_id);

-- The foreign keys again, under their names; versions now name their message with its
-- tenant, like every other reference.
ALTER TABLE conversation_sessions
    ADD CONSTRAINT conversation_sessions_tenant_id_conversation_id_fkey
        FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE CASCADE;
ALTER TABLE messages
    ADD CONSTRAINT messages_tenant_id_conversation_id_fkey
        FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE CASCADE,
    ADD CONSTRAINT messages_tenant_id_session_id_fkey
        FOREIGN KEY (tenant_id, session_id)
        REFERENCES conversation_sessions (tenant_id, session_id) ON DELETE SET NULL (session_id);
ALTER TABLE files
    ADD CONSTRAINT files_tenant_id_conversation_id_fkey
        FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE SET NULL (conversation_id);
ALTER TABLE message_versions
    ADD CONSTRAINT message_versions_tenant_id_message_id_fkey
        FOREIGN KEY (tenant_id, message_id)
        REFERENCES messages (tenant_id, message_id) ON DELETE CASCADE;
ALTER TABLE message_files
    ADD CONSTRAINT message_files_tenant_id_message_id_fkey
        FOREIGN KEY (tenant_id, message_id)
        REFERENCES messages (tenant_id, message_id) ON DELETE CASCADE,
    ADD CONSTRAINT message_files_tenant_id_file_id_fkey
        FOREIGN KEY (tenant_id, file_id) REFERENCES files (tenant_id, file_id) ON DELETE CASCADE;

-- Look-ups by an id now always name its tenant (the worker's statements, the readers'
-- policy, and the foreign keys' cascades): the indexes that led with a bare id lead with
-- tenant_id, like the keys.
DROP INDEX sessions_conversation;
CREATE INDEX sessions_conversation
    ON conversation_sessions (tenant_id, conversation_id, started_at DESC);
DROP INDEX messages_conversation_created;
CREATE INDEX messages_conversation_created ON messages (tenant_id, conversation_id, created_at);
DROP INDEX messages_parent;
CREATE INDEX messages_parent ON messages (tenant_id, parent_message_id)
    WHERE parent_message_id IS NOT NULL;
DROP INDEX files_conversation;
CREATE INDEX files_conversation ON files (tenant_id, conversation_id, created_at)
    WHERE conversation_id IS NOT NULL;
DROP INDEX message_files_file;
CREATE INDEX message_files_file ON message_files (tenant_id, file_id);

COMMENT ON COLUMN conversations.tenant_id IS
    'With conversation_id, the key: ids chosen by producers are per tenant.';
COMMENT ON COLUMN conversation_sessions.tenant_id IS
    'With session_id, the key: ids chosen by producers are per tenant.';
COMMENT ON COLUMN messages.tenant_id IS
    'With message_id, the key: ids chosen by producers are per tenant. A reply''s '
    'parent_message_id names a message of the same tenant.';
COMMENT ON COLUMN files.tenant_id IS
    'With file_id, the key: ids chosen by producers are per tenant.';
