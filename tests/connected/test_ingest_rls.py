from __future__ import annotations

from uuid import uuid4

import asyncpg
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import eventually, publish


async def test_a_reader_sees_only_its_tenant(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    acme, globex = uuid4(), uuid4()
    await publish(
        nc,
        f.message(acme, tenant="acme", content="acme text"),
        f.message(globex, tenant="globex", content="globex text"),
    )
    await eventually(lambda: db.fetchval("SELECT count(*) FROM ingest.messages"), lambda n: n == 2)
    async with db.transaction():
        await db.execute("SET LOCAL ROLE engram_ingest_reader")
        assert await db.fetchval("SELECT count(*) FROM ingest.messages") == 0  # no tenant set
        await db.execute("SET LOCAL engram.tenant_id = 'acme'")
        rows = await db.fetch("SELECT tenant_id, content FROM ingest.messages")
        assert [tuple(r) for r in rows] == [("acme", "acme text")]
        conversations = await db.fetch("SELECT conversation_id FROM ingest.conversations")
        assert [r[0] for r in conversations] == [acme]
