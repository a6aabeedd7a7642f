"""The embedder with the real model, real NATS and real PostgreSQL + pgvector: what users
get from query.knowledge.search after publishing chat events."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import KnowledgeFilters
from services.embedder.repo_search import QueryVector, SearchScope, candidates
from services.runtime.db import Roles, create_pool
from tests import factories as f
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running, search, search_error, settled
from tests.helpers import publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures"]

HOTEL = "We booked Hotel Alfama, a quiet place right by the river in Lisbon."
CAR = "I rented a small electric car in Porto for the weekend trip to the Douro valley."
DINNER = "Dinner reservation at 8pm: a seafood restaurant near the harbour."


async def test_a_message_becomes_searchable(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    hotel, car = f.message(cid, content=HOTEL), f.message(cid, content=CAR)
    await publish(nc, hotel, car, f.message(cid, content=DINNER))
    await settled(db, 3)
    result = await search(nc, "acme", "which hotel did we pick in Lisbon?", top_k=2)
    assert result.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    top = result.hits[0]
    assert top.source.source_id == hotel.payload.message_id
    assert top.source.conversation_id == cid and top.text == HOTEL
    assert top.vector_rank == 1 and top.similarity is not None and top.similarity > 0.5
    assert len(result.hits) == 2
    # vector only, and full text only
    vec = await search(nc, "acme", "automobile hire", mode="vector", top_k=1)
    assert vec.hits[0].source.source_id == car.payload.message_id
    text = await search(nc, "acme", "seafood harbour", mode="text")
    assert [h.source.source_id for h in text.hits][:1] != [hotel.payload.message_id]
    assert all(h.vector_rank is None for h in text.hits)


async def test_an_edit_changes_what_is_found_and_a_delete_removes_it(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, other = uuid4(), uuid4(), uuid4()
    await publish(nc, f.message(cid, mid, content=HOTEL), f.message(cid, other, content=DINNER))
    await settled(db, 2)
    assert (await search(nc, "acme", "hotel by the river", top_k=1)).hits[0].text == HOTEL

    await publish(nc, f.edit(mid, CAR))
    await settled(db, 2, events=3)

    async def texts(query: str) -> list[str]:
        return [h.text for h in (await search(nc, "acme", query)).hits]

    assert HOTEL not in await texts("hotel by the river")
    assert (await texts("electric car rental in Porto"))[0] == CAR

    await publish(nc, f.delete(mid))
    await settled(db, 2, events=4)
    assert CAR not in await texts("electric car rental in Porto")
    assert await texts("electric car rental in Porto") == [DINNER]
    # a redelivered or late create of the deleted message does not bring it back
    await publish(nc, f.message(cid, mid, content=HOTEL))
    await settled(db, 2, events=5)
    assert await db.fetchval("SELECT count(*) FROM embedder.chunks WHERE source_id = $1", mid) == 0


async def test_tenant_a_never_sees_tenant_b(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc,
        f.message(uuid4(), content=HOTEL, tenant="tenant-a"),
        f.message(uuid4(), content=HOTEL + " (b)", tenant="tenant-b"),
        f.message(uuid4(), content=CAR, tenant="tenant-b"),
    )
    await settled(db, 3)
    for mode in ("hybrid", "vector", "text"):
        hits = (await search(nc, "tenant-a", "hotel car Porto Lisbon", mode=mode)).hits
        assert [h.text for h in hits] == [HOTEL], mode
    assert (await search(nc, "tenant-c", "hotel")).hits == []
    # The second wall: row-level security shows the service role nothing unless scoped.
    async with db.transaction():
        await db.execute("SET LOCAL ROLE engram_embedder")
        assert await db.fetchval("SELECT count(*) FROM embedder.chunks") == 0
        await db.execute("SELECT set_config('engram.tenant_id', 'tenant-b', true)")
        assert await db.fetchval("SELECT count(*) FROM embedder.chunks") == 2


async def test_the_same_text_twice_is_embedded_once(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    pump = embedder.pump.stats
    await publish(nc, f.message(uuid4(), content=DINNER))
    await settled(db, 1)
    assert pump.encoded == 1
    # again later (its vector is copied in the batch's transaction), and twice in one batch
    await publish(nc, f.message(uuid4(), content=DINNER))
    await settled(db, 2)
    await publish(nc, f.message(uuid4(), content=CAR), f.message(uuid4(), content=CAR))
    await settled(db, 4)
    assert pump.encoded == 2
    assert embedder.stats.reused >= 1
    assert await db.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == 4


async def test_filters_narrow_and_still_return_k(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    big, small = uuid4(), uuid4()
    events = [
        f.message(big, content=f"Note {i}: the {w} was fine.")
        for i, w in enumerate(["hotel", "train", "museum", "beach", "tram", "bakery"] * 5)
    ]
    events += [
        f.message(
            small,
            content=f"Small talk {i} about the weather.",
            role="assistant",
            sender_agent_id="bot",
        )
        for i in range(3)
    ]
    await publish(nc, *events)
    await settled(db, 33)
    hits = (
        await search(nc, "acme", "hotel", top_k=5, filters={"conversation_ids": [str(small)]})
    ).hits
    assert len(hits) == 3 and {h.source.conversation_id for h in hits} == {small}
    hits = (
        await search(
            nc, "acme", "hotel", top_k=20, mode="vector", filters={"conversation_ids": [str(big)]}
        )
    ).hits
    assert len(hits) == 20
    hits = (await search(nc, "acme", "weather", filters={"agent_ids": ["bot"]})).hits
    assert len(hits) == 3 and all(h.source.agent_id == "bot" for h in hits)
    assert (await search(nc, "acme", "hotel", filters={"source_types": ["file"]})).hits == []
    assert (await search(nc, "acme", "hotel", filters={"since": "2027-01-01T00:00:00Z"})).hits == []


async def test_a_bad_request_gets_an_error_reply(embedder: Running, nc: NatsClient) -> None:
    error = await search_error(nc, json.dumps({"text": "x"}).encode())
    assert error.code == "invalid" and "tenant_id" in error.message
    error = await search_error(nc, b"not json")
    assert error.code == "invalid"


async def test_full_text_ranks_chunks_with_every_word_first(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    every = "The quiet hotel by the river had a lovely view."
    some = "Hotel after hotel: every hotel in town was full, so we asked a hotel clerk."
    await publish(
        nc,
        *(f.message(uuid4(), content=t) for t in (some, every, "Nothing about lodging here.")),
    )
    await settled(db, 3)
    hits = (await search(nc, "acme", "a quiet hotel", mode="text")).hits
    # "hotel" four times ranks lower than both words once: all the words first, then some
    assert [h.text for h in hits] == [every, some]
    assert [h.text_rank for h in hits] == [1, 2]
    hybrid = (await search(nc, "acme", "a quiet hotel")).hits
    assert {h.text for h in hybrid if h.text_rank is not None} == {every, some}


async def test_full_text_function_sees_only_the_scoped_tenant(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc,
        f.message(uuid4(), content=HOTEL, tenant="tenant-a"),
        f.message(uuid4(), content=HOTEL, tenant="tenant-b"),
    )
    await settled(db, 2)
    mine = await db.fetchval(
        "SELECT array_agg(chunk_id) FROM embedder.chunks WHERE tenant_id = 'tenant-a'"
    )

    async def matches(scope: str | None) -> list[int]:
        async with db.transaction():
            await db.execute("SET LOCAL ROLE engram_embedder")
            if scope is not None:
                await db.execute("SELECT set_config('engram.tenant_id', $1, true)", scope)
            rows = await db.fetch(
                "SELECT chunk_id FROM embedder.search_text("
                "'hotel Lisbon', '{message,file}', NULL, NULL, NULL, NULL, 10, 100)"
            )
        return [r[0] for r in rows]

    assert await matches("tenant-a") == mine
    # it runs as the table owner, so it refuses what the policy would not narrow to one
    for scope in (None, "*"):
        with pytest.raises(asyncpg.RaiseError, match="one tenant"):
            await matches(scope)


async def test_many_hybrid_searches_at_once_on_a_pool_of_two(
    embedder: Running, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    # Each hybrid search uses two connections at once. Had a search held one while waiting
    # for its second, searches could wait for each other forever.
    await publish(nc, *(f.message(uuid4(), content=t) for t in (HOTEL, CAR, DINNER)))
    await settled(db, 3)
    model, vectors = await embedder.active.encoder.encode(["hotel by the river"], urgent=True)
    query = QueryVector(model.model_id, model.dimensions, vectors[0])
    scope = SearchScope(
        "acme",
        Roles("embedder").reader,
        KnowledgeFilters(),
        limit=40,
        ef_search=100,
        max_scan_tuples=1000,
    )
    pool = await create_pool(
        env.database_url, role="engram_embedder", min_size=2, max_size=2, vectors=True
    )
    try:
        found = await asyncio.wait_for(
            asyncio.gather(
                *(
                    candidates(
                        pool, scope, query_vector=query, query_text="hotel river", max_matches=100
                    )
                    for _ in range(16)
                )
            ),
            timeout=30,
        )
    finally:
        await pool.close()
    for chunks in found:
        assert len(chunks) == 3
        assert [c.text for c in chunks if c.text_rank == 1] == [HOTEL]
        assert min(chunks, key=lambda c: c.distance or 2.0).text == HOTEL
