"""Migration 006 on a database of the previous release: conversations get their message
and token counters from the messages already stored, and history pages use the new
index."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from services.catalog import migrate
from tests.conftest import Env
from tests.connected.upgrade_fixtures import previous_release

pytestmark = pytest.mark.connected

FILL = """
INSERT INTO ingest.conversations (conversation_id, tenant_id, created_at)
VALUES ($1, 'acme', now()), ($1, 'globex', now()), ($2, 'acme', now());
INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, role, content,
                             content_type, tokens, created_at)
SELECT gen_random_uuid(), t, $1, 'user', 'hi', 'text', CASE WHEN n % 2 = 0 THEN 7 END, now()
  FROM unnest(ARRAY['acme', 'acme', 'acme', 'globex']) WITH ORDINALITY AS r(t, n);
"""


async def test_counters_are_filled_from_the_stored_messages(env: Env, tmp_path: Path) -> None:
    busy, empty = uuid4(), uuid4()
    async with previous_release(env, tmp_path, "ingest", "ingest", "006") as url:
        conn = await asyncpg.connect(url)
        try:
            conversations, messages = (s for s in FILL.split(";\n") if s.strip())
            await conn.execute(conversations, busy, empty)  # as the superuser: no RLS
            await conn.execute(messages, busy)
            await migrate(url, ["ingest"])
            rows = await conn.fetch(
                """SELECT tenant_id, conversation_id, message_count, total_tokens
                     FROM ingest.conversations ORDER BY tenant_id, message_count DESC"""
            )
            indexes = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'ingest' "
                "AND tablename = 'messages' AND indexname LIKE 'messages_conversation%'"
            )
        finally:
            await conn.close()
    assert [tuple(r.values()) for r in rows] == [
        ("acme", busy, 3, 7),  # one of its three messages has tokens (7): NULL counts 0
        ("acme", empty, 0, 0),
        ("globex", busy, 1, 7),
    ]
    assert [r["indexname"] for r in indexes] == ["messages_conversation_order"]
