"""A message whose every delivery dies with its worker still reaches the DLQ."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.bus import CHAT, ConsumerSpec, ensure_consumer
from services.runtime.dlq import DeadLetters, watch_max_deliveries
from tests import factories as f
from tests.helpers import dead_letters, publish

pytestmark = pytest.mark.connected


async def test_unacked_to_the_end_is_dead_lettered(nc: NatsClient) -> None:
    spec = ConsumerSpec(
        CHAT, "crashy", CHAT.subjects, max_deliver=2, ack_wait_s=0.5, max_ack_pending=10
    )
    js = nc.jetstream()
    await ensure_consumer(js, spec)
    watcher = await watch_max_deliveries(nc, spec, DeadLetters(js, "crashy"))
    event = f.message(uuid4(), content="kills its worker")
    await publish(nc, event)
    sub = await js.pull_subscribe_bind(durable="crashy", stream="CHAT")
    for _ in range(2):  # two deliveries, neither acked: the "worker" died each time
        msgs = await sub.fetch(1, timeout=5)
        assert msgs[0].metadata.num_delivered == _ + 1
        await asyncio.sleep(0.7)
    # The server notices the exhaustion when it next tries to deliver (a pull is waiting).
    with pytest.raises(TimeoutError):
        await sub.fetch(1, timeout=1)
    found = await dead_letters(nc, "dlq.crashy.>")
    await watcher.unsubscribe()
    await sub.unsubscribe()
    assert len(found) == 1
    subject, headers, body = found[0]
    assert subject == "dlq.crashy.chat.message.created"
    assert headers["Engram-Dlq-Kind"] == "exhausted"
    assert headers["Engram-Original-Stream"] == "CHAT"
    assert body == event.model_dump_json().encode()
