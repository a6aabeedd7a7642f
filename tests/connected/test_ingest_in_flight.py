"""Two batches committing at once (IngestSettings.commits_in_flight): busy conversations
shared by both keep exact counters, and neither batch waits for the other both ways."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import drained, eventually, publish

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]


async def test_batches_in_flight_share_conversations_without_deadlock(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    conversations = [uuid4() for _ in range(40)]
    sessions = {cid: uuid4() for cid in conversations}
    events: list[object] = []
    for cid in conversations:
        events += [f.conversation(cid), f.session_start(sessions[cid], cid)]
    latest = {}
    picks = random.Random(5).choices(conversations, k=2_000)
    for i, cid in enumerate(picks):  # batches name the same conversations in other orders
        latest[cid] = f.T0 + timedelta(seconds=i)
        events.append(f.message(cid, at=latest[cid], metadata={"tokens": 2}))
    await publish(nc, *events)

    async with run_ingest(batch_size=50, commits_in_flight=2) as worker:
        await eventually(lambda: drained(nc), timeout=60)
        assert max(c.peak_in_flight for c in worker.consumers) == 2
        # A deadlock is a transient failure, retried: none may happen.
        assert (worker.stats.retried, worker.stats.dead) == (0, 0)
    rows = await db.fetch(
        "SELECT conversation_id, message_count, total_tokens FROM ingest.conversation_sessions"
        " WHERE session_id = ANY($1)",
        list(sessions.values()),
    )
    counts = Counter(picks)
    assert {r["conversation_id"]: (r["message_count"], r["total_tokens"]) for r in rows} == {
        cid: (n, 2 * n) for cid, n in counts.items()
    }
    last = dict(
        await db.fetch(
            "SELECT conversation_id, last_message_at FROM ingest.conversations"
            " WHERE conversation_id = ANY($1)",
            conversations,
        )
    )
    assert last == latest


async def deadlocks(db: asyncpg.Connection) -> int:
    await db.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        await db.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    )


async def test_mixed_batches_in_flight_apply_as_in_stream_order(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    # Session changes, title updates and edits among the messages: a batch holding one
    # waits for the batch before it if they share the conversation (or message), so every
    # message counts towards the session that was active at its place in the stream.
    rng = random.Random(11)
    conversations = [uuid4() for _ in range(300)]
    active = {cid: uuid4() for cid in conversations}
    counts: Counter[UUID] = Counter()
    titles: dict[UUID, str] = {}
    contents: dict[UUID, str] = {}
    events: list[object] = []
    for cid in conversations:
        events += [f.conversation(cid), f.session_start(active[cid], cid, at=f.T0)]
    for i in range(3_000):
        at = f.T0 + timedelta(seconds=i + 1)
        cid, roll = rng.choice(conversations), rng.random()
        if roll < 0.04:  # the session ends and the next one starts
            new = uuid4()
            events += [f.session_end(active[cid], cid, at=at), f.session_start(new, cid, at=at)]
            active[cid] = new
        elif roll < 0.08:
            titles[cid] = f"title {i}"
            events.append(f.conversation_update(cid, at=at, title=titles[cid]))
        elif roll < 0.12 and contents:
            mid = rng.choice(list(contents))
            contents[mid] = f"edit {i}"
            events.append(f.edit(mid, contents[mid], at=at))
        else:
            mid = uuid4()
            contents[mid] = f"message {i}"
            counts[active[cid]] += 1
            events.append(f.message(cid, mid, at=at, content=contents[mid]))
    before = await deadlocks(db)
    await publish(nc, *events)

    async with run_ingest(batch_size=60, commits_in_flight=2) as worker:
        await eventually(lambda: drained(nc), timeout=90)
        assert max(c.peak_in_flight for c in worker.consumers) == 2
        assert worker.stats.dead == 0
    assert await deadlocks(db) == before
    rows = await db.fetch(
        "SELECT s.session_id, s.message_count FROM ingest.conversation_sessions s"
        " WHERE s.conversation_id = ANY($1)",
        conversations,
    )
    assert {r[0]: r[1] for r in rows if r[1]} == dict(counts)
    assert (
        dict(
            await db.fetch(
                "SELECT conversation_id, title FROM ingest.conversations"
                " WHERE conversation_id = ANY($1) AND title IS NOT NULL",
                conversations,
            )
        )
        == titles
    )
    assert (
        dict(
            await db.fetch(
                "SELECT message_id, content FROM ingest.messages WHERE conversation_id = ANY($1)",
                conversations,
            )
        )
        == contents
    )
