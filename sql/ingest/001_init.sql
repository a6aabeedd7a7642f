-- ingest: conversations, messages with every version, sessions with counters, files.
-- Ids are UUIDs chosen by producers. Every table carries tenant_id, and references
-- between rows include it, so a row can never point at another tenant's row.
-- Policies: dependents CASCADE with their parent; optional references SET NULL.

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TABLE conversations (
    conversation_id uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    title           text,
    user_id         text,
    agent_id        text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- Created by an event that arrived before chat.conversation.created.
    is_placeholder  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    last_message_at timestamptz,
    archived_at     timestamptz,
    archived_by     text,
    -- occurred_at of the newest update applied: an older update arriving late does not
    -- overwrite a newer one ('-infinity' for a placeholder).
    source_updated_at timestamptz NOT NULL DEFAULT '-infinity',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, conversation_id)
);
CREATE INDEX conversations_tenant_updated ON conversations (tenant_id, updated_at DESC);
CREATE INDEX conversations_tenant_user ON conversations (tenant_id, user_id, updated_at DESC);
CREATE TRIGGER conversations_touch BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE conversation_sessions (
    session_id      uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    conversation_id uuid NOT NULL,
    user_id         text,
    agent_id        text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    -- NULL until chat.session.started arrives (a session can be named by a message or
    -- ended before its start event is delivered).
    started_at      timestamptz,
    ended_at        timestamptz,
    end_reason      text,
    message_count   integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    total_tokens    bigint NOT NULL DEFAULT 0 CHECK (total_tokens >= 0),
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE CASCADE,
    UNIQUE (tenant_id, session_id)
);
CREATE INDEX sessions_conversation ON conversation_sessions (conversation_id, started_at DESC);
CREATE INDEX sessions_tenant_active ON conversation_sessions (tenant_id, status, started_at DESC);
CREATE TRIGGER sessions_touch BEFORE UPDATE ON conversation_sessions
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE messages (
    message_id        uuid PRIMARY KEY,
    tenant_id         text NOT NULL,
    conversation_id   uuid NOT NULL,
    session_id        uuid,
    -- No foreign key: a reply may arrive before the message it answers.
    parent_message_id uuid,
    role              text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           text NOT NULL,
    content_type      text NOT NULL
        CHECK (content_type IN ('text', 'structured', 'multimodal', 'tool_result')),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    tokens            integer CHECK (tokens >= 0),
    model             text,
    sender_user_id    text,
    sender_agent_id   text,
    version           integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at        timestamptz NOT NULL,
    edited_at         timestamptz,
    deleted_at        timestamptz,
    deleted_by        text,
    delete_reason     text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, session_id)
        REFERENCES conversation_sessions (tenant_id, session_id) ON DELETE SET NULL (session_id),
    UNIQUE (tenant_id, message_id)
);
CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at);
CREATE INDEX messages_tenant_updated ON messages (tenant_id, updated_at DESC);
CREATE INDEX messages_sender_user_created ON messages (tenant_id, sender_user_id, created_at)
    WHERE sender_user_id IS NOT NULL;
CREATE INDEX messages_sender_agent_created ON messages (tenant_id, sender_agent_id, created_at)
    WHERE sender_agent_id IS NOT NULL;
CREATE INDEX messages_parent ON messages (parent_message_id) WHERE parent_message_id IS NOT NULL;
CREATE TRIGGER messages_touch BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Every version of every message, the original included: version 1 is the content as
-- created, version n+1 the content an edit set (with who edited and why).
CREATE TABLE message_versions (
    message_id   uuid NOT NULL REFERENCES messages ON DELETE CASCADE,
    version      integer NOT NULL CHECK (version >= 1),
    tenant_id    text NOT NULL,
    content      text NOT NULL,
    content_type text NOT NULL,
    edited_by    text,
    reason       text,
    event_id     uuid NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (message_id, version)
);

CREATE TABLE files (
    file_id         uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    conversation_id uuid,
    uploaded_by     text,
    filename        text NOT NULL,
    mime_type       text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
    sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_uri     text,
    extracted_text  text,
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, conversation_id)
        REFERENCES conversations (tenant_id, conversation_id) ON DELETE SET NULL (conversation_id),
    UNIQUE (tenant_id, file_id)
);
CREATE INDEX files_conversation ON files (conversation_id, created_at)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX files_tenant_created ON files (tenant_id, created_at DESC);
CREATE TRIGGER files_touch BEFORE UPDATE ON files
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE message_files (
    message_id uuid NOT NULL,
    file_id    uuid NOT NULL,
    tenant_id  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, file_id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES messages (tenant_id, message_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, file_id) REFERENCES files (tenant_id, file_id) ON DELETE CASCADE
);
CREATE INDEX message_files_file ON message_files (file_id);
