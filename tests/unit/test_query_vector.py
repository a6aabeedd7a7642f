"""The shared query vector: its contract, how long a search waits for it (context), and
which model the memory service takes for the active one."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from contracts.embedding import KnowledgeSearchRequest, QueryEmbedding
from contracts.memory_search import MemorySearchRequest
from services.context.asking import VECTOR_WAIT_SHARE, with_vector
from services.memory.query_vector import ActiveModel

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_a_query_vector_is_a_model_and_finite_numbers() -> None:
    given = {"model_id": MODEL, "vector": [0.6, 0.8]}
    req = MemorySearchRequest.model_validate(
        {"tenant_id": "acme", "agent_id": "a", "text": "q", "query_vector": given}
    )
    assert req.query_vector == QueryEmbedding(model_id=MODEL, vector=[0.6, 0.8])
    assert KnowledgeSearchRequest(tenant_id="acme", text="q").query_vector is None
    for bad in ({"model_id": MODEL, "vector": []}, {"model_id": "", "vector": [1.0]}):
        with pytest.raises(ValidationError):
            KnowledgeSearchRequest.model_validate(
                {"tenant_id": "acme", "text": "q", "query_vector": bad}
            )
    with pytest.raises(ValidationError):  # NaN is not a coordinate
        KnowledgeSearchRequest.model_validate_json(
            json.dumps({"tenant_id": "acme", "text": "q", "query_vector": given}).replace(
                "0.6", "NaN"
            )
        )


async def test_a_search_takes_the_vector_and_what_is_left_of_its_time() -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[QueryEmbedding | None] = loop.create_future()
    ready.set_result(QueryEmbedding(model_id=MODEL, vector=[1.0]))
    found, left = await with_vector(ready, 0.5)
    assert found is not None and found.vector == [1.0] and 0.45 < left <= 0.5
    assert await with_vector(None, 0.5) == (None, 0.5)


async def test_a_slow_vector_is_waited_for_only_part_of_the_time() -> None:
    never: asyncio.Future[QueryEmbedding | None] = asyncio.get_running_loop().create_future()
    started = asyncio.get_running_loop().time()
    found, left = await with_vector(never, 0.2)
    waited = asyncio.get_running_loop().time() - started
    assert found is None  # the search asks without it: the service embeds the text
    assert waited == pytest.approx(0.2 * VECTOR_WAIT_SHARE, abs=0.05)
    assert left == pytest.approx(0.2 - waited, abs=0.01)
    never.cancel()


def test_the_active_model_is_the_last_one_seen_while_fresh() -> None:
    known = ActiveModel(ttl_s=60)
    assert known.current() is None  # nothing seen yet: embed, and learn it
    known.learn(MODEL, 384)
    assert known.current() == MODEL and known.dimensions == 384
    known.learn("other", 768)
    assert known.current() == "other"
    assert ActiveModel(ttl_s=0, model_id=MODEL, dimensions=384, seen_at=0.0).current() is None
