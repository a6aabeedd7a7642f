"""query.embed and the error replies of both queries, answered by the embedder's routes on
the real nats-server (tests/queries.py) with the real model and no database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import (
    EMBED_REPLY,
    EMBED_SUBJECT,
    KNOWLEDGE_SEARCH_REPLY,
    KNOWLEDGE_SEARCH_SUBJECT,
    EmbedReply,
)
from contracts.errors import QueryError
from services.embedder.active_model import ActiveModel
from services.embedder.model import LoadedModel, load, resolve
from services.embedder.queries import query_routes
from services.embedder.settings import DEFAULT_MODEL, EmbedderSettings
from tests.queries import answering
from tests.queries import request as request_with_headers

pytestmark = pytest.mark.connected


@pytest.fixture(scope="session")
def model() -> LoadedModel:
    return load(resolve(DEFAULT_MODEL))


@pytest.fixture
async def served(nc: NatsClient, model: LoadedModel) -> AsyncIterator[NatsClient]:
    active = ActiveModel(EmbedderSettings())
    active.use_model(model)  # a model, but no database: searches are unavailable
    async with answering(nc, query_routes(active)):
        yield nc
    active.encoder.close()


async def request(nc: NatsClient, subject: str, body: bytes) -> bytes:
    data, _ = await request_with_headers(nc, subject, body)
    return data


async def test_embed_returns_unit_vectors_of_the_model(
    served: NatsClient, model: LoadedModel
) -> None:
    texts = ["a quiet hotel room", "ein ruhiges Hotelzimmer", "x" * 10]
    body = await request(served, EMBED_SUBJECT, json.dumps({"texts": texts}).encode())
    reply = EMBED_REPLY.validate_json(body)
    assert isinstance(reply, EmbedReply)
    assert reply.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    vectors = np.array(reply.vectors)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors, model.encode(texts), atol=1e-5)
    assert reply.truncated == [False, False, False]


@pytest.mark.parametrize(
    ("subject", "body", "needle"),
    [
        (EMBED_SUBJECT, {"texts": []}, "texts"),
        (EMBED_SUBJECT, {"texts": ["x"] * 257}, "texts"),
        (KNOWLEDGE_SEARCH_SUBJECT, {"text": "hotel"}, "tenant_id"),
        (KNOWLEDGE_SEARCH_SUBJECT, {"tenant_id": "acme", "text": "x", "top_k": 0}, "top_k"),
        (KNOWLEDGE_SEARCH_SUBJECT, {"tenant_id": "acme", "text": "x", "mode": "psychic"}, "mode"),
        (
            KNOWLEDGE_SEARCH_SUBJECT,
            {"tenant_id": "acme", "text": "x", "filters": {"source_types": ["memory"]}},
            "source_types",
        ),
    ],
)
async def test_bad_requests_get_an_invalid_reply(
    served: NatsClient, subject: str, body: dict[str, object], needle: str
) -> None:
    raw = await request(served, subject, json.dumps(body).encode())
    reply = (EMBED_REPLY if subject == EMBED_SUBJECT else KNOWLEDGE_SEARCH_REPLY).validate_json(raw)
    assert isinstance(reply, QueryError)
    assert reply.code == "invalid" and needle in reply.message


async def test_not_json_is_an_invalid(served: NatsClient) -> None:
    reply = EMBED_REPLY.validate_json(await request(served, EMBED_SUBJECT, b"\xff not json"))
    assert isinstance(reply, QueryError) and reply.code == "invalid"


async def test_search_before_the_database_is_ready_is_unavailable(served: NatsClient) -> None:
    body = json.dumps({"tenant_id": "acme", "text": "hotel"}).encode()
    reply = KNOWLEDGE_SEARCH_REPLY.validate_json(
        await request(served, KNOWLEDGE_SEARCH_SUBJECT, body)
    )
    assert isinstance(reply, QueryError) and reply.code == "unavailable"
