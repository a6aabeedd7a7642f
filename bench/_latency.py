"""Publish -> applied latency: a steady publish at a set rate, each event timed until a
poll of the database sees it and until the worker acks it (``steady_publish``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext


@dataclass(frozen=True)
class Outgoing:
    """One message of a steady publish."""

    subject: str
    data: bytes | Callable[[], bytes]  # a callable is serialized when it is sent
    headers: dict[str, str] | None
    key: uuid.UUID | None = None  # what the poll query returns once it is applied
    timed: bool = True  # its latency is recorded (not a warm-up or a bad event)


@dataclass
class Timings:
    """What a steady publish saw, by index in the sequence published."""

    seqs: list[int]  # the stream sequence of each (from its publish ack)
    by_poll: dict[int, float]  # seconds from the publish call to the first poll seeing it
    by_ack: dict[int, float]  # seconds from the publish call to the worker's first +ACK
    achieved_rate: float
    unseen: int  # keyed messages the poll had not seen when it gave up


def ack_stream_seq(subject: str, stream: str, durable: str) -> int | None:
    """The stream sequence an ack on ``$JS.ACK.>`` is about, if it is ``durable``'s."""
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
    # (or the v2 form with domain and account hash before <stream>)
    tokens = subject.split(".")
    for i in range(2, len(tokens) - 3):
        if tokens[i] == stream and tokens[i + 1] == durable:
            return int(tokens[i + 3])
    return None


async def steady_publish(  # noqa: PLR0915 - one publish loop with its poller and acks
    admin: NatsClient,
    js: JetStreamContext,
    db: asyncpg.Connection,
    items: Sequence[Outgoing],
    *,
    rate: float,
    poll_sql: str,
    settle_s: float = 60.0,
    progress: Callable[[int], None] | None = None,
    settled: Callable[[], None] | None = None,
    durable: tuple[str, str] = ("CHAT", "ingest"),
) -> Timings:
    """Publish ``items`` at ``rate``/s through ``js`` and time each one until applied.

    A poller runs ``poll_sql`` (every ~2 ms, ``$1`` the keys still outstanding; it returns
    the keys applied) on ``db``: latency = start of the first poll that sees the key - the
    publish call. Resolution ~2-3 ms; it adds work to PostgreSQL only. The worker's acks
    (sent right after COMMIT), seen on ``$JS.ACK.>`` by ``admin`` (the NATS admin), give a
    second timing with no polling. Returns once every key was seen (or after ``settle_s``);
    ``settled`` is called then, before a short wait for the last acks.
    """
    outstanding: dict[uuid.UUID, int] = {}
    sent_at: list[float] = [0.0] * len(items)
    by_poll: dict[int, float] = {}
    acked: dict[int, float] = {}
    done = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        at = time.perf_counter()
        if msg.data and not msg.data.startswith(b"+ACK"):
            return  # in progress, nak, term
        seq = ack_stream_seq(msg.subject, *durable)
        if seq is not None:
            acked.setdefault(seq, at)

    async def poller() -> None:
        while not (done.is_set() and not outstanding):
            if outstanding:
                t = time.perf_counter()
                for row in await db.fetch(poll_sql, list(outstanding)):
                    i = outstanding.pop(row[0], None)
                    if i is not None and items[i].timed:
                        by_poll[i] = t - sent_at[i]
            await asyncio.sleep(0.002)

    ack_sub = await admin.subscribe("$JS.ACK.>", cb=on_ack)
    poll_task = asyncio.create_task(poller())
    futures: list[asyncio.Future[Any]] = []
    try:
        started, i = time.perf_counter(), 0
        while i < len(items):
            due = min(len(items), int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                item = items[i]
                data = item.data if isinstance(item.data, bytes) else item.data()
                sent_at[i] = time.perf_counter()
                if item.key is not None:
                    outstanding[item.key] = i
                futures.append(await js.publish_async(item.subject, data, headers=item.headers))
                i += 1
            if progress is not None:
                progress(i)
            await asyncio.sleep(0.001)
        achieved = len(items) / (time.perf_counter() - started)
        await js.publish_async_completed()
        seqs = [int(f.result().seq) for f in futures]
        done.set()
        deadline = time.perf_counter() + settle_s
        while outstanding and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.01)
        unseen = len(outstanding)
        if settled is not None:
            settled()
        await asyncio.sleep(0.2)  # the last acks
    finally:
        done.set()
        outstanding.clear()
        await poll_task
        await ack_sub.unsubscribe()
    by_ack = {
        i: acked[seq] - sent_at[i] for i, seq in enumerate(seqs) if items[i].timed and seq in acked
    }
    return Timings(seqs, by_poll, by_ack, achieved, unseen)
