"""Per-state publish order with two replicas sharing the consumer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
from nats.aio.client import Client as NatsClient

from services.checkpointer.ordering import OrderingGate
from services.runtime.service import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    add,
    patch,
    run_checkpointer_fixture,
    wait_version,
)

AGENTS = ("a1", "a2", "a3")
PER_AGENT = 120


async def publish_interleaved(nc: NatsClient) -> None:
    js = nc.jetstream()
    acks = []
    for i in range(PER_AGENT):
        for agent in AGENTS:
            event = patch(
                [add("/local/log/-", i)] if i else [add("/local/log", []), add("/local/log/-", 0)],
                agent=agent,
            )
            acks.append(
                js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())
            )
    # Concurrent publishes from one connection keep their order on the wire and in the
    # stream; awaiting the acks together makes the backlog arrive as fast as possible.
    await asyncio.gather(*acks)


async def test_two_replicas_apply_each_state_in_publish_order(
    run_checkpointer: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    # Small batches so the two replicas interleave; default retry settings: a message held
    # back too often would end in the DLQ.
    settings = {"batch_size": 7, "retry_base_s": 0.5, "retry_max_s": 30.0, "max_deliver": 10}
    async with run_checkpointer(**settings) as one, run_checkpointer(**settings) as two:
        await publish_interleaved(nc)
        for agent in AGENTS:
            await wait_version(db, PER_AGENT, agent=agent)
        gates = [w.component(OrderingGate) for w in (one, two)]
    for agent in AGENTS:
        text = await db.fetchval(
            "SELECT local_state::text FROM checkpoint.agent_states WHERE agent_id = $1", agent
        )
        assert json.loads(text)["log"] == list(range(PER_AGENT)), agent
        events = await db.fetch(
            """SELECT t.version, t.patch::text FROM checkpoint.transitions t
                 JOIN checkpoint.agent_states s USING (state_id)
                WHERE s.agent_id = $1 ORDER BY t.version""",
            agent,
        )
        values = [json.loads(e["patch"])[-1]["value"] for e in events]
        assert values == list(range(PER_AGENT))
    assert await db.fetchval("SELECT count(*) FROM checkpoint.conflicts") == 0
    # Both replicas did part of the work, and the gate held some messages back.
    assert one.stats.applied > 0 and two.stats.applied > 0, (one.stats, two.stats)
    assert one.stats.applied + two.stats.applied == len(AGENTS) * PER_AGENT
    parked = sum(gate.parked for gate in gates)
    print(f"parked: {parked}; naked: {one.stats.retried + two.stats.retried}")
    assert parked > 0  # the replicas did race on the same states
    assert one.stats.retried + two.stats.retried == 0
    assert await db.fetchval("SELECT count(*) FROM checkpoint.parked") == 0
