"""`engram status` as an operator reads it: dead letters per consumer (a service's
letters split by the stream they came from), the age of the oldest pending message,
which consumers have a worker pulling, the embedder's model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from services.runtime.dlq import DeadKind, DeadLetters
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.cli_run import engram, urls
from tests.helpers import dead_letters, publish_raw

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]


def consumer(document: Any, stream: str, name: str) -> dict[str, Any]:
    (found,) = [c for c in document["consumers"] if (c["stream"], c["consumer"]) == (stream, name)]
    return dict(found)


async def test_status_counts_per_consumer_and_shows_who_is_alive(
    env: Env, nc: NatsClient, db: asyncpg.Connection, run_ingest: RunIngest
) -> None:
    js = nc.jetstream()
    # The memory service's three durables, as a deployment whose memory workers are down.
    for stream, subject in (
        ("MEMORY", "memory.>"),
        ("CHAT", "chat.session.*"),
        ("ENGRAM", "engram.>"),
    ):
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="memory", filter_subject=subject, ack_policy=AckPolicy.EXPLICIT
            ),
        )
    memory = DeadLetters(js, "memory")
    for sequence, subject in enumerate(("memory.write", "memory.write", "chat.session.ended"), 1):
        await memory.send_raw(
            subject, b"{}", stream="MEMORY" if subject.startswith("memory") else "CHAT",
            sequence=sequence, deliveries=10, kind=DeadKind.exhausted, reason="test",
        )  # fmt: skip
    await publish_raw(nc, "memory.write", b"{}", str(uuid4()))
    await db.execute(
        "INSERT INTO embedder.models (model_id, source, dimensions, max_tokens, state) "
        "VALUES ('test-model-384', 'packaged', 384, 256, 'active')"
    )
    async with run_ingest():
        await publish_raw(nc, "chat.message.created", b"[]", str(uuid4()))
        await dead_letters(nc, "dlq.ingest.>", expect=1)
        await asyncio.sleep(1.5)  # the memory.write above is now 1.5 s old
        ran = await engram("status", "--json", "--exact", env=urls(env))
        assert ran.code == 0, ran.stderr
        document = ran.json()
        table = await engram("status", env=urls(env))
    assert table.code == 0, table.stderr

    ingest = consumer(document, "CHAT", "ingest")
    assert (ingest["dead_letters"], ingest["alive"]) == (1, True)
    assert ingest["pending"] == 0 and ingest["oldest_pending_age_s"] is None
    on_memory = consumer(document, "MEMORY", "memory")
    assert (on_memory["dead_letters"], on_memory["alive"]) == (2, False)
    assert on_memory["pending"] == 1 and on_memory["oldest_pending_age_s"] >= 1.5
    assert consumer(document, "CHAT", "memory")["dead_letters"] == 1
    assert consumer(document, "ENGRAM", "memory")["dead_letters"] == 0
    assert isinstance(document, dict)
    assert document["dead_letters"] == {"ingest": 1, "memory": 3}
    assert document["services"]["embedder"] == {"model": "test-model-384"}
    assert "test-model-384" in table.stdout and "ingest.messages" in table.stdout


async def test_status_sees_a_stopped_worker_stop_pulling(
    env: Env, nc: NatsClient, run_ingest: RunIngest
) -> None:
    async with run_ingest():
        await asyncio.sleep(1.0)
        running = (await engram("status", "--json", env=urls(env))).json()
    assert consumer(running, "CHAT", "ingest")["alive"] is True
    # Its last pull request expires within fetch_wait_s (0.5 s here).
    await asyncio.sleep(2.0)
    stopped = (await engram("status", "--json", env=urls(env))).json()
    after = consumer(stopped, "CHAT", "ingest")
    # Nothing was delivered to it: no recent delivery keeps it counted as alive either.
    assert (after["pulls_waiting"], after["last_active_age_s"], after["alive"]) == (0, None, False)
