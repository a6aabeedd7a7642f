"""The ordering gate's parking lot: a parked message whose predecessor was dead-lettered
is applied by the sweep; a parked message that turns out invalid is dead-lettered."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.state import StatePatch
from contracts.state_queries import StateGetReply
from services.runtime.worker import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    add,
    patch,
    request,
    run_checkpointer_fixture,
    wait_version,
)
from tests.helpers import dead_letters, eventually


async def published(nc: NatsClient, event: StatePatch) -> int:
    ack = await nc.jetstream().publish(
        event.type, event.model_dump_json().encode(), headers=event.headers()
    )
    return int(ack.seq)


async def test_parked_messages_are_applied_or_dead_lettered(
    run_checkpointer: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    async with run_checkpointer():
        await published(nc, patch([add("/local/a", 1)]))
        await wait_version(db, 1)
    poison = patch([{"op": "test", "path": "/local/a", "value": 2}])
    later = patch([add("/local/b", 2)])
    broken = patch([{"op": "remove", "path": "/local/nope"}])
    p_seq = await published(nc, poison)
    state_id = await db.fetchval("SELECT state_id FROM checkpoint.agent_states")
    for event in (later, broken):
        # As if another replica had parked them while `poison` was in flight.
        seq = await published(nc, event)
        await db.execute(
            "INSERT INTO checkpoint.inbox (event_id, tenant_id, subject) VALUES ($1, 'acme', $2)",
            event.event_id,
            event.type,
        )
        await db.execute(
            """INSERT INTO checkpoint.parked (stream_seq, state_id, tenant_id, event_id,
                   waits_seq, waits_id, data) VALUES ($1, $2, 'acme', $3, $4, $5, $6)""",
            seq,
            state_id,
            event.event_id,
            [p_seq],
            [poison.event_id],
            event.model_dump_json().encode(),
        )
    async with run_checkpointer(sweep_every_s=0.2):
        found = await dead_letters(nc, "dlq.checkpointer.>", expect=2)
        await wait_version(db, 2)
        assert (
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM checkpoint.parked"), lambda n: n == 0
            )
            == 0
        )
        reply = await request(nc, "query.state.get", StateGetReply)
    reasons = " | ".join(h["Engram-Dlq-Reason"] for _, h, _ in found)
    assert "test failed" in reasons and "path /local/nope does not exist" in reasons
    seqs = sorted(h["Engram-Original-Sequence"] for _, h, _ in found)
    assert seqs == sorted([str(p_seq), str(p_seq + 2)])
    assert reply.state is not None and reply.state.local == {"a": 1, "b": 2}
