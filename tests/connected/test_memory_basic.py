"""The memory service with the real embedder and model, real NATS and PostgreSQL: typed
memories, their vectors, search with score parts and access counts, forgetting, and the
episodic memory of an ended session."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from uuid import uuid4

import asyncpg
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import EMBED_SUBJECT
from contracts.memory_search import MEMORY_SEARCH_REPLY, MEMORY_SEARCH_SUBJECT
from services.runtime.worker import Worker
from tests import factories as f
from tests.connected.embedder_fixtures import Running
from tests.connected.memory_fixtures import (
    AGENT,
    T0,
    TENANT,
    forget,
    msearch,
    with_vectors,
    write,
)
from tests.helpers import dead_letters, eventually, publish, publish_raw

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

HOTEL = "The user booked Hotel Alfama in Lisbon for three nights."
CAR = "The user rented an electric car in Porto for the weekend."
ALFAMA = "Alfama is the oldest district of Lisbon, below the castle."


async def test_memories_of_each_type_are_stored_and_searchable(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    hotel = write(HOTEL, "episodic", importance=0.9, user_id="u-1")
    events = [
        hotel,
        write(ALFAMA, "semantic"),
        write(
            "Book a hotel",
            "procedural",
            content={"skill": "Book a hotel", "steps": ["search", "compare", "pay"]},
        ),
        write(CAR, "working", content={"items": [CAR], "capacity": 2}),
    ]
    await publish(nc, *events)
    await with_vectors(db, 4)
    rows = {r["memory_type"]: r for r in await db.fetch("SELECT * FROM memory.memories")}
    assert set(rows) == {"episodic", "semantic", "procedural", "working"}
    assert json.loads(rows["procedural"]["content"])["steps"] == ["search", "compare", "pay"]
    assert rows["semantic"]["decay_rate"] == pytest.approx(0.005)  # the type's default

    found = await msearch(nc, "where is the user staying in Lisbon?", top_k=2)
    top = found.hits[0]
    assert top.memory_id == hotel.payload.memory_id and top.text == HOTEL
    assert top.parts.similarity > 0.4 and top.parts.importance == pytest.approx(0.9)
    w = found.weights
    assert top.score == pytest.approx(
        w.similarity * top.parts.similarity
        + w.importance * top.parts.importance
        + w.recency * top.parts.recency,
        abs=1e-6,
    )
    assert [h.score for h in found.hits] == sorted((h.score for h in found.hits), reverse=True)
    # filters: types, user
    only = await msearch(nc, "Lisbon", filters={"types": ["semantic"]})
    assert [h.text for h in only.hits] == [ALFAMA]
    assert [h.text for h in (await msearch(nc, "Lisbon", filters={"user_id": "u-1"})).hits] == [
        HOTEL
    ]
    # what a search returns is counted as accessed, after the reply
    await eventually(
        lambda: db.fetchval(
            "SELECT access_count FROM memory.memories WHERE memory_id = $1", hotel.payload.memory_id
        ),
        lambda n: n >= 2,
    )


async def test_type_rules_hold_on_the_bus_and_in_the_database(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    bad = json.loads(write(ALFAMA, "semantic").model_dump_json())
    bad["payload"]["content"] = {"items": ["x", "y"], "capacity": 1}  # working content
    await publish_raw(nc, "memory.write", json.dumps(bad).encode(), msg_id=str(uuid4()))
    ((subject, headers, _),) = await dead_letters(nc, "dlq.memory.>")
    assert subject == "dlq.memory.memory.write"
    assert "payload.semantic.content.concept" in headers["Engram-Dlq-Reason"]
    with pytest.raises(asyncpg.CheckViolationError, match="content_fits_type"):
        await db.execute(
            """INSERT INTO memory.memories (tenant_id, memory_id, agent_id, memory_type, text,
                   content, importance, decay_rate, decayed_at, written_at)
               VALUES ('acme', $1, 'a', 'working', 'x', '{"items": ["a", "b"], "capacity": 1}',
                       0.5, 0.1, now(), now())""",
            uuid4(),
        )


async def test_forget_erases_text_and_vector_and_keeps_a_tombstone(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    keep, gone = write(CAR, "episodic"), write(HOTEL, "episodic", user_id="u-9")
    await publish(nc, keep, gone)
    await with_vectors(db, 2)
    await publish(nc, forget(user_id="u-9", requested_by="dpo@acme", reason="erasure request"))
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM memory.memories WHERE memory_id = $1 AND status = 'forgotten'",
            gone.payload.memory_id,
        )
    )
    assert row["text"] is None and row["content"] is None and row["embedding"] is None
    assert row["forgotten_by"] == "dpo@acme" and row["forget_reason"] == "erasure request"
    assert [h.text for h in (await msearch(nc, "hotel in Lisbon")).hits] == [CAR]
    # a redelivered or late write of the forgotten memory does not bring it back
    await publish(
        nc, write(HOTEL, "episodic", memory_id=gone.payload.memory_id, at=T0 + timedelta(days=1))
    )
    # and a forget by id that arrives before its write leaves a tombstone the write respects
    early = uuid4()
    await publish(nc, forget(memory_ids=[early]), write(ALFAMA, memory_id=early))
    await eventually(lambda: db.fetchval("SELECT count(*) FROM memory.inbox"), lambda n: n >= 6)
    assert await db.fetchval("SELECT count(*) FROM memory.memories WHERE text IS NOT NULL") == 1
    # the embedder drops its copy of the text as well
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM embedder.chunks WHERE source_type = 'memory' AND source_id = $1",
            gone.payload.memory_id,
        ),
        lambda n: n == 0,
    )


async def test_an_ended_session_becomes_an_episodic_memory(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    sid, cid = uuid4(), uuid4()
    turns = [
        ("user", "Find me a quiet hotel in Lisbon near the river for three nights."),
        ("assistant", "Hotel Alfama is quiet and by the river. Shall I book it?"),
        ("user", "Yes, book Hotel Alfama please."),
        ("assistant", "Done: Hotel Alfama is booked from Friday for three nights."),
    ]
    await publish(
        nc,
        f.session_start(sid, cid, agent_id=AGENT, user_id="u-1"),
        *[
            f.message(cid, content=text, role=role, session_id=sid, at=T0 + timedelta(minutes=i))
            for i, (role, text) in enumerate(turns)
        ],
        f.session_end(sid, cid),
    )
    row = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM memory.memories WHERE origin = 'session' AND embedding IS NOT NULL"
        ),
        timeout=30,
    )
    assert row["memory_type"] == "episodic" and row["agent_id"] == AGENT
    assert row["user_id"] == "u-1" and row["conversation_id"] == cid
    assert "Hotel Alfama" in row["text"]
    assert json.loads(row["content"])["temporal"]["occurred_at"].startswith("2026-11-01T09:00")
    # Kept for MEMORY_SESSION_LATE_S, for a message applied after the end (test_memory_late_notes)
    assert await db.fetchval("SELECT count(*) FROM memory.session_notes") == len(turns)
    found = await msearch(nc, "which hotel did the user book?", top_k=1)
    assert found.hits[0].memory_id == row["memory_id"]


async def test_bad_search_requests_get_a_clear_error(memory: Worker, nc: NatsClient) -> None:
    reply = await nc.request(
        MEMORY_SEARCH_SUBJECT,
        json.dumps({"tenant_id": TENANT, "text": "x", "top_k": 1000}).encode(),
        timeout=10,
    )
    error = MEMORY_SEARCH_REPLY.validate_json(reply.data)
    assert error.status == "error" and error.code == "invalid"
    assert "agent_id" in error.message and "top_k" in error.message


async def test_a_tenant_never_sees_another_tenants_memories(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc, write(HOTEL, "episodic", tenant="tenant-a"), write(CAR, "episodic", tenant="tenant-b")
    )
    await with_vectors(db, 2)
    for _ in range(3):  # search connections are reused across tenants
        for tenant, mine in (("tenant-a", HOTEL), ("tenant-b", CAR)):
            found = await msearch(nc, "hotel or car?", tenant_id=tenant)
            assert [h.text for h in found.hits] == [mine]


async def test_one_search_session_follows_each_searchs_tenant(
    embedder: Running,
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    """A search session keeps its tenant for the next search (no set_config when it is the
    same): with one search connection, every search reuses the one session, the same tenant
    twice in a row and then the other, and each sees only its own memories."""
    async with run_memory(search_pool_max=1):
        await publish(
            nc,
            write(HOTEL, "episodic", tenant="tenant-a"),
            write(CAR, "episodic", tenant="tenant-b"),
        )
        await with_vectors(db, 2)
        order = ["tenant-a", "tenant-a", "tenant-b", "tenant-b", "tenant-a", "tenant-b"]
        mine = {"tenant-a": HOTEL, "tenant-b": CAR}
        for tenant in order:
            found = await msearch(nc, "hotel or car?", tenant_id=tenant)
            assert [h.text for h in found.hits] == [mine[tenant]], tenant
    # the similarity in each hit is the cosine of the query's and the memory's vectors
    asked = await nc.request(
        EMBED_SUBJECT, json.dumps({"texts": ["hotel or car?"]}).encode(), timeout=10
    )
    query = np.asarray(json.loads(asked.data)["vectors"][0])
    stored = await db.fetchval("SELECT embedding::text FROM memory.memories WHERE text = $1", CAR)
    vector = np.asarray(json.loads(stored))
    cosine = float(query @ vector / (np.linalg.norm(query) * np.linalg.norm(vector)))
    assert found.hits[0].parts.similarity == pytest.approx(cosine, abs=1e-4)
