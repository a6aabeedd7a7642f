"""A message applied after its session ended amends the session's summary.

JetStream redelivers a crashed worker's unacked messages after the ack wait, while the
restarted worker already receives newer ones: `bench/chaos.py` saw `chat.session.ended`
applied before some of its session's messages, whose text then never reached the summary
(2 of 1,915 summaries missing, 12 messages left behind). Here the late message is published
after the end, as such a redelivery arrives; the summary must be written again with it,
and the notes are dropped once the late window is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from uuid import uuid4

import asyncpg
from nats.aio.client import Client as NatsClient

from services.memory.runner import JobRunner
from services.runtime.worker import Worker
from tests import factories as f
from tests.connected.memory_fixtures import AGENT, T0
from tests.helpers import eventually, publish

pytest_plugins = ["tests.connected.memory_fixtures"]

TURNS = [
    ("user", "Find me a quiet hotel in Lisbon near the river for three nights."),
    ("assistant", "Hotel Alfama is quiet and by the river; it is booked from Friday."),
]
LATE = ("user", "Also book a taxi from the airport to Hotel Alfama on Friday.")


async def summary_text(db: asyncpg.Connection) -> str | None:
    text: str | None = await db.fetchval(
        "SELECT text FROM memory.memories WHERE origin = 'session'"
    )
    return text


async def test_a_message_applied_after_its_session_ended_amends_the_summary(
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    sid, cid = uuid4(), uuid4()
    said = [
        f.message(cid, content=text, role=role, session_id=sid, at=T0 + timedelta(minutes=i))
        for i, (role, text) in enumerate([*TURNS, LATE])
    ]
    async with run_memory(session_late_s=1.0) as worker:
        await publish(nc, f.session_start(sid, cid, agent_id=AGENT, user_id="u-1"), *said[:2])
        await publish(nc, f.session_end(sid, cid))
        first = await eventually(lambda: summary_text(db), timeout=30)
        assert first is not None and "Hotel Alfama" in first and "taxi" not in first
        await publish(nc, said[2])  # sent before the end; applied after it
        amended = await eventually(
            lambda: summary_text(db), lambda t: t is not None and "taxi" in t, timeout=30
        )
        assert amended is not None and "Hotel Alfama" in amended
        assert await db.fetchval("SELECT count(*) FROM memory.memories") == 1
        # After the late window the ended session's notes and row are dropped.
        await asyncio.sleep(1.2)
        await worker.component(JobRunner).prune_notes()
        assert await db.fetchval("SELECT count(*) FROM memory.session_notes") == 0
        assert await db.fetchval("SELECT count(*) FROM memory.sessions") == 0


async def test_a_session_with_every_message_late_gets_its_summary(
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    """The two summaries the chaos bench missed: the end applied before any message."""
    sid, cid = uuid4(), uuid4()
    async with run_memory() as _:
        await publish(nc, f.session_start(sid, cid, agent_id=AGENT), f.session_end(sid, cid))
        await asyncio.sleep(1.0)
        assert await summary_text(db) is None  # nothing said yet: nothing to remember
        await publish(
            nc,
            *[
                f.message(cid, content=t, role=r, session_id=sid, at=T0 + timedelta(minutes=i))
                for i, (r, t) in enumerate(TURNS)
            ],
        )
        # Each late batch amends the summary: on a slow machine the first messages may be
        # summarized before the rest are applied (CI, 2026-12-07), so wait for the whole.
        text = await eventually(
            lambda: summary_text(db), lambda t: t is not None and "Hotel Alfama" in t, timeout=30
        )
    assert text is not None and "Hotel Alfama" in text
