"""The runtime's transactional outbox and its loop, on the probe service (probe_service.py,
declared the way any service declares itself), against the real servers.

The promise under test: an announcement is published if and only if the effect it
announces committed, exactly once — even when the worker died between publishing and
deleting the row, and even when one row can never be published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.component import WorkerContext
from services.runtime.db import create_pool
from services.runtime.loop import Loop
from services.runtime.outbox import OutboxDrain, Outgoing
from services.runtime.supervise import Supervisor
from tests import factories
from tests.conftest import Env
from tests.connected.probe_service import (
    ECHO,
    OUTBOX,
    SPEC,
    ProbeSettings,
    echo_of,
    install,
    running,
)
from tests.helpers import eventually, publish, stored_ids

pytestmark = pytest.mark.connected


@pytest.fixture
async def probe_db(env: Env) -> str:
    return await install(env)


async def echoes(nc: NatsClient) -> list[str]:
    """The Nats-Msg-Id of every message on the echo subject, in stream order."""
    return await stored_ids(nc, ECHO)


async def pending(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM probe.event_outbox")
    return count


async def test_each_applied_event_is_announced_once_even_when_retried_without_headers(
    probe_db: str, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid.uuid4()
    events = [factories.message(cid) for _ in range(20)]
    async with running(env) as worker:
        await publish(nc, *events)
        # A producer retrying without Nats-Msg-Id: JetStream stores them again; the
        # inbox applies each event once, so each is announced once.
        js = nc.jetstream()
        for event in events[:5]:
            await js.publish(event.type, event.model_dump_json().encode())
        await eventually(lambda: echoes(nc), lambda ids: len(ids) >= 20)
        await eventually(lambda: pending(db), lambda n: n == 0)
        assert worker.stats.duplicates == 5
    ids = await echoes(nc)
    assert sorted(ids) == sorted(echo_of(e).msg_id for e in events)


async def test_a_drain_that_died_after_publishing_publishes_nothing_twice(
    probe_db: str, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    # The state a crash leaves: rows committed, already published, never deleted.
    announced = [echo_of(factories.message(uuid.uuid4())) for _ in range(3)]
    await OUTBOX.add(db, [Outgoing.event(e) for e in announced])
    js = nc.jetstream()
    for event in announced:
        await js.publish(ECHO, event.model_dump_json().encode(), headers=event.headers())
    async with running(env):
        await eventually(lambda: pending(db), lambda n: n == 0)
    assert sorted(await echoes(nc)) == sorted(e.msg_id for e in announced)


async def test_a_rolled_back_effect_announces_nothing(
    probe_db: str, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    lost = echo_of(factories.message(uuid.uuid4()))
    transaction = db.transaction()
    await transaction.start()
    await OUTBOX.add(db, [Outgoing.event(lost)])
    await transaction.rollback()  # the effect failed
    event = factories.message(uuid.uuid4())
    async with running(env):
        await publish(nc, event)
        await eventually(lambda: echoes(nc), lambda ids: len(ids) >= 1)
        await asyncio.sleep(0.5)  # two more polls of the drain
    assert await echoes(nc) == [echo_of(event).msg_id]


async def test_a_row_over_max_payload_is_kept_with_its_reason_and_the_rest_flow(
    probe_db: str, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    small = echo_of(factories.message(uuid.uuid4()))
    huge = Outgoing(ECHO, "huge-1", b"x" * (nc.max_payload + 1))
    await OUTBOX.add(db, [huge, Outgoing.event(small)])
    async with running(env) as worker:
        await eventually(lambda: echoes(nc), lambda ids: len(ids) >= 1)
        drain = worker.component(OutboxDrain)
        await eventually(lambda: asyncio.sleep(0, drain.failed), lambda n: n == 1)
    assert await echoes(nc) == [small.msg_id]
    row = await db.fetchrow("SELECT msg_id, failed FROM probe.event_outbox")
    assert row is not None and row["msg_id"] == "huge-1"
    assert "max_payload" in row["failed"] or "bytes" in row["failed"]


@asynccontextmanager
async def loop_context(env: Env) -> AsyncIterator[WorkerContext]:
    settings = ProbeSettings(nats_url=env.nats_url, database_url=env.login(SPEC.name))
    pool = await create_pool(settings.database_url, worker=True)
    nc = await nats.connect(env.nats_url)
    try:
        yield WorkerContext(settings, pool, nc, OUTBOX, Supervisor("probe", grace_s=1))
    finally:
        await nc.close()
        await pool.close()


async def test_a_loop_listens_again_after_its_connection_is_killed(
    env: Env, db: asyncpg.Connection
) -> None:
    steps: list[float] = []

    async def step() -> bool:
        steps.append(asyncio.get_running_loop().time())
        return False

    loop = Loop("probe", step, every_s=60.0, channel="probe_wake")  # only NOTIFY wakes it
    async with loop_context(env) as ctx:
        await loop.start(ctx)
        try:
            await eventually(lambda: asyncio.sleep(0, len(steps)), lambda n: n == 1)
            await db.execute("NOTIFY probe_wake")
            await eventually(lambda: asyncio.sleep(0, len(steps)), lambda n: n == 2)
            killed = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%probe_wake%'"
            )
            assert killed == 1
            # The lost connection wakes the loop (a step) and it listens again.
            await eventually(lambda: asyncio.sleep(0, len(steps)), lambda n: n == 3)
            await eventually(
                lambda: db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%probe_wake%'"
                ),
                lambda n: n == 1,
            )
            await db.execute("NOTIFY probe_wake")
            await eventually(lambda: asyncio.sleep(0, len(steps)), lambda n: n == 4)
        finally:
            await loop.stop()


async def test_a_failing_step_shows_in_health_and_recovers(env: Env) -> None:
    failures = [RuntimeError("database is away"), RuntimeError("still away")]
    done: list[int] = []

    async def step() -> bool:
        if failures:
            raise failures.pop(0)
        done.append(1)
        return False

    loop = Loop("flaky", step, every_s=0.05)
    health = []
    async with loop_context(env) as ctx:
        await loop.start(ctx)
        try:
            health.append(
                await eventually(lambda: asyncio.sleep(0, loop.health()), lambda h: not h.ok)
            )
            await eventually(lambda: asyncio.sleep(0, len(done)), lambda n: n >= 1)
            assert loop.health().ok
        finally:
            await loop.stop()
    assert "away" in health[0].detail
    assert ctx.supervisor.failure is None  # a failing step is retried, not fatal
