"""Files (their extracted text, chunked), memories (engram.embedding.ready), query.embed,
and work left behind by a worker that died."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from uuid import uuid4

import asyncpg
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.embedding import EMBEDDING_READY, EmbeddingReady
from services.embedder.logic import content_hash, embedding_event_id
from services.embedder.model import LoadedModel
from services.embedder.pump import MAX_ATTEMPTS, Pump
from services.runtime.outbox import OutboxDrain
from tests import factories as f
from tests.connected.embedder_fixtures import Running, embed, search, settled
from tests.helpers import eventually, publish
from tests.unit.test_embedder_contracts import memory_write

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures"]

WORDS = (  # noqa: SIM905
    "budget committee quarterly report revenue forecast staffing schedule vendor contract "
    "invoice payment delivery warehouse inventory shipment supplier audit compliance policy "
    "training onboarding meeting agenda minutes action items deadline milestone risk review"
).split()
SECRET = "The secret rendezvous point is the old lighthouse at Cabo da Roca."


def prose(rng: random.Random, sentences: int) -> str:
    out = []
    for i in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
        out.append(f"{words[0].capitalize()} {' '.join(words[1:])}.")
        if i % 6 == 5:
            out.append("\n")
    return " ".join(out)


async def test_a_files_text_is_chunked_and_found_by_a_phrase_from_its_middle(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    rng = random.Random(7)
    text = f"{prose(rng, 60)} {SECRET} {prose(rng, 60)}"
    upload = f.file(extracted_text=text, conversation_id=uuid4())
    await publish(nc, upload)
    await settled(db, 1)
    chunks = await db.fetch("SELECT chunk_index, text FROM embedder.chunks ORDER BY chunk_index")
    assert len(chunks) > 4
    assert all(len(embedder.active.model.token_offsets([c["text"]])[0]) <= 254 for c in chunks)
    hits = (await search(nc, "acme", "where is the secret rendezvous point?", top_k=3)).hits
    assert SECRET in hits[0].text
    assert hits[0].source.source_type == "file"
    assert hits[0].source.source_id == upload.payload.file_id
    assert 0 < hits[0].source.chunk_index < len(chunks) - 1


async def test_a_100_chunk_file_works(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    rng = random.Random(11)
    text = f"{prose(rng, 1500)} {SECRET}"
    await publish(nc, f.file(extracted_text=text))
    await settled(db, 1, within=90)
    count = await db.fetchval("SELECT count(*) FROM embedder.chunks")
    assert count >= 100
    assert await db.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == count
    hits = (await search(nc, "acme", "secret rendezvous lighthouse", top_k=1)).hits
    assert SECRET in hits[0].text and hits[0].source.chunk_index == count - 1


async def ready_events(nc: NatsClient, expect: int) -> list[EmbeddingReady]:
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "engram.embedding.ready", stream="ENGRAM",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )  # fmt: skip
    found: list[EmbeddingReady] = []

    async def fetch() -> int:
        try:
            msgs = await sub.fetch(10, timeout=0.3)
        except TimeoutError:
            return len(found)
        for m in msgs:
            found.append(EMBEDDING_READY.validate_json(m.data))
            await m.ack()
        return len(found)

    await eventually(fetch, lambda n: n >= expect, timeout=20)
    await sub.unsubscribe()
    return found


async def test_a_memory_gets_an_embedding_ready_event_once(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection, embedding_model: LoadedModel
) -> None:
    write = memory_write(text="The user prefers quiet hotel rooms away from the street.")
    same_text = memory_write(text=write.payload.text)  # another memory: vector reused
    await publish(nc, write)
    await settled(db, 1)
    await publish(nc, same_text)
    await settled(db, 2)
    # the same write again under a new event id: its event is not repeated
    await publish(nc, write.model_copy(update={"event_id": uuid.uuid4()}))
    await eventually(lambda: db.fetchval("SELECT count(*) FROM embedder.inbox"), (3).__eq__)
    await settled(db, 2)
    events = await ready_events(nc, 2)
    assert len(events) == 2
    first = next(e for e in events if e.payload.source_id == write.payload.memory_id)
    p = first.payload
    assert first.event_id == embedding_event_id("acme", p.source_id, p.model_id, p.content_hash)
    assert first.causation_id == write.event_id and first.tenant_id == "acme"
    assert p.content_hash == content_hash(write.payload.text) and p.dimensions == 384
    expected = embedding_model.encode([write.payload.text])[0]
    assert float(np.dot(np.array(p.vector), expected)) > 0.999
    assert embedder.pump.stats.encoded == 1
    assert (await search(nc, "acme", "quiet hotel rooms")).hits == []  # memories: not here


async def on_the_stream(nc: NatsClient) -> dict[str, list[bytes]]:
    """Every engram.embedding.ready on ENGRAM, by Nats-Msg-Id."""
    sub = await nc.jetstream().pull_subscribe(
        "engram.embedding.ready", stream="ENGRAM",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )  # fmt: skip
    found: dict[str, list[bytes]] = {}
    more = True
    while more:
        try:
            msgs = await sub.fetch(100, timeout=0.5)
        except TimeoutError:
            msgs = []
        for m in msgs:
            found.setdefault((m.headers or {}).get("Nats-Msg-Id", ""), []).append(m.data)
            await m.ack()
        more = bool(msgs)
    await sub.unsubscribe()
    return found


async def test_a_memory_is_announced_once_even_across_a_restart(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    nc: NatsClient,
    db: asyncpg.Connection,
    embedding_model: LoadedModel,
) -> None:
    write = memory_write(text="The user asks for a vegetarian meal on every flight.")
    event_id = embedding_event_id(
        write.tenant_id,
        write.payload.memory_id,
        embedding_model.model_id,
        content_hash(write.payload.text),
    )
    msg_id = f"{write.tenant_id}:{event_id}"
    async with run_embedder():
        await publish(nc, write)
        await settled(db, 1)
        published = await eventually(lambda: on_the_stream(nc), lambda m: msg_id in m)
    assert len(published[msg_id]) == 1
    # As if the worker had died after publishing and before deleting its outbox row: the
    # row is there at the next start. And the write is delivered again (new event id).
    await db.execute(
        "INSERT INTO embedder.event_outbox (subject, msg_id, data) "
        "VALUES ('engram.embedding.ready', $1, $2)",
        msg_id,
        published[msg_id][0],
    )
    async with run_embedder() as running:
        await publish(nc, write.model_copy(update={"event_id": uuid.uuid4()}))
        await settled(db, 1, events=2)
        await running.worker.component(OutboxDrain).drain()
        assert await db.fetchval("SELECT count(*) FROM embedder.event_outbox") == 0
    assert len((await on_the_stream(nc))[msg_id]) == 1


async def test_query_embed_matches_the_model(
    embedder: Running, nc: NatsClient, embedding_model: LoadedModel
) -> None:
    texts = ["Find me a hotel near the river.", "word " * 400]
    reply = await embed(nc, texts)
    assert reply.model_id == embedding_model.model_id and reply.dimensions == 384
    assert reply.truncated == [False, True]
    expected = embedding_model.encode(texts)
    for got, want in zip(reply.vectors, expected, strict=True):
        assert float(np.dot(np.array(got), want)) > 0.9999


async def test_chunks_leased_by_a_dead_worker_are_embedded_after_the_lease(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    async with run_embedder(lease_s=1.0) as running:
        await running.pump.stop()  # this worker stores chunks but embeds nothing
        await publish(nc, f.message(uuid4(), content="a message nobody embedded yet"))
        await eventually(lambda: db.fetchval("SELECT count(*) FROM embedder.embed_queue"))
        # as if a worker had leased it and died
        await db.execute(
            "UPDATE embedder.embed_queue SET lease_token = gen_random_uuid(), "
            "lease_until = now() + interval '1 second', attempts = 1"
        )
    async with run_embedder(lease_s=1.0):
        await settled(db, 1, within=20)
    assert await db.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == 1


async def test_a_chunk_that_lost_every_lease_is_reported_and_leased_again_later(
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    """A crash loop (each worker killed while it holds the chunk) makes a chunk lose
    MAX_ATTEMPTS leases: it is not left behind silently, it is counted (health, metric) and
    leased again once it waited given_up_retry_s."""
    async with run_embedder() as running:
        await running.pump.stop()
        await publish(nc, f.message(uuid4(), content="a chunk whose workers kept dying"))
        await eventually(lambda: db.fetchval("SELECT count(*) FROM embedder.embed_queue"))
    await db.execute(
        "UPDATE embedder.embed_queue SET lease_token = gen_random_uuid(), "
        "lease_until = now() - interval '1 second', attempts = $1",
        MAX_ATTEMPTS,
    )
    async with run_embedder(given_up_retry_s=3600.0) as running:
        pump = running.pump
        await eventually(lambda: _given_up(pump), lambda n: n == 1, timeout=20)
        assert f"1 chunks given up after {MAX_ATTEMPTS} lost leases" in pump.health().detail
        measures = {m.name: m.value for m in await pump.measures()}
        assert measures["embed_given_up"] == 1
        assert await db.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == 0
    async with run_embedder(given_up_retry_s=2.0) as running:
        await settled(db, 1, within=30)
    assert await db.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == 1


async def _given_up(pump: Pump) -> int:
    return pump.stats.given_up
