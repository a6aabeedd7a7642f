"""A query embedded once, searched twice: ``query_vector`` in ``query.memory.search`` and
``query.knowledge.search``, from the published contracts, with the real embedder and model,
the real memory worker, NATS and PostgreSQL."""

from __future__ import annotations

import json
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import KnowledgeHit, QueryVectorUse
from contracts.errors import ErrorCode
from contracts.memory_search import MEMORY_SEARCH_REPLY, MEMORY_SEARCH_SUBJECT
from services.runtime.worker import Worker
from tests import factories as f
from tests.connected.embedder_fixtures import Running, embed, search, search_error, settled
from tests.connected.memory_fixtures import AGENT, TENANT, msearch, with_vectors, write
from tests.helpers import publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

QUERY = "where is the user staying in Lisbon?"
TEXTS = [
    "The user booked Hotel Alfama in Lisbon for three nights.",
    "The user rented an electric car in Porto for the weekend.",
    "Alfama is the oldest district of Lisbon, below the castle.",
    "Dinner reservation at 8pm: a seafood restaurant near the harbour.",
]


def ranked(hits: list[KnowledgeHit]) -> list[tuple[str, int | None, int | None]]:
    return [(h.text, h.vector_rank, h.text_rank) for h in hits]


async def test_memory_search_with_the_query_vector_finds_what_the_text_finds(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(nc, *(write(t, user_id="u-1") for t in TEXTS))
    await with_vectors(db, len(TEXTS))
    made = await embed(nc, [QUERY])
    given = {"model_id": made.model_id, "vector": made.vectors[0]}

    by_text = await msearch(nc, QUERY, top_k=3)
    assert by_text.query_vector is QueryVectorUse.embedded
    by_vector = await msearch(nc, QUERY, top_k=3, query_vector=given)
    assert by_vector.query_vector is QueryVectorUse.supplied
    # same memories, same similarity (recency moves with the access counts: not compared)
    assert [h.memory_id for h in by_vector.hits] == [h.memory_id for h in by_text.hits]
    assert [round(h.parts.similarity, 5) for h in by_vector.hits] == [
        round(h.parts.similarity, 5) for h in by_text.hits
    ]
    assert by_vector.hits[0].text == TEXTS[0]

    # another model's vector is not compared with these: the text is embedded instead
    other = await msearch(
        nc, QUERY, top_k=3, query_vector={"model_id": "some/other-model", "vector": [0.5, 0.5]}
    )
    assert other.query_vector is QueryVectorUse.replaced
    assert [h.memory_id for h in other.hits] == [h.memory_id for h in by_text.hits]

    # the active model named, a vector of another length: the caller's bug
    body = {
        "tenant_id": TENANT,
        "agent_id": AGENT,
        "text": QUERY,
        "query_vector": {"model_id": made.model_id, "vector": made.vectors[0][:10]},
    }
    reply = await nc.request(MEMORY_SEARCH_SUBJECT, json.dumps(body).encode(), timeout=10)
    error = MEMORY_SEARCH_REPLY.validate_json(reply.data)
    assert error.status == "error" and error.code is ErrorCode.invalid
    assert "384" in error.message and error.detail == {
        "model_id": made.model_id,
        "dimensions": 384,
        "length": 10,
    }
    # a vector that is not numbers breaks the contract
    body["query_vector"] = {"model_id": made.model_id, "vector": []}
    reply = await nc.request(MEMORY_SEARCH_SUBJECT, json.dumps(body).encode(), timeout=10)
    error = MEMORY_SEARCH_REPLY.validate_json(reply.data)
    assert error.status == "error" and error.code is ErrorCode.invalid


async def test_knowledge_search_with_the_query_vector_finds_what_the_text_finds(
    embedder: Running, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(nc, *(f.message(cid, content=t) for t in TEXTS))
    await settled(db, len(TEXTS))
    made = await embed(nc, [QUERY])
    given = {"model_id": made.model_id, "vector": made.vectors[0]}

    for mode in ("hybrid", "vector"):
        by_text = await search(nc, "acme", QUERY, top_k=3, mode=mode)
        by_vector = await search(nc, "acme", QUERY, top_k=3, mode=mode, query_vector=given)
        assert by_text.query_vector is QueryVectorUse.embedded
        assert by_vector.query_vector is QueryVectorUse.supplied
        assert ranked(by_vector.hits) == ranked(by_text.hits)
        assert by_vector.hits[0].text == TEXTS[0]
    hybrid = await search(nc, "acme", QUERY, top_k=3)
    other = await search(
        nc, "acme", QUERY, top_k=3, query_vector={"model_id": "some/other", "vector": [1.0]}
    )
    assert other.query_vector is QueryVectorUse.replaced
    assert ranked(other.hits) == ranked(hybrid.hits)
    # full text searches no vector
    words = await search(nc, "acme", "Lisbon hotel", mode="text", query_vector=given)
    assert words.query_vector is None

    wrong = {"model_id": made.model_id, "vector": made.vectors[0][:3]}
    body = {"tenant_id": "acme", "text": QUERY, "query_vector": wrong}
    error = await search_error(nc, json.dumps(body).encode())
    assert error.code is ErrorCode.invalid and "384" in error.message
