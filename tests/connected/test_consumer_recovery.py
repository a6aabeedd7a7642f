"""A worker's durable consumer deleted under it, or missing when it starts, is created again
from its last ack floor: the worker resumes, every valid event is applied once, and what
was dead-lettered before is not dead-lettered again (issue 13). It shows in the health
while the consumer is missing, and is logged at error once, not once per fetch."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from services.runtime.bus import CHAT, DLQ
from services.runtime.component import Health
from services.runtime.db import create_pool
from services.runtime.dlq import DeadKind
from services.runtime.dlq_once import OnceDeadLetters
from services.runtime.positions import ConsumerPositions
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.helpers import dlq_depth, drained, eventually, publish, publish_raw

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]
HEALTH = "consume:CHAT:ingest"
POSITION = (
    "SELECT ack_floor FROM ingest.consumer_positions WHERE stream = 'CHAT' AND durable = 'ingest'"
)


async def some_events(nc: NatsClient, cid: UUID, valid: int, invalid: int) -> None:
    """``valid`` messages of conversation ``cid`` and ``invalid`` broken ones, interleaved."""
    for n in range(max(valid, invalid)):
        if n < valid:
            await publish(nc, f.message(cid, content=f"message {n}"))
        if n < invalid:
            await publish_raw(nc, "chat.message.created", b'{"broken": %d}' % n, str(uuid4()))


async def caught_up(nc: NatsClient) -> bool:
    try:
        return await drained(nc)
    except NotFoundError:  # the consumer is missing
        return False


async def messages(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM ingest.messages"))


def health_of(worker: Worker) -> Health:
    return next(h for h in worker.health() if h.name == HEALTH)


async def short_dlq_window(nc: NatsClient) -> None:
    # The DLQ drops a repeated dead letter by Nats-Msg-Id for two minutes; a test cannot
    # wait that out, so the window is made short enough that a second dead letter of the
    # same message would be stored, and counted.
    await nc.jetstream().update_stream(dataclasses.replace(DLQ.config(), duplicate_window=0.3))
    await asyncio.sleep(0.5)


async def test_deleted_under_a_running_worker(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = nc.jetstream()
    cid = uuid4()
    async with run_ingest() as worker:
        await publish(nc, f.conversation(cid))
        await some_events(nc, cid, valid=20, invalid=3)
        await eventually(lambda: caught_up(nc))
        assert await eventually(lambda: dlq_depth(nc), lambda n: n == 3) == 3
        await worker.component(ConsumerPositions).record()
        last = (await js.stream_info("CHAT")).state.last_seq
        assert await db.fetchval(POSITION) == last
        applied, dead = worker.stats.applied, worker.stats.dead
        assert (applied, dead) == (21, 3)
        await short_dlq_window(nc)
        # The position cannot be read for now: the consumer must stay missing (and say so)
        # rather than be created from the start of the stream.
        await db.execute("REVOKE SELECT ON ingest.consumer_positions FROM engram_ingest")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            await js.delete_consumer("CHAT", "ingest")
            await some_events(nc, cid, valid=5, invalid=1)  # while it is missing
            missing = await eventually(
                lambda: asyncio.sleep(0, health_of(worker)),
                lambda h: not h.ok and "cannot create it again yet" in h.detail,
            )
            assert "consumer missing" in missing.detail
            assert "its last position cannot be read" in missing.detail
            await asyncio.sleep(2.0)  # several fetches fail meanwhile
            with pytest.raises(NotFoundError):
                await js.consumer_info("CHAT", "ingest")
            await db.execute("GRANT SELECT ON ingest.consumer_positions TO engram_ingest")
            await eventually(lambda: caught_up(nc), timeout=20)
            await eventually(lambda: dlq_depth(nc), lambda n: n >= 4)
            await asyncio.sleep(0.5)  # anything replayed by mistake would show by now
        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
        assert info.config.opt_start_seq == last + 1
        assert await messages(db) == 25
        # Only what came after the floor was delivered: nothing applied twice, and the
        # three invalid events dead-lettered before were not dead-lettered again.
        assert (worker.stats.applied, worker.stats.duplicates) == (applied + 5, 0)
        assert worker.stats.dead == dead + 1
        assert await dlq_depth(nc) == 4
        back = health_of(worker)
        assert back.ok and "created again 1x" in back.detail, back
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("engram")
    ]
    assert len(errors) == 2, errors  # missing, and why it could not be created yet: once each
    assert "consumer ingest on CHAT is missing" in errors[0]
    fetch_warnings = [r for r in caplog.records if "fetch failed" in r.getMessage()]
    assert fetch_warnings == []


async def test_missing_when_the_worker_starts(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    js = nc.jetstream()
    cid = uuid4()
    async with run_ingest():
        await publish(nc, f.conversation(cid))
        await some_events(nc, cid, valid=10, invalid=3)
        await eventually(lambda: caught_up(nc))
        await eventually(lambda: dlq_depth(nc), lambda n: n == 3)
    # Stopping recorded where the consumer stood (the loop's last step), however recently
    # the last batch was acked.
    last = (await js.stream_info("CHAT")).state.last_seq
    assert await db.fetchval(POSITION) == last
    await js.delete_consumer("CHAT", "ingest")
    await some_events(nc, cid, valid=4, invalid=1)
    async with run_ingest() as worker:
        await eventually(lambda: caught_up(nc))
        await eventually(lambda: dlq_depth(nc), lambda n: n == 4)
        await asyncio.sleep(0.5)
        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
        assert info.config.opt_start_seq == last + 1
        assert (worker.stats.applied, worker.stats.duplicates, worker.stats.dead) == (4, 0, 1)
        assert health_of(worker).ok
    assert await messages(db) == 14
    # Started again with the re-created consumer in place: its start sequence is kept (the
    # server refuses to change it), the rest of its settings are ensured as usual.
    async with run_ingest(max_deliver=6) as worker:
        await publish(nc, f.message(cid, content="after the second restart"))
        await eventually(lambda: messages(db), lambda n: n == 15)
        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.opt_start_seq == last + 1 and info.config.max_deliver == 6
        assert worker.stats.duplicates == 0


async def test_a_stale_floor_replays_without_dead_lettering_again(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The floor polled last can be a few seconds old: what follows it is delivered again,
    and the inbox and the record of dead letters make that change nothing."""
    js = nc.jetstream()
    cid = uuid4()
    async with run_ingest():
        await publish(nc, f.conversation(cid))
        await some_events(nc, cid, valid=6, invalid=3)
        await eventually(lambda: caught_up(nc))
        await eventually(lambda: dlq_depth(nc), lambda n: n == 3)
    await db.execute(
        "UPDATE ingest.consumer_positions SET ack_floor = 1 WHERE stream = 'CHAT' "
        "AND durable = 'ingest'"
    )
    await js.delete_consumer("CHAT", "ingest")
    with caplog.at_level(logging.INFO):
        async with run_ingest() as worker:
            await eventually(lambda: caught_up(nc))
            await asyncio.sleep(0.5)
            # Everything after the conversation came again: applied before, so no effect.
            assert (worker.stats.applied, worker.stats.duplicates) == (0, 6)
    again = [r for r in caplog.records if "was dead-lettered before; not again" in r.getMessage()]
    assert len(again) == 3
    assert await dlq_depth(nc) == 3
    assert await messages(db) == 6


async def test_a_saved_floor_of_a_re_created_stream_is_not_used(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """A stream deleted and created again restarts its sequences: the old floor would skip
    its first messages, so the consumer delivers the new stream from its start."""
    js = nc.jetstream()
    cid = uuid4()
    async with run_ingest():
        await publish(nc, f.conversation(cid))
        await some_events(nc, cid, valid=10, invalid=0)
        await eventually(lambda: caught_up(nc))
    assert await db.fetchval(POSITION) == 11
    await js.delete_stream("CHAT")
    await js.add_stream(CHAT.config())
    other = uuid4()
    await publish(nc, f.conversation(other))
    await some_events(nc, other, valid=3, invalid=0)
    async with run_ingest() as worker:
        await eventually(lambda: caught_up(nc))
        assert worker.stats.applied == 4
        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.deliver_policy == DeliverPolicy.ALL
    assert await messages(db) == 13


async def test_a_message_is_dead_lettered_once_however_late_it_comes_back(
    env: Env, nc: NatsClient
) -> None:
    pool = await create_pool(env.login("ingest"))
    letters = OnceDeadLetters(nc.jetstream(), "ingest", pool, "ingest")
    await short_dlq_window(nc)

    async def dead_letter(sequence: int, data: bytes) -> None:
        await letters.send_raw(
            "chat.message.created",
            data,
            stream="CHAT",
            sequence=sequence,
            deliveries=1,
            kind=DeadKind.invalid,
            reason="broken",
        )

    try:
        await dead_letter(7, b"broken")
        await asyncio.sleep(0.5)  # the DLQ's own window is over
        await dead_letter(7, b"broken")
        assert (await dlq_depth(nc), letters.skipped) == (1, 1)
        # The same sequence with other bytes: another message (a re-created stream's).
        await dead_letter(7, b"another")
        assert (await dlq_depth(nc), letters.skipped) == (2, 1)
    finally:
        await pool.close()
    # Without the database, a dead letter is still sent.
    await dead_letter(8, b"sent while the database cannot be asked")
    assert (await dlq_depth(nc), letters.skipped) == (3, 1)
