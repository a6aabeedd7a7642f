"""The consumer's fetch against the real nats-server: early return with what has arrived,
the server's statuses, and no message lost or delivered twice while a publisher races."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from services.runtime.bus import CHAT, ConsumerSpec, ensure_consumer
from services.runtime.consumer import PullConsumer
from services.runtime.dlq import DeadLetters
from services.runtime.fetch import Fetcher, PullStatusError
from tests.helpers import eventually

pytestmark = pytest.mark.connected
SUBJECT = "chat.message.created"


async def bound(nc: NatsClient, durable: str = "fetch") -> JetStreamContext.PullSubscription:
    js = nc.jetstream()
    await ensure_consumer(
        js,
        ConsumerSpec(
            CHAT, durable, CHAT.subjects, max_deliver=5, ack_wait_s=30, max_ack_pending=5000
        ),
    )
    return await js.pull_subscribe_bind(durable=durable, stream="CHAT")


async def publish(nc: NatsClient, first: int, count: int) -> None:
    js = nc.jetstream()
    for n in range(first, first + count):
        await js.publish(SUBJECT, b"%d" % n)


async def test_returns_what_has_arrived_and_keeps_the_rest_for_the_next_call(
    nc: NatsClient,
) -> None:
    psub = await bound(nc)
    fetcher = Fetcher(psub)
    await publish(nc, 0, 20)
    started = time.monotonic()
    got: list[Msg] = []
    while len(got) < 20:
        got += await fetcher.fetch(100, 5.0)
    # Returned as soon as messages were there, not when the batch (100) was full or the
    # request (5 s) expired; one request brought all of them.
    assert time.monotonic() - started < 2.0
    assert [int(m.data) for m in got] == list(range(20))
    assert fetcher.requests == 1 and fetcher.open
    # The open request delivers what is published next; the next call takes it.
    await publish(nc, 20, 3)
    later: list[Msg] = []
    while len(later) < 3:
        later += await fetcher.fetch(100, 5.0)
    assert [int(m.data) for m in later] == [20, 21, 22]
    assert fetcher.requests == 1
    for m in got + later:
        assert m.reply and m.metadata.num_delivered == 1
        await m.ack()
    await psub.unsubscribe()


async def test_expired_request_is_an_empty_batch(nc: NatsClient) -> None:
    psub = await bound(nc)
    fetcher = Fetcher(psub)
    started = time.monotonic()
    assert await fetcher.fetch(10, 0.5) == []
    waited = time.monotonic() - started
    assert 0.3 < waited < 1.5
    assert fetcher.idle  # the server's 408 was read and dropped, not left queued
    # A message published after the expiry comes with the next request.
    await publish(nc, 0, 1)
    got = await fetcher.fetch(10, 0.5)
    assert [int(m.data) for m in got] == [0]
    assert fetcher.requests == 2
    await got[0].ack()
    await psub.unsubscribe()


async def test_no_messages_status_is_an_empty_batch(nc: NatsClient) -> None:
    psub = await bound(nc)
    fetcher = Fetcher(psub)
    # A no_wait request on an empty stream is answered 404 at once: delivered into the
    # subscription's queue as it would be for an old request of ours.
    await nc.publish(psub._nms, b'{"batch": 5, "no_wait": true}', reply=psub._deliver)
    await eventually(lambda: asyncio.sleep(0, psub.pending_msgs), lambda n: n == 1)
    assert await fetcher.fetch(5, 0.5, request=False) == []
    assert fetcher.idle
    await psub.unsubscribe()


async def test_exceeded_max_waiting_raises_and_sends_no_event(nc: NatsClient) -> None:
    js = nc.jetstream()
    await js.add_consumer(
        "CHAT",
        ConsumerConfig(durable_name="narrow", ack_policy=AckPolicy.EXPLICIT, max_waiting=1),
    )
    first = Fetcher(await js.pull_subscribe_bind(durable="narrow", stream="CHAT"))
    second = Fetcher(await js.pull_subscribe_bind(durable="narrow", stream="CHAT"))
    waiting = asyncio.create_task(first.fetch(10, 2.0))  # holds the only waiting slot
    await asyncio.sleep(0.2)
    with pytest.raises(PullStatusError) as err:
        await second.fetch(10, 2.0)
    assert err.value.code == "409"
    assert "MaxWaiting" in err.value.description
    await publish(nc, 0, 1)
    got = await waiting
    assert [int(m.data) for m in got] == [0]
    await got[0].ack()


async def test_nothing_lost_or_doubled_while_a_publisher_races(nc: NatsClient) -> None:
    total = 3000
    psub = await bound(nc)
    fetcher = Fetcher(psub)

    async def racing_publisher() -> None:
        rng = random.Random(5)
        sent = 0
        while sent < total:
            burst = min(rng.choice((1, 1, 3, 20, 150)), total - sent)
            await publish(nc, sent, burst)
            sent += burst
            await asyncio.sleep(rng.choice((0, 0, 0.001, 0.01, 0.25)))

    publisher = asyncio.create_task(racing_publisher())
    seen: list[int] = []
    sizes: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen) < total and time.monotonic() < deadline:
        # Short requests, so many of them expire with messages still arriving.
        msgs = await fetcher.fetch(37, 0.2)
        sizes.append(len(msgs))
        for m in msgs:
            assert m.reply and m.metadata.num_delivered == 1
            seen.append(int(m.data))
            await m.ack()
    await publisher
    assert sorted(seen) == list(range(total))  # each once: none lost, none doubled
    assert seen == list(range(total))  # and in stream order
    assert max(sizes) <= 37
    assert 0 in sizes  # requests did expire during the race
    # Acks are fire-and-forget: the server may count the last ones a moment later.
    info = await eventually(
        lambda: nc.jetstream().consumer_info("CHAT", "fetch"), lambda i: i.num_ack_pending == 0
    )
    assert info.num_redelivered == 0 and info.num_pending == 0
    await psub.unsubscribe()


class Recorder:
    """A processor that acks what it is given and remembers it."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def prepare(self, msgs: Sequence[Msg]) -> Any:
        return msgs

    async def commit(self, batch: Any) -> None:
        for m in batch:
            self.seen.append(int(m.data))
            await m.ack()


async def test_stop_drains_the_open_request_and_asks_for_no_more(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec = ConsumerSpec(
        CHAT, "drainer", CHAT.subjects, max_deliver=5, ack_wait_s=30, max_ack_pending=5000
    )
    recorder = Recorder()
    consumer = PullConsumer(
        spec,
        recorder,
        batch_size=50,  # type: ignore[arg-type]
        fetch_wait_s=1.5,
        drain_timeout_s=5.0,
    )
    await consumer.start(nc, DeadLetters(js, "drainer"))
    await publish(nc, 0, 1)
    await eventually(lambda: asyncio.sleep(0, len(recorder.seen)), lambda n: n == 1)
    fetcher = consumer._fetcher
    assert fetcher is not None and fetcher.open
    requests = fetcher.requests
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.1)
    # Published while stopping: the open request still brings it, and it is committed.
    await publish(nc, 1, 2)
    await stopping
    assert recorder.seen == [0, 1, 2]
    assert fetcher.requests == requests
    info = await eventually(
        lambda: js.consumer_info("CHAT", "drainer"), lambda i: i.num_ack_pending == 0
    )
    assert info.num_pending == 0 and info.num_redelivered == 0
