"""Message, file and memory ids are chosen by producers, so they are per tenant: two tenants
that publish under the SAME ids (different texts, edited and deleted on one side only)
each find exactly their own texts through the real query paths — query.knowledge.search
(the embedder) and query.memory.search (the memory service, from the embedder's
engram.embedding.ready) — with the real workers, model, NATS and PostgreSQL, and nothing
is dead-lettered."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import EMBEDDING_READY
from contracts.envelope import Envelope
from services.embedder.logic import content_hash, embedding_event_id
from services.runtime.worker import Worker
from tests import factories as f
from tests.connected.embedder_fixtures import search, settled
from tests.connected.memory_fixtures import msearch, with_vectors, write
from tests.helpers import dlq_depth, eventually, publish, stored

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

ACME, GLOBEX = "acme", "globex"
# What each tenant publishes under the shared ids (m1, m2: messages; f1: a file; mem1,
# mem2: memories, mem2 with the same text in both).
TEXTS = {
    ACME: {
        "m1": "We booked Hotel Alfama, a quiet place right by the river in Lisbon.",
        "m2": "Dinner reservation at 8pm: a seafood restaurant near the harbour.",
        "f1": "The secret rendezvous point is the old lighthouse at Cabo da Roca.",
        "mem1": "The user prefers window seats on long flights.",
    },
    GLOBEX: {
        "m1": "I rented a small electric car in Porto for the weekend trip to the Douro valley.",
        "m2": "The quarterly budget review with the finance committee is on Thursday.",
        "f1": "Warehouse inventory: forty pallets of ceramic tiles arrive from the supplier.",
        "mem1": "The user is allergic to peanuts and shellfish.",
    },
}
SHARED_MEMORY = "The user always travels with a folding bicycle."
ACME_EDIT = "Change of plans: we switched to a campsite in the Alentejo under the cork oaks."
# What each tenant's knowledge search may return: acme edited m1, globex deleted m2.
KNOWN = {
    ACME: {ACME_EDIT, TEXTS[ACME]["m2"], TEXTS[ACME]["f1"]},
    GLOBEX: {TEXTS[GLOBEX]["m1"], TEXTS[GLOBEX]["f1"]},
}
# query -> the text it must find first, per tenant
QUERIES = {
    ACME: {
        "campsite under the cork oaks": ACME_EDIT,
        "seafood restaurant by the harbour": TEXTS[ACME]["m2"],
        "where is the secret rendezvous?": TEXTS[ACME]["f1"],
    },
    GLOBEX: {
        "electric car rental in Porto": TEXTS[GLOBEX]["m1"],
        "ceramic tiles from the supplier": TEXTS[GLOBEX]["f1"],
    },
}
MEMORIES = {
    ACME: ("seat preference on flights", TEXTS[ACME]["mem1"]),
    GLOBEX: ("food allergies", TEXTS[GLOBEX]["mem1"]),
}


def events(t: str, ids: dict[str, UUID]) -> list[Envelope]:
    cid, texts = ids["conversation"], TEXTS[t]
    return [
        f.message(cid, ids["m1"], tenant=t, content=texts["m1"]),
        f.message(cid, ids["m2"], tenant=t, content=texts["m2"]),
        f.file(ids["f1"], tenant=t, conversation_id=cid, extracted_text=texts["f1"]),
        write(texts["mem1"], memory_id=ids["mem1"], tenant=t),
        write(SHARED_MEMORY, memory_id=ids["mem2"], tenant=t),
    ]


async def test_two_tenants_under_the_same_ids_each_find_only_their_own_texts(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    ids = {k: uuid4() for k in ("conversation", "m1", "m2", "f1", "mem1", "mem2")}
    mine, theirs = events(ACME, ids), events(GLOBEX, ids)
    # interleaved, so a batch holds both tenants' copies of an id
    await publish(nc, *(e for pair in zip(mine, theirs, strict=True) for e in pair))
    await publish(nc, f.edit(ids["m1"], ACME_EDIT, tenant=ACME), f.delete(ids["m2"], tenant=GLOBEX))
    # 5 sources per tenant (globex's m2 a tombstone); 12 events
    await settled(db, 10, events=12)
    await with_vectors(db, 4)

    rows = await db.fetch(
        """SELECT s.tenant_id, s.source_type, s.source_id, s.deleted_at IS NOT NULL AS deleted,
                  array_agg(c.text ORDER BY c.chunk_index) FILTER (WHERE c.text IS NOT NULL)
                      AS texts
             FROM embedder.sources s
             LEFT JOIN embedder.chunks c USING (tenant_id, source_type, source_id)
            GROUP BY 1, 2, 3, 4"""
    )
    by_key = {(r["tenant_id"], r["source_id"]): (r["deleted"], r["texts"]) for r in rows}
    for t in (ACME, GLOBEX):
        assert by_key[(t, ids["f1"])] == (False, [TEXTS[t]["f1"]]), t
        assert by_key[(t, ids["mem1"])] == (False, [TEXTS[t]["mem1"]]), t
        assert by_key[(t, ids["mem2"])] == (False, [SHARED_MEMORY]), t
    assert by_key[(ACME, ids["m1"])] == (False, [ACME_EDIT])
    assert by_key[(GLOBEX, ids["m1"])] == (False, [TEXTS[GLOBEX]["m1"]])
    assert by_key[(ACME, ids["m2"])] == (False, [TEXTS[ACME]["m2"]])
    assert by_key[(GLOBEX, ids["m2"])] == (True, None)

    # query.knowledge.search: each tenant its own texts, in every mode, whatever it asks
    every_query = [q for qs in QUERIES.values() for q in qs]
    for t in (ACME, GLOBEX):
        for query in every_query:
            for mode in ("hybrid", "vector", "text"):
                hits = (await search(nc, t, query, mode=mode)).hits
                assert {h.text for h in hits} <= KNOWN[t], (t, query, mode)
        for query, expected in QUERIES[t].items():
            top = (await search(nc, t, query)).hits[0]
            assert top.text == expected, (t, query)
            assert top.source.source_id in (ids["m1"], ids["m2"], ids["f1"])

    # query.memory.search: each tenant its own memories, the shared text once
    for t, (query, expected) in MEMORIES.items():
        hits = (await msearch(nc, query, tenant_id=t)).hits
        assert hits[0].text == expected and hits[0].memory_id == ids["mem1"], t
        assert {h.text for h in hits} == {expected, SHARED_MEMORY}, t
        bicycle = (await msearch(nc, "folding bicycle", tenant_id=t)).hits
        assert [(h.memory_id, h.text) for h in bicycle][:1] == [(ids["mem2"], SHARED_MEMORY)], t

    # engram.embedding.ready: one event per tenant for the memory of the same id and text,
    # under event ids of their own
    ready = await eventually(
        lambda: stored(nc, "engram.embedding.ready"), lambda msgs: len(msgs) >= 4
    )
    announced = [EMBEDDING_READY.validate_json(m.data) for m in ready]
    shared = {e.tenant_id: e for e in announced if e.payload.source_id == ids["mem2"]}
    assert set(shared) == {ACME, GLOBEX} and len(announced) == 4
    model_id = shared[ACME].payload.model_id
    for t, e in shared.items():
        assert e.event_id == embedding_event_id(
            t, ids["mem2"], model_id, content_hash(SHARED_MEMORY)
        )
    assert shared[ACME].event_id != shared[GLOBEX].event_id
    assert await dlq_depth(nc) == 0
