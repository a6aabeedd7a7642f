"""Small helpers for connected tests: publish events, wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.envelope import Envelope

T = TypeVar("T")


async def publish(nc: NatsClient, *events: Envelope) -> None:
    js = nc.jetstream()
    for event in events:
        await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())


async def publish_raw(nc: NatsClient, subject: str, data: bytes, msg_id: str | None = None) -> None:
    await nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool] = bool,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until ``until(value)``; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


async def dead_letters(
    nc: NatsClient, subject: str = "dlq.>", expect: int = 1, timeout: float = 15.0
) -> list[tuple[str, dict[str, str], bytes]]:
    """Read the DLQ stream from the start until ``expect`` messages are there."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        subject, stream="DLQ", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[tuple[str, dict[str, str], bytes]] = []
    deadline = time.monotonic() + timeout
    while len(found) < expect and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(expect - len(found), timeout=0.5)
        except TimeoutError:
            continue
        for m in msgs:
            found.append((m.subject, dict(m.headers or {}), m.data))
            await m.ack()
    await sub.unsubscribe()
    return found


async def send_event(nc: NatsClient, event: Envelope) -> int:
    """Publish one event; returns its stream sequence."""
    ack = await nc.jetstream().publish(
        event.type, event.model_dump_json().encode(), headers=event.headers()
    )
    return int(ack.seq)


async def drained(nc: NatsClient, stream: str = "CHAT", consumer: str = "ingest") -> bool:
    """Every message stored in the stream was acked or terminated by the consumer.

    Compares the ack floor with the stream's last sequence: right after a publish the
    consumer's pending counters may not have caught up yet.
    """
    js = nc.jetstream()
    last = (await js.stream_info(stream)).state.last_seq
    info = await js.consumer_info(stream, consumer)
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0


async def dlq_depth(nc: NatsClient) -> int:
    return (await nc.jetstream().stream_info("DLQ")).state.messages


# For tests that put every event in the stream before the worker starts and need them in
# one batch: natural batching would commit whatever the first socket read brought in.
ONE_BATCH_S = 0.5


async def stored(nc: NatsClient, subject: str, stream: str = "ENGRAM") -> list[Msg]:
    """Every message ``stream`` holds on ``subject``, oldest first (duplicates included:
    what a consumer would receive)."""
    js = nc.jetstream()
    info = await js.stream_info(stream, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    if not count:
        return []
    sub = await js.pull_subscribe(subject, stream=stream)
    try:
        return await sub.fetch(count, timeout=5)
    finally:
        await sub.unsubscribe()


async def stored_ids(nc: NatsClient, subject: str, stream: str = "ENGRAM") -> list[str]:
    """The Nats-Msg-Id of every message ``stream`` holds on ``subject``."""
    return [(m.headers or {}).get("Nats-Msg-Id", "") for m in await stored(nc, subject, stream)]
