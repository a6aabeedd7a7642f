"""What the memory service announces goes through the runtime's outbox: an effect whose
transaction rolls back announces nothing, and an announcement committed with its effect
but not yet published when the worker stops arrives exactly once after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.memory_jobs import MemoryForgotten, Step
from services.memory import repo_jobs
from services.memory.logic import derived_id
from services.runtime.outbox import OutboxDrain
from services.runtime.worker import Worker
from tests.connected.memory_fixtures import T0, consolidate, forget, job_done, write
from tests.helpers import eventually, publish, stored_ids

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.memory_fixtures"]
RunMemory = Callable[..., AbstractAsyncContextManager[Worker]]
FORGOTTEN = "engram.memory.forgotten"


async def outbox_rows(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM memory.event_outbox")
    return count


async def test_a_step_whose_transaction_rolls_back_announces_nothing(
    run_memory: RunMemory,
    nc: NatsClient,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_step_done = repo_jobs.step_done
    failing = [True]

    async def fail_after_the_notice(conn: Any, key: Any, report: Any, lease_s: float) -> None:
        # The expire step has queued its notice in this transaction: roll it all back.
        if report.step is Step.expire and failing:
            raise RuntimeError("the database went away")
        await real_step_done(conn, key, report, lease_s)

    monkeypatch.setattr(repo_jobs, "step_done", fail_after_the_notice)
    seen: list[Msg] = []

    async def on_notice(msg: Msg) -> None:
        seen.append(msg)

    sub = await nc.subscribe(FORGOTTEN, cb=on_notice)  # every publish, duplicates too
    dated = write("until tomorrow", "episodic", expires_at=T0 + timedelta(days=1))
    job = consolidate(at=T0 + timedelta(days=2), steps=["expire"])
    async with run_memory() as worker:
        await publish(nc, dated)
        await eventually(lambda: db.fetchval("SELECT count(*) FROM memory.memories"))
        await publish(nc, job)
        await eventually(
            lambda: db.fetchval("SELECT last_error FROM memory.jobs"),
            lambda error: error is not None and "went away" in error,
        )
        assert await worker.component(OutboxDrain).drain() == 0
        assert await outbox_rows(db) == 0
        assert await db.fetchval("SELECT status FROM memory.memories") == "active"

        failing.clear()  # the retry commits: its notice is published, once
        await job_done(db, job.payload.job_id)
        await eventually(lambda: stored_ids(nc, FORGOTTEN), lambda ids: len(ids) == 1)
        await asyncio.sleep(0.3)  # a few more polls of the drain
    await sub.unsubscribe()
    assert await outbox_rows(db) == 0
    assert len(seen) == 1 and len(await stored_ids(nc, FORGOTTEN)) == 1
    notice = MemoryForgotten.model_validate_json(seen[0].data)
    assert notice.payload.memory_ids == [dated.payload.memory_id]
    assert notice.payload.reason == "expired"


async def test_a_notice_committed_but_not_published_before_a_stop_arrives_once_after_restart(
    run_memory: RunMemory,
    nc: NatsClient,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def cut_off(self: OutboxDrain) -> bool:  # the worker dies before it publishes
        raise RuntimeError("killed before publishing")

    kept = write("a fact to forget")
    erase = forget(memory_ids=[kept.payload.memory_id])
    msg_id = f"{erase.tenant_id}:{derived_id('forgotten', erase.event_id)}"
    with monkeypatch.context() as patch:
        patch.setattr(OutboxDrain, "drain_batch", cut_off)
        async with run_memory() as worker:
            await publish(nc, kept, erase)
            await eventually(
                lambda: db.fetchval("SELECT status FROM memory.memories"),
                lambda status: status == "forgotten",
            )
            # The effect and its notice committed together; nothing went out.
            row = await db.fetchrow("SELECT subject, msg_id FROM memory.event_outbox")
            assert row is not None and (row["subject"], row["msg_id"]) == (FORGOTTEN, msg_id)
            health = await eventually(
                lambda: asyncio.sleep(0, worker.component(OutboxDrain).health()),
                lambda h: not h.ok,
            )
            assert "killed before publishing" in health.detail
    assert await stored_ids(nc, FORGOTTEN) == []
    assert await outbox_rows(db) == 1

    async with run_memory():  # a new worker publishes what the last one left
        await eventually(lambda: stored_ids(nc, FORGOTTEN), lambda ids: len(ids) >= 1)
        await eventually(lambda: outbox_rows(db), lambda n: n == 0)
        await asyncio.sleep(0.3)  # a few more polls of the drain
    assert await stored_ids(nc, FORGOTTEN) == [msg_id]
