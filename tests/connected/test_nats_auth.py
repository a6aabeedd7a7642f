"""NATS least privilege, tried as an attacker would: with no credentials, as the upstream
producer, and as one worker reaching for another's subjects and consumers. Every denied
attempt is also checked by its effect (nothing stored, nothing deleted), not only by the
server's "Permissions Violation"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from services.ingest.app import create_app
from services.runtime.bus import CHAT, ConsumerSpec, ensure_consumer
from services.runtime.bus_setup import connect
from tests.conftest import Env
from tests.connected.conftest import ingest_settings

pytestmark = pytest.mark.connected

DENIED_S = 1.0  # a denied JetStream API request gets no answer: its timeout


class Client:
    """A client of one NATS user that records the server's permission errors."""

    def __init__(self, nc: NatsClient, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=DENIED_S)

    async def denied(self, what: str) -> None:
        """Wait until the server reported a permissions violation naming ``what``."""
        await self.nc.flush()
        for _ in range(50):
            said = [e.lower() for e in self.errors]  # nats-py lower-cases the server's -ERR
            if any("permissions violation" in e and what.lower() in e for e in said):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no permissions violation for {what!r}: {self.errors}")


@asynccontextmanager
async def as_user(env: Env, user: str) -> AsyncIterator[Client]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect(env.nats_login(user), error_cb=on_error)
    try:
        yield Client(nc, errors)
    finally:
        await nc.close()


async def stored(nc: NatsClient, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return info.state.messages


async def test_a_client_without_credentials_is_refused(env: Env) -> None:
    plain = env.servers.stack.nats.url  # host and port, no user
    with pytest.raises(NatsError):
        await nats.connect(plain, allow_reconnect=False, max_reconnect_attempts=0)
    wrong = plain.replace("nats://", "nats://engram_ingest:not-the-password@")
    with pytest.raises(NatsError):
        await nats.connect(wrong, allow_reconnect=False, max_reconnect_attempts=0)


async def test_the_producer_publishes_its_events_and_nothing_of_engrams(
    env: Env, nc: NatsClient
) -> None:
    async with as_user(env, "producer") as producer:
        ack = await producer.js.publish("chat.message.created", b"{}")
        assert ack.stream == "CHAT"  # its own subjects work, acks reach its inbox
        await producer.nc.publish("dlq.ingest.chat.message.created", b"forged")
        await producer.denied("dlq.ingest.chat.message.created")
        await producer.nc.publish("engram.embedding.ready", b"forged")
        await producer.denied("engram.embedding.ready")
    assert await stored(nc, "DLQ") == 0
    assert await stored(nc, "ENGRAM") == 0


async def test_the_producer_cannot_forge_a_max_deliveries_advisory(
    env: Env, nc: NatsClient
) -> None:
    subject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.CHAT.ingest"
    seen: list[bytes] = []

    async def on_msg(msg: object) -> None:
        seen.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(subject, cb=on_msg)
    forged = json.dumps({"stream": "CHAT", "consumer": "ingest", "stream_seq": 1}).encode()
    async with as_user(env, "producer") as producer:
        await producer.nc.publish(subject, forged)
        await producer.denied(subject)
    async with as_user(env, "ingest") as ingest:  # nor a worker: only the server may
        await ingest.nc.publish(subject, forged)
        await ingest.denied(subject)
    await nc.flush()
    await asyncio.sleep(0.1)
    assert seen == []


async def test_the_producer_cannot_delete_consumers_streams_or_purge_the_dlq(
    env: Env, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await ensure_consumer(js, ConsumerSpec(CHAT, "ingest", ("chat.>",), 4, 30, 100))
    await js.publish("dlq.ingest.chat.message.created", b"a dead letter")
    async with as_user(env, "producer") as producer:
        with pytest.raises(TimeoutError):
            await producer.js.delete_consumer("CHAT", "ingest")
        await producer.denied("$JS.API.CONSUMER.DELETE.CHAT.ingest")
        with pytest.raises(TimeoutError):
            await producer.js.delete_stream("DLQ")
        with pytest.raises(TimeoutError):
            await producer.js.purge_stream("DLQ")
        await producer.denied("$JS.API.STREAM.PURGE.DLQ")
    assert (await js.consumer_info("CHAT", "ingest")).name == "ingest"
    assert await stored(nc, "DLQ") == 1


async def test_no_user_reads_another_users_replies(env: Env, nc: NatsClient) -> None:
    got: list[bytes] = []

    async def on_msg(msg: object) -> None:
        got.append(msg.data)  # type: ignore[attr-defined]

    async with as_user(env, "producer") as producer, as_user(env, "ingest") as ingest:
        await producer.nc.subscribe("_INBOX_memory.>", cb=on_msg)
        await producer.denied("_INBOX_memory.>")
        await producer.nc.subscribe("_INBOX.>", cb=on_msg)
        await producer.denied("_INBOX.>")
        await ingest.nc.subscribe("_INBOX_producer.>", cb=on_msg)
        await ingest.denied("_INBOX_producer.>")
        await ingest.nc.subscribe("query.memory.search", cb=on_msg)  # nor its requests
        await ingest.denied("query.memory.search")
        await nc.publish("_INBOX_memory.x.y", b"a reply for memory")
        await nc.publish("_INBOX_producer.x.y", b"a reply for the producer")
        await nc.flush()
        await asyncio.sleep(0.1)
    assert got == []


async def test_a_worker_cannot_pull_from_another_services_consumer(
    env: Env, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await ensure_consumer(js, ConsumerSpec(CHAT, "embedder", ("chat.>",), 4, 30, 100))
    await js.publish("chat.message.created", b"{}")
    async with as_user(env, "ingest") as ingest:
        psub = await ingest.js.pull_subscribe_bind("embedder", stream="CHAT")
        with pytest.raises(TimeoutError):
            await psub.fetch(1, timeout=DENIED_S)
        await ingest.denied("$JS.API.CONSUMER.MSG.NEXT.CHAT.embedder")
        with pytest.raises(TimeoutError):  # nor take it over with settings of its own
            await ensure_consumer(
                ingest.js, ConsumerSpec(CHAT, "embedder", ("chat.file.*",), 4, 30, 100)
            )
    info = await js.consumer_info("CHAT", "embedder")
    assert info.delivered.stream_seq == 0
    assert info.config.filter_subject == "chat.>" or info.config.filter_subjects == ["chat.>"]


async def test_a_worker_publishes_only_its_own_events_and_dead_letters(
    env: Env, nc: NatsClient
) -> None:
    async with as_user(env, "ingest") as ingest, as_user(env, "memory") as memory:
        await ingest.nc.publish("engram.embedding.ready", b"forged")  # the embedder's
        await ingest.denied("engram.embedding.ready")
        await memory.nc.publish("dlq.ingest.chat.message.created", b"forged")  # ingest's
        await memory.denied("dlq.ingest.chat.message.created")
        await ingest.nc.publish("chat.message.created", b"forged")  # the producer's
        await ingest.denied("chat.message.created")
        with pytest.raises(TimeoutError):  # streams are the admin's
            await ingest.js.add_stream(name="EVIL", subjects=["evil.>"])
        ack = await memory.js.publish("engram.memory.forgotten", b"{}")  # its own works
        assert ack.stream == "ENGRAM"
    assert await stored(nc, "DLQ") == 0
    assert await stored(nc, "CHAT") == 0


async def test_a_worker_whose_stream_is_missing_says_so_and_does_not_create_it(
    env: Env, nc: NatsClient
) -> None:
    from faststream import TestApp

    await nc.jetstream().delete_stream("CHAT")
    app, worker = create_app(ingest_settings(env))
    async with TestApp(app):
        pass
    assert worker.supervisor.failure is not None
    assert "stream CHAT does not exist" in worker.supervisor.failure
    assert "engram migrate" in worker.supervisor.failure
    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream().stream_info("CHAT")
