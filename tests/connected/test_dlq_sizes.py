"""Dead letters of every size against the real server: inline up to the limit, in the object
store beyond it, idempotent when retried, read back whole; and no runtime publish that
would not fit ever reaches the server (nats-py closes the connection on its -ERR)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import uuid4

import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.bus import CHAT, ConsumerSpec, ensure_consumer
from services.runtime.dlq import (
    BODY_BUCKET,
    HEADER_BODY,
    HEADER_BODY_SIZE,
    HEADER_REASON,
    MARGIN,
    MAX_REASON,
    DeadKind,
    DeadLetterBodyError,
    DeadLetters,
    dead_letter_body,
    watch_max_deliveries,
)
from services.runtime.sizes import MessageTooLarge, message_size, publish_checked
from tests.connected.test_dlq_max_payload import letters

pytestmark = pytest.mark.connected


async def dead(dl: DeadLetters, data: bytes, sequence: int, reason: str = "broken") -> None:
    await dl.send_raw(
        "chat.message.created",
        data,
        stream="CHAT",
        sequence=sequence,
        deliveries=1,
        kind=DeadKind.invalid,
        reason=reason,
    )


def inline_limit(nc: NatsClient, dl_headers: dict[str, str]) -> int:
    """The biggest body that still goes inline with these headers, its size written with
    7 digits (what a body near 1 MiB takes)."""
    return nc.max_payload - MARGIN - message_size(b"", {**dl_headers, HEADER_BODY_SIZE: "1" * 7})


async def test_inline_up_to_the_limit_then_object_store(nc: NatsClient) -> None:
    js = nc.jetstream()
    dl = DeadLetters(js, "sizes")
    await dead(dl, b"x", 1)
    [small] = await letters(nc, "dlq.sizes.")
    assert small.headers is not None and small.headers[HEADER_BODY] == "inline"
    most = inline_limit(nc, small.headers)
    assert len(str(most)) == len(str(most + 1)) == 7
    # Same header sizes for these sequences (one digit), so the limit is the same.
    fits, over = b"a" * most, b"b" * (most + 1)
    await dead(dl, fits, 2)
    await dead(dl, over, 3)
    _, at_limit, beyond = await letters(nc, "dlq.sizes.")
    assert at_limit.headers is not None and at_limit.headers[HEADER_BODY] == "inline"
    assert at_limit.data == fits
    assert beyond.headers is not None
    assert beyond.headers[HEADER_BODY].startswith(f"object:{BODY_BUCKET}/sizes/CHAT/3/")
    for letter, data in ((small, b"x"), (at_limit, fits), (beyond, over)):
        assert await dead_letter_body(js, letter) == data
    assert nc.is_connected


async def test_many_megabytes_and_a_retry_keep_one_body(nc: NatsClient) -> None:
    js = nc.jetstream()
    dl = DeadLetters(js, "huge")
    data = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB, not even text
    await dead(dl, data, 7)
    await dead(dl, data, 7)  # a redelivered message dead-lettered again
    [letter] = await letters(nc, "dlq.huge.")  # Nats-Msg-Id: one letter
    assert await dead_letter_body(js, letter) == data
    store = await dl.body_store()
    names = [info.name for info in await store.list() if info.name.startswith("huge/")]
    assert len(names) == 1


async def test_a_huge_reason_is_cut_and_never_breaks_the_message(nc: NatsClient) -> None:
    dl = DeadLetters(nc.jetstream(), "reason")
    await dead(dl, b"y" * (nc.max_payload - 10), 1, reason="why? " * 1_000_000)
    [letter] = await letters(nc, "dlq.reason.")
    assert letter.headers is not None
    assert 0 < len(letter.headers[HEADER_REASON]) <= MAX_REASON
    assert nc.is_connected


@dataclass
class Forged:
    headers: dict[str, str] | None
    data: bytes | None


async def test_the_reader_refuses_a_body_that_does_not_match(nc: NatsClient) -> None:
    js = nc.jetstream()
    dl = DeadLetters(js, "forged")
    await dead(dl, b"z" * nc.max_payload, 1)
    await dead(dl, b"original", 2)
    big, small = await letters(nc, "dlq.forged.")
    assert big.headers is not None and small.headers is not None
    with pytest.raises(DeadLetterBodyError, match="digest"):
        await dead_letter_body(js, Forged(small.headers, b"tampered"))
    with pytest.raises(DeadLetterBodyError, match="bytes"):
        await dead_letter_body(js, Forged(small.headers, b"longer than it was"))
    gone = {**big.headers, HEADER_BODY: f"object:{BODY_BUCKET}/forged/CHAT/1/nope"}
    with pytest.raises(DeadLetterBodyError, match="gone"):
        await dead_letter_body(js, Forged(gone, b""))
    # A letter from before these headers existed: its body is the original bytes.
    assert await dead_letter_body(js, Forged({"Engram-Dlq-Kind": "invalid"}, b"old")) == b"old"


async def test_a_publish_that_would_not_fit_raises_and_is_not_sent(nc: NatsClient) -> None:
    js = nc.jetstream()
    headers = {"Nats-Msg-Id": str(uuid4()), "Engram-Note": "headers count too"}
    room = nc.max_payload - message_size(b"", headers)
    ack = await publish_checked(js, "chat.message.created", b"a" * room, headers=headers)
    assert ack.seq > 0
    headers["Nats-Msg-Id"] = str(uuid4())
    with pytest.raises(MessageTooLarge):
        await publish_checked(js, "chat.message.created", b"a" * (room + 1), headers=headers)
    await nc.flush()
    assert nc.is_connected  # nats-py alone would have sent it: -ERR, closed for good
    assert (await js.stream_info("CHAT")).state.messages == 1


async def test_an_exhausted_message_at_max_payload_reaches_the_dlq_whole(
    nc: NatsClient,
) -> None:
    spec = ConsumerSpec(CHAT, "bigcrash", CHAT.subjects, max_deliver=2, ack_wait_s=0.5,
                        max_ack_pending=10)  # fmt: skip
    js = nc.jetstream()
    await ensure_consumer(js, spec)
    watcher = await watch_max_deliveries(nc, spec, DeadLetters(js, "bigcrash"))
    data = b"q" * (nc.max_payload - 1)  # what the advisory copies, not even JSON
    await js.publish("chat.message.created", data)
    sub = await js.pull_subscribe_bind(durable="bigcrash", stream="CHAT")
    for _ in range(2):  # two deliveries, neither acked
        await sub.fetch(1, timeout=5)
        await asyncio.sleep(0.7)
    with pytest.raises(TimeoutError):
        await sub.fetch(1, timeout=1)
    for _ in range(100):
        found = await letters(nc, "dlq.bigcrash.")
        if found:
            break
        await asyncio.sleep(0.1)
    await watcher.unsubscribe()
    await sub.unsubscribe()
    [letter] = found
    assert letter.headers is not None and letter.headers["Engram-Dlq-Kind"] == "exhausted"
    assert letter.headers[HEADER_BODY].startswith("object:")
    assert await dead_letter_body(js, letter) == data
    assert nc.is_connected
