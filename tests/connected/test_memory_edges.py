"""Memory correctness at the edges (issue 11, section 6): an expired memory is never
returned by search, expire job or not; a retried `engram trigger consolidate --wait` of a
job that already finished reports its summary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.cli_run import engram
from tests.connected.memory_fixtures import (
    a_fading_fact,
    job_done,
    msearch,
    trigger_decay,
    with_vectors,
    write,
)
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

LISBON = "The user booked Hotel Alfama in Lisbon for three nights."
PORTO = "The user booked Hotel Ribeira in Porto for two nights."
FARO = "The user booked Hotel Marina in Faro for a week."


async def test_search_never_returns_an_expired_memory(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=1)
    written_expired = write(LISBON, importance=0.9, expires_at=now - timedelta(hours=1))
    expires_soon = write(PORTO, importance=0.9, expires_at=soon)
    kept = write(FARO, importance=0.1)
    await publish(nc, written_expired, expires_soon, kept)
    await with_vectors(db, 3)
    # stored, with their vectors: only time hides them (no expire job runs here)
    assert await db.fetchval("SELECT count(*) FROM memory.memories WHERE status = 'active'") == 3
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)

    found = await msearch(nc, "which hotel did the user book?", top_k=10)
    assert [h.text for h in found.hits] == [FARO]
    await eventually(
        lambda: db.fetchval(
            "SELECT access_count FROM memory.memories WHERE memory_id = $1", kept.payload.memory_id
        ),
        lambda n: n >= 1,
    )
    await asyncio.sleep(0.3)  # a few more access flushes
    counts = await db.fetch(
        "SELECT access_count, last_accessed_at FROM memory.memories WHERE memory_id = ANY($1)",
        [written_expired.payload.memory_id, expires_soon.payload.memory_id],
    )
    assert [(r["access_count"], r["last_accessed_at"]) for r in counts] == [(0, None)] * 2


async def test_retried_trigger_of_a_finished_job_reports_its_summary(
    env: Env,
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    args = trigger_decay("--job-id", str(uuid4()), "--wait", "20")
    operator = {"NATS_URL": env.nats_url}
    async with run_memory():
        await a_fading_fact(nc, db)
        ran = await engram(*args, env=operator)
        assert ran.code == 0, ran.stderr
        first = json.loads(ran.stdout)
        await job_done(db, first["job_id"])
        importance = await db.fetchval("SELECT importance FROM memory.memories")

        # the scheduler retries (it did not see the first exit): same job, work done
        ran = await engram(*args, env=operator)
    assert ran.code == 0, ran.stderr
    assert json.loads(ran.stdout) == first
    assert await db.fetchval("SELECT importance FROM memory.memories") == importance
    assert await db.fetchval("SELECT count(*) FROM memory.jobs") == 1
