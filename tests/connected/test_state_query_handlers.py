"""query.state.* answered by the checkpointer's routes on the real nats-server
(tests/queries.py), the database filled by the writer directly; no worker runs, so each
test starts the query pool component itself (and one asks before and after it ran)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.state_queries import STATE_DIFF_REPLY, STATE_GET_REPLY, STATE_HISTORY_REPLY
from services.checkpointer import repo_read
from services.checkpointer.app import create_app
from services.checkpointer.components import QueryPool
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.writer import Delivered, StateWriter
from services.runtime.db import create_pool, scope_tenants
from services.runtime.outbox import Outbox
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import add, patch
from tests.queries import answering, ask_json, start_component

pytestmark = pytest.mark.connected


@pytest.fixture
async def pool(env: Env) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(env.database_url, role="engram_checkpointer")
    writer = StateWriter(CheckpointerSettings(), Outbox("checkpoint"))
    events = [patch([add("/local/n", i)]) for i in range(1, 4)]
    events.append(patch([add("/local/n", 99)], tenant="globex"))
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenants(conn, {e.tenant_id for e in events})  # as the pipeline does
        await writer.apply_state(conn, [Delivered(e, i) for i, e in enumerate(events, 1)])
    yield pool
    await pool.close()


def query_pool(worker: Worker) -> QueryPool:
    # The state queries' pool (the LangGraph commands' reader pool is a QueryPool too).
    found = [c for c in worker.assembly.components if type(c) is QueryPool]
    assert len(found) == 1
    return found[0]


async def start_query_pool(worker: Worker, pool: asyncpg.Pool) -> QueryPool:
    return await start_component(worker, pool, query_pool(worker))


@pytest.fixture
async def app_worker(
    env: Env, nc: NatsClient, pool: asyncpg.Pool
) -> AsyncIterator[tuple[NatsClient, Worker]]:
    _, worker = create_app(
        CheckpointerSettings(
            nats_url=env.nats_login("checkpointer"),
            database_url=env.login("checkpointer"),
            query_pool_max=1,
        )
    )
    async with answering(nc, worker.assembly.queries):
        yield nc, worker


@pytest.fixture
async def served(
    app_worker: tuple[NatsClient, Worker], pool: asyncpg.Pool
) -> AsyncIterator[NatsClient]:
    nc, worker = app_worker
    reads = await start_query_pool(worker, pool)
    try:
        yield nc
    finally:
        await reads.stop()


async def ask(nc: NatsClient, subject: str, **body: Any) -> dict[str, Any]:
    body = {"tenant_id": "acme", "user_id": "u-1", "agent_id": "bot", **body}
    return await ask_json(nc, subject, body)


async def test_get_current_and_past_versions(served: NatsClient) -> None:
    reply = STATE_GET_REPLY.validate_python(await ask(served, "query.state.get"))
    assert reply.state is not None and (reply.state.version, reply.state.local) == (3, {"n": 3})
    past = STATE_GET_REPLY.validate_python(await ask(served, "query.state.get", at_version=1))
    assert past.state is not None and past.state.local == {"n": 1}
    assert past.modification_count is None


async def test_every_query_is_scoped_by_tenant(served: NatsClient) -> None:
    other = STATE_GET_REPLY.validate_python(
        await ask(served, "query.state.get", tenant_id="globex")
    )
    assert other.state is not None and other.state.local == {"n": 99}
    none = STATE_HISTORY_REPLY.validate_python(
        await ask(served, "query.state.history", tenant_id="initech")
    )
    assert none.code == "not_found"


async def test_bad_requests_get_an_invalid_reply(served: NatsClient) -> None:
    missing = STATE_GET_REPLY.validate_python(await ask(served, "query.state.get", tenant_id=None))
    assert missing.code == "invalid"
    assert "tenant_id" in missing.message
    both = STATE_GET_REPLY.validate_python(
        await ask(served, "query.state.get", at_version=1, at_time="2026-01-01T00:00:00Z")
    )
    assert both.status == "error" and "at most one" in both.message
    naive = STATE_GET_REPLY.validate_python(
        await ask(served, "query.state.get", at_time="2026-01-01T00:00:00")
    )
    assert naive.code == "invalid"


async def test_history_and_diff(served: NatsClient) -> None:
    page = STATE_HISTORY_REPLY.validate_python(await ask(served, "query.state.history", limit=2))
    assert [t.version for t in page.items] == [3, 2] and page.next_before_version == 2
    assert page.items[0].patch == [{"op": "add", "path": "/local/n", "value": 3}]
    diff = STATE_DIFF_REPLY.validate_python(
        await ask(served, "query.state.diff", from_version=0, to_version=3)
    )
    assert diff.patch == [{"op": "add", "path": "/local/n", "value": 3}]
    bad = STATE_DIFF_REPLY.validate_python(
        await ask(served, "query.state.diff", from_version=0, to_version=7)
    )
    assert bad.code == "not_found"


async def test_each_query_sets_its_own_tenant_on_the_query_pool(
    app_worker: tuple[NatsClient, Worker], pool: asyncpg.Pool
) -> None:
    served, worker = app_worker
    reads = await start_query_pool(worker, pool)  # one connection (query_pool_max=1)
    try:
        one = STATE_GET_REPLY.validate_python(
            await ask(served, "query.state.get", tenant_id="globex")
        )
        two = STATE_GET_REPLY.validate_python(await ask(served, "query.state.get"))
        assert one.state is not None and one.state.local == {"n": 99}
        assert two.state is not None and two.state.local == {"n": 3}  # same connection
        async with reads.pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_setting('engram.tenant_id')") == "acme"
            assert await conn.fetchval("SELECT count(*) FROM checkpoint.agent_states") == 1
    finally:
        await reads.stop()


async def test_queries_before_the_query_pool_opened_or_after_it_closed_are_unavailable(
    app_worker: tuple[NatsClient, Worker], pool: asyncpg.Pool
) -> None:
    served, worker = app_worker
    for subject, extra in (
        ("query.state.get", {}),
        ("query.state.history", {}),
        ("query.state.diff", {"from_version": 0, "to_version": 1}),
    ):
        early = await ask(served, subject, **extra)
        assert (early["status"], early["code"]) == ("error", "unavailable"), early
    reads = await start_query_pool(worker, pool)
    assert STATE_GET_REPLY.validate_python(await ask(served, "query.state.get")).status == "ok"
    await reads.stop()
    late = STATE_GET_REPLY.validate_python(await ask(served, "query.state.get"))
    assert late.code == "unavailable" and "not running" in late.message
    assert not reads.health().ok


async def test_a_read_scopes_its_connection_before_it_reads(pool: asyncpg.Pool) -> None:
    # Scoped to globex, a read of acme's state finds it only if read_version switched the
    # tenant before its first statement read a table (row-level security would hide
    # acme's row otherwise), and leaves the connection scoped to acme.
    async with pool.acquire() as conn:
        await conn.execute("SELECT set_config('engram.tenant_id', 'globex', false)")
        row = await repo_read.read_version(conn, ("acme", "u-1", "bot"), 1, None)
        assert row is not None and (row["version"], row["target"]) == (3, 1)
        assert row["direction"] == "forward" and row["patches"] is not None
        assert await conn.fetchval("SELECT current_setting('engram.tenant_id')") == "acme"
        assert await conn.fetchval("SELECT count(*) FROM checkpoint.agent_states") == 1
        assert await repo_read.read_version(conn, ("globex", "u-1", "nobody"), None, None) is None
