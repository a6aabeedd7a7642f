"""What the knowledge segment searches: the tenant's messages and files (the default), or
the agent's own knowledge sources (``options.knowledge_scope: agent``). The real context
worker and NATS; query.knowledge.search is a stand-in that answers from the published
contract and keeps what it was asked."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.context import CONTEXT_BUILD_REPLY, ContextBuildReply
from contracts.embedding import KnowledgeSearchReply
from contracts.errors import QueryError
from services.runtime.worker import Worker
from tests.connected.context_fixtures import (  # noqa: F401
    context_fixture,
    run_context_fixture,
)

pytestmark = pytest.mark.connected

BUILD: dict[str, Any] = {
    "tenant_id": "acme",
    "agent_id": "travel-bot",
    "user_id": "u-1",
    "query": "can I bring my dog?",
    "token_budget": 500,
    "options": {"sources": ["knowledge"], "timeout_ms": 2000},
}


async def knowledge_asked(nc: NatsClient, options: dict[str, Any]) -> list[dict[str, Any]]:
    """The knowledge searches one build asks, with these options."""
    asked: list[dict[str, Any]] = []

    async def answer(msg: Msg) -> None:
        asked.append(json.loads(msg.data))
        reply = KnowledgeSearchReply(model_id="stand-in/model", hits=[])
        await msg.respond(reply.model_dump_json().encode())

    sub = await nc.subscribe("query.knowledge.search", cb=answer)
    try:
        body = {**BUILD, "options": {**BUILD["options"], **options}}
        msg = await nc.request("query.context.build", orjson.dumps(body), timeout=10)
    finally:
        await sub.unsubscribe()
    reply = CONTEXT_BUILD_REPLY.validate_json(msg.data)
    assert isinstance(reply, ContextBuildReply), reply
    assert [s.kind for s in reply.segments] == ["knowledge"]
    return asked


async def test_by_default_the_tenant_is_searched(context: Worker, nc: NatsClient) -> None:
    [asked] = await knowledge_asked(nc, {})
    assert asked.get("scope") is None


async def test_the_agents_own_sources_when_asked(context: Worker, nc: NatsClient) -> None:
    [asked] = await knowledge_asked(nc, {"knowledge_scope": "agent"})
    assert asked["scope"] == {"agent_id": "travel-bot", "source_ids": None}
    assert asked["tenant_id"] == "acme" and asked["text"] == BUILD["query"]
    picked = [str(uuid4()), str(uuid4())]
    [asked] = await knowledge_asked(
        nc, {"knowledge_scope": "agent", "knowledge_source_ids": picked}
    )
    assert asked["scope"] == {"agent_id": "travel-bot", "source_ids": picked}


async def test_sources_without_the_agent_scope_are_invalid(context: Worker, nc: NatsClient) -> None:
    body = {**BUILD, "options": {"knowledge_source_ids": [str(uuid4())]}}
    msg = await nc.request("query.context.build", orjson.dumps(body), timeout=10)
    reply = CONTEXT_BUILD_REPLY.validate_json(msg.data)
    assert isinstance(reply, QueryError) and reply.code == "invalid", reply
    assert "knowledge_scope" in reply.message
