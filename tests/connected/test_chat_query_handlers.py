"""query.chat.* answered by the ingest's routes on the real nats-server (tests/queries.py),
the database filled by the ingest's own batch function; no worker runs, so each test
starts the query pool component itself (and one asks before it did)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.chat_queries import CHAT_CONVERSATIONS_REPLY, CHAT_HISTORY_REPLY
from services.ingest.app import create_app
from services.ingest.handlers import apply_chat_events
from services.ingest.queries import ChatReads
from services.ingest.settings import IngestSettings
from services.runtime.db import create_pool, scope_tenants
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.queries import answering, ask_json, start_component

pytestmark = pytest.mark.connected

CID = uuid4()
MIDS = [uuid4() for _ in range(5)]


@pytest.fixture
async def pool(env: Env) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(env.database_url, role="engram_ingest")
    events: list[Any] = [f.conversation(CID, title="Trip", user_id="u-1", agent_id="bot")]
    events += [
        f.message(CID, mid, content=f"m{i}", at=f.T0 + timedelta(seconds=i), metadata={"tokens": 2})
        for i, mid in enumerate(MIDS)
    ]
    events.append(f.conversation(uuid4(), tenant="globex", user_id="u-1"))
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenants(conn, {e.tenant_id for e in events})  # as the pipeline does
        await apply_chat_events(conn, events)
    yield pool
    await pool.close()


@pytest.fixture
async def app_worker(
    env: Env, nc: NatsClient, pool: asyncpg.Pool
) -> AsyncIterator[tuple[NatsClient, Worker]]:
    _, worker = create_app(
        IngestSettings(
            nats_url=env.nats_login("ingest"), database_url=env.login("ingest"), query_pool_max=1
        )
    )
    async with answering(nc, worker.assembly.queries):
        yield nc, worker


async def start_reads(worker: Worker, pool: asyncpg.Pool) -> ChatReads:
    [reads] = [c for c in worker.assembly.components if isinstance(c, ChatReads)]
    return await start_component(worker, pool, reads)


@pytest.fixture
async def served(
    app_worker: tuple[NatsClient, Worker], pool: asyncpg.Pool
) -> AsyncIterator[NatsClient]:
    nc, worker = app_worker
    reads = await start_reads(worker, pool)
    try:
        yield nc
    finally:
        await reads.stop()


async def ask(nc: NatsClient, subject: str, **body: Any) -> dict[str, Any]:
    return await ask_json(nc, subject, {"tenant_id": "acme", **body})


async def history(served: NatsClient, **body: Any) -> Any:
    body.setdefault("conversation_id", str(CID))
    return CHAT_HISTORY_REPLY.validate_python(await ask(served, "query.chat.history", **body))


def ids(reply: Any) -> list[UUID]:
    return [m.message_id for m in reply.items]


async def test_history_pages_in_both_orders(served: NatsClient) -> None:
    first = await history(served, limit=2)
    assert ids(first) == [MIDS[4], MIDS[3]] and first.next_cursor
    assert (first.conversation.title, first.conversation.message_count) == ("Trip", 5)
    assert first.conversation.total_tokens == 10
    second = await history(served, limit=2, cursor=first.next_cursor)
    third = await history(served, limit=2, cursor=second.next_cursor)
    assert ids(second) + ids(third) == [MIDS[2], MIDS[1], MIDS[0]]
    assert third.next_cursor is None
    oldest = await history(served, order="oldest_first", limit=5)
    assert ids(oldest) == MIDS and oldest.next_cursor is None
    assert [m.content for m in oldest.items] == [f"m{i}" for i in range(5)]


async def test_a_bad_cursor_is_an_invalid_request_naming_the_cursor(served: NatsClient) -> None:
    page = await history(served, limit=1)
    for cursor, why in (
        ("not-a-cursor", "not one this service handed out"),
        (page.next_cursor, "other order"),
    ):
        bad = await history(served, order="oldest_first", cursor=cursor)
        assert bad.status == "error" and bad.code == "invalid", bad
        assert why in bad.message and bad.detail["errors"][0]["loc"] == ["request", "cursor"]
    other = await history(served, conversation_id=str(uuid4()), cursor=page.next_cursor)
    # Checked before any read: a cursor of another conversation is invalid whether or not
    # that conversation exists (nothing about the database can be told from the answer).
    assert other.code == "invalid" and "another listing" in other.message


async def test_another_tenants_conversation_is_not_found_like_a_missing_one(
    served: NatsClient,
) -> None:
    theirs = await history(served, tenant_id="globex")
    missing = await history(served, conversation_id=str(uuid4()))
    assert theirs.code == missing.code == "not_found"
    assert "no conversation" in theirs.message and "globex" in theirs.message


async def test_limits_over_the_maximum_are_invalid(served: NatsClient) -> None:
    over = await history(served, limit=501)
    assert over.code == "invalid" and "limit" in over.message
    neither = CHAT_CONVERSATIONS_REPLY.validate_python(
        await ask(served, "query.chat.conversations")
    )
    assert neither.code == "invalid" and "user_id, agent_id or both" in neither.message


async def test_conversations_of_a_user_or_an_agent(served: NatsClient) -> None:
    mine = CHAT_CONVERSATIONS_REPLY.validate_python(
        await ask(served, "query.chat.conversations", user_id="u-1")
    )
    assert [c.conversation_id for c in mine.items] == [CID]  # globex's u-1 is not acme's
    assert mine.items[0].last_activity_at == f.T0 + timedelta(seconds=4)
    bots = CHAT_CONVERSATIONS_REPLY.validate_python(
        await ask(served, "query.chat.conversations", agent_id="bot", status="archived")
    )
    assert bots.status == "ok" and bots.items == [] and bots.next_cursor is None


async def test_queries_before_the_pool_opened_are_unavailable(
    app_worker: tuple[NatsClient, Worker], pool: asyncpg.Pool
) -> None:
    served, worker = app_worker
    early = await history(served)
    assert early.code == "unavailable"
    reads = await start_reads(worker, pool)
    try:
        assert (await history(served)).status == "ok"
    finally:
        await reads.stop()
    assert not reads.health().ok
