from __future__ import annotations

from uuid import uuid4

import asyncpg
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import eventually, publish


async def test_message_lands_once(ingest: Worker, nc: NatsClient, db: asyncpg.Connection) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid, title="Trip"),
        f.message(cid, mid, content="héllo 🌍", metadata={"tokens": 5}),
    )
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT content, version, tokens FROM ingest.messages WHERE message_id = $1", mid
        )
    )
    assert row["content"] == "héllo 🌍"
    assert row["version"] == 1
    assert row["tokens"] == 5
    title = await db.fetchval(
        "SELECT title FROM ingest.conversations WHERE conversation_id = $1", cid
    )
    assert title == "Trip"
