"""Reading the DLQ stream in batches, for `engram dlq` (``dlq_tool.scan``).

One request per letter (``get_msg`` with ``next_by_subj``) made listing 5,000 letters
5,000 round trips. Instead an ephemeral pull consumer is made for the one scan: filtered
on the letters' subject, starting at ``since`` (the server skips what is older), no acks
(``AckPolicy.NONE``: reading changes nothing the workers or other readers see), in memory,
one replica; it is deleted when the scan ends, and the server removes it by itself
(``inactive_threshold``) should the tool die first. Each fetch takes a batch; the scan
ends at the message after which the consumer had nothing pending.

The messages come back as ``RawStreamMsg``, as ``get_msg`` returns them, with the
stream's time read exactly from the delivery's ack subject (nanoseconds, cut to
microseconds as nats-py cuts ``get_msg``'s), so a letter reads the same either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RawStreamMsg
from nats.js.errors import NotFoundError

from services.runtime.bus import DLQ

BATCH = 500  # letters a fetch; a letter is at most max_payload (big bodies live elsewhere)
FETCH_TIMEOUT_S = 5.0  # only when the stream shrinks under the scan (a purge running)
FORGET_AFTER_S = 60.0  # the server deletes the consumer of a tool that died mid-scan
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stream_time(reply: str) -> datetime | None:
    """The stored time of a delivered message, from its ack subject
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (or the
    longer form with domain and account hash, which puts the time third from last)."""
    tokens = reply.split(".")
    if len(tokens) < 9:
        return None
    nanos = tokens[7] if len(tokens) == 9 else tokens[-3]
    if not nanos.isdigit():
        return None
    return EPOCH + timedelta(microseconds=int(nanos) // 1000)


def raw_of(msg: Msg) -> RawStreamMsg:
    meta = msg.metadata
    return RawStreamMsg(
        subject=msg.subject,
        seq=meta.sequence.stream,
        data=msg.data,
        headers=dict(msg.headers) if msg.headers else None,
        stream=meta.stream,
        time=stream_time(msg.reply) if msg.reply else None,
    )


async def messages(
    js: JetStreamContext, subject: str, since: datetime | None = None, batch: int = BATCH
) -> AsyncGenerator[RawStreamMsg]:
    """The DLQ's messages on ``subject`` (wildcards allowed), oldest first."""
    config = ConsumerConfig(
        filter_subject=subject,
        deliver_policy=DeliverPolicy.ALL if since is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=FORGET_AFTER_S,
        mem_storage=True,
        num_replicas=1,
        description="engram dlq: one scan of the dead letters",
    )
    sub = await js.pull_subscribe(subject, stream=DLQ.name, config=config)
    try:
        info = await sub.consumer_info()
        if not info.num_pending:
            return
        while True:
            try:
                fetched = await sub.fetch(batch, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:
                return  # letters deleted under the scan: there is no more
            for msg in fetched:
                yield raw_of(msg)
            if fetched and fetched[-1].metadata.num_pending == 0:
                return
    finally:
        name = sub._consumer  # nats-py keeps the generated name here only
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_consumer(DLQ.name, name)
