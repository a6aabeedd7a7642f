"""A database outage longer than the whole retry budget loses nothing (issue 13, first
part): while PostgreSQL is unreachable the worker holds its batch and pulls nothing,
instead of spending deliveries until valid events are dead-lettered as "exhausted"."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.connected.proxy_fixtures import *  # noqa: F403 - the fixtures
from tests.helpers import dlq_depth, eventually, publish
from tests.proxy import PostgresCut

pytestmark = pytest.mark.connected


async def test_an_outage_longer_than_the_retry_budget_loses_nothing(
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
    cut: tuple[PostgresCut, str],
) -> None:
    proxy, through_proxy = cut
    cid = uuid.uuid4()
    before = [factories.conversation(cid)] + [factories.message(cid) for _ in range(20)]
    during = [factories.message(cid) for _ in range(30)]

    async def stored() -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM ingest.messages WHERE conversation_id = $1", cid
        )
        return count

    # 4 deliveries 0.05 s .. 0.2 s apart: the whole retry budget is under a second.
    async with run_ingest(database_url=through_proxy) as worker:
        await publish(nc, *before)
        await eventually(stored, lambda n: n == 20)
        proxy.cut()
        await publish(nc, *during)
        await asyncio.sleep(4.0)  # four times the retry budget
        health_during = [h.ok for h in worker.health() if h.name == "database"]
        proxy.restore()
        await eventually(stored, lambda n: n == 50, timeout=30)
        assert await dlq_depth(nc) == 0  # nothing "exhausted"
        assert worker.stats.dead == 0
        assert health_during == [False]  # health said so while it lasted
        assert worker.stats.database_outages >= 1
        assert [h.ok for h in worker.health() if h.name == "database"] == [True]


async def test_the_held_batch_is_applied_within_seconds_of_the_database_coming_back(
    nc: NatsClient,
    db: asyncpg.Connection,
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
    cut: tuple[PostgresCut, str],
) -> None:
    """With the production backoff (0.5 s doubling to 30 s) an outage's probes would by now
    be 16 s apart; they back off only to ``database_probe_max_s`` (2 s), so the worker
    resumes within seconds of the restore however long the outage was."""
    proxy, through_proxy = cut
    cid = uuid.uuid4()
    during = [factories.message(cid) for _ in range(10)]

    async def stored() -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM ingest.messages WHERE conversation_id = $1", cid
        )
        return count

    async with run_ingest(database_url=through_proxy, retry_base_s=0.5, retry_max_s=30.0):
        await publish(nc, factories.conversation(cid))
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) FROM ingest.conversations WHERE conversation_id = $1", cid
            ),
            lambda n: n == 1,
        )
        proxy.cut()
        await publish(nc, *during)
        await asyncio.sleep(17.0)  # doubling from 0.5 s, the next probe would be at 31.5 s
        proxy.restore()
        restored = time.monotonic()
        await eventually(stored, lambda n: n == len(during), timeout=30)
        assert time.monotonic() - restored < 6.0
