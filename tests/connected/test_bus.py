from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.bus import CHAT, STREAMS, ConsumerSpec, ensure_consumer, ensure_streams

pytestmark = pytest.mark.connected


async def test_streams_are_declared_explicitly_and_idempotently(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_streams(js)
    for stream in STREAMS:
        info = await js.stream_info(stream.name)
        assert info.config.subjects == list(stream.subjects)
        assert info.config.duplicate_window == stream.duplicate_window_s
        assert info.config.max_age == stream.max_age_s


async def test_consumer_settings_change_in_place(nc: NatsClient) -> None:
    js = nc.jetstream()
    spec = ConsumerSpec(
        CHAT, "svc", ("chat.message.*",), max_deliver=4, ack_wait_s=10, max_ack_pending=100
    )
    await ensure_consumer(js, spec)
    changed = ConsumerSpec(
        CHAT,
        "svc",
        ("chat.message.*", "chat.file.*"),
        max_deliver=7,
        ack_wait_s=20,
        max_ack_pending=200,
    )
    await ensure_consumer(js, changed)
    info = await js.consumer_info("CHAT", "svc")
    assert info.config.max_deliver == 7
    assert info.config.ack_wait == 20
    assert info.config.max_ack_pending == 200
    assert info.config.filter_subjects == ["chat.message.*", "chat.file.*"]
    assert not info.config.backoff  # a backoff would replace the ack wait
