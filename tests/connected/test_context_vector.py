"""A build embeds its query once and hands the vector to its three searches: the real
context worker, real NATS; the embedder and the two search services are stand-ins on the
bus that answer from the published contracts and keep what they were asked."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.context import CONTEXT_BUILD_REPLY, ContextBuildReply
from contracts.embedding import EmbedReply, KnowledgeSearchReply, QueryVectorUse
from contracts.memory_search import MemorySearchReply, ScoreWeights
from services.runtime.worker import Worker
from tests.connected.context_fixtures import (  # noqa: F401
    context_fixture,
    run_context_fixture,
)

pytestmark = pytest.mark.connected

MODEL, VECTOR = "stand-in/model", [0.6, 0.0, 0.8]
WEIGHTS = ScoreWeights(similarity=0.6, importance=0.25, recency=0.15, recency_half_life_days=30)
BUILD = {
    "tenant_id": "acme",
    "agent_id": "travel-bot",
    "user_id": "u-1",
    "conversation_id": "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10",
    "query": "which hotel did we book?",
    "token_budget": 500,
    "options": {"sources": ["summary", "memories", "knowledge"], "timeout_ms": 2000},
}


class StandIns:
    def __init__(self) -> None:
        self.asked: dict[str, list[dict[str, Any]]] = {}

    async def answer(self, msg: Msg) -> None:
        body = json.loads(msg.data)
        self.asked.setdefault(msg.subject, []).append(body)
        reply: Any
        if msg.subject == "query.embed":
            reply = EmbedReply(model_id=MODEL, dimensions=3, vectors=[VECTOR], truncated=[False])
        elif msg.subject == "query.memory.search":
            use = QueryVectorUse.supplied if body.get("query_vector") else QueryVectorUse.embedded
            reply = MemorySearchReply(model_id=MODEL, weights=WEIGHTS, hits=[], query_vector=use)
        else:
            reply = KnowledgeSearchReply(model_id=MODEL, hits=[])
        await msg.respond(reply.model_dump_json().encode())


async def build(nc: NatsClient) -> ContextBuildReply:
    msg = await nc.request("query.context.build", orjson.dumps(BUILD), timeout=10)
    reply = CONTEXT_BUILD_REPLY.validate_json(msg.data)
    assert isinstance(reply, ContextBuildReply), reply
    return reply


async def test_a_build_embeds_its_query_once_for_its_three_searches(
    context: Worker, nc: NatsClient
) -> None:
    stand_ins = StandIns()
    subs = [
        await nc.subscribe(s, cb=stand_ins.answer)
        for s in ("query.embed", "query.memory.search", "query.knowledge.search")
    ]
    try:
        reply = await build(nc)
    finally:
        for sub in subs:
            await sub.unsubscribe()
    assert [s.status for s in reply.segments] == ["empty", "empty", "empty"]
    assert stand_ins.asked["query.embed"] == [{"texts": [BUILD["query"]]}]
    searches = stand_ins.asked["query.memory.search"] + stand_ins.asked["query.knowledge.search"]
    assert len(searches) == 3  # summaries and memories, knowledge
    for body in searches:
        assert body["text"] == BUILD["query"]
        assert body["query_vector"] == {"model_id": MODEL, "vector": VECTOR}


async def test_without_an_embedder_the_searches_are_asked_by_text_alone(
    context: Worker, nc: NatsClient
) -> None:
    stand_ins = StandIns()
    subs = [
        await nc.subscribe(s, cb=stand_ins.answer)
        for s in ("query.memory.search", "query.knowledge.search")
    ]
    try:
        reply = await build(nc)  # query.embed: no responders
    finally:
        for sub in subs:
            await sub.unsubscribe()
    assert [s.status for s in reply.segments] == ["empty", "empty", "empty"]
    searches = stand_ins.asked["query.memory.search"] + stand_ins.asked["query.knowledge.search"]
    assert len(searches) == 3
    assert all(body.get("query_vector") is None for body in searches)
