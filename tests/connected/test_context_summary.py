"""The summary segment holds only summaries of turns older than the recent messages the
build shows (issue 16: nothing is shown twice). Ingest answers query.chat.history from
real events; query.memory.search is answered here, by its published reply contract, with
the session summaries the memory service writes (episodic memories of the conversation
whose ``content.temporal`` is the session's span)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.context import CONTEXT_BUILD_REPLY, ContextBuildReply
from contracts.memory_search import MemoryHit, MemorySearchReply, ScoreParts, ScoreWeights
from services.runtime.bus_setup import connect
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import AGENT, TENANT, USER
from tests.connected.context_fixtures import (  # noqa: F401
    context_fixture,
    run_context_fixture,
)
from tests.helpers import drained, eventually, publish

CONVERSATION = UUID("0d8c5a9e-4b1f-4c6e-8f3a-2b7d9e1c4a56")


def summary(name: str, began: datetime, ended: datetime) -> MemoryHit:
    text = f"Summary of the {name} session."
    return MemoryHit(
        memory_id=uuid4(),
        memory_type="episodic",
        status="active",
        text=text,
        content={
            "event": text,
            "temporal": {"occurred_at": began.isoformat(), "ended_at": ended.isoformat()},
        },
        user_id=USER,
        conversation_id=CONVERSATION,
        access_count=0,
        score=0.5,
        parts=ScoreParts(similarity=0.5, importance=0.5, recency=0.5),
    )


@pytest.fixture
async def producer(env: Env) -> AsyncIterator[NatsClient]:
    client = await connect(env.nats_login("producer"))
    yield client
    await client.drain()


async def test_summaries_cover_only_turns_older_than_the_recent_messages(
    context: Worker, ingest: Worker, nc: NatsClient, producer: NatsClient
) -> None:
    # 30 turns a minute apart; the build shows the newest 10 (turns 20..29).
    at = [f.T0 + timedelta(minutes=i) for i in range(30)]
    await publish(nc, f.conversation(CONVERSATION, tenant=TENANT, user_id=USER))
    await publish(
        nc, *(f.message(CONVERSATION, uuid4(), TENANT, f"turn {i}", t) for i, t in enumerate(at))
    )
    await eventually(lambda: drained(nc), timeout=60)
    before = summary("earlier", f.T0 - timedelta(hours=2), f.T0 - timedelta(hours=1))
    first = summary("first", at[0], at[19] + timedelta(seconds=30))  # ends before turn 20
    latest = summary("latest", at[20], at[29] + timedelta(seconds=30))  # turns shown
    straddling = summary("straddling", at[15], at[22])  # ends inside the shown turns

    async def answer(msg: Msg) -> None:
        reply = MemorySearchReply(
            model_id="stub",
            weights=ScoreWeights(
                similarity=0.6, importance=0.25, recency=0.15, recency_half_life_days=30
            ),
            hits=[latest, straddling, first, before],
        )
        await msg.respond(reply.model_dump_json().encode())

    stub = await nc.subscribe("query.memory.search", cb=answer)
    try:
        request = {
            "tenant_id": TENANT,
            "agent_id": AGENT,
            "user_id": USER,
            "conversation_id": str(CONVERSATION),
            "query": "what did we plan?",
            "token_budget": 2000,
            "options": {"sources": ["summary", "messages"], "history_limit": 10},
        }
        msg = await producer.request("query.context.build", orjson.dumps(request), timeout=10)
    finally:
        await stub.unsubscribe()
    reply = CONTEXT_BUILD_REPLY.validate_json(msg.data)
    assert isinstance(reply, ContextBuildReply), reply
    by_kind = {s.kind.value: s for s in reply.segments}
    messages, summaries = by_kind["messages"], by_kind["summary"]
    assert messages.status == "ok" and len(messages.source_ids) == 10
    assert "turn 20" in messages.text and "turn 19" not in messages.text
    # Only the sessions that ended before turn 20, oldest first; the two that cover shown
    # turns are left out.
    assert summaries.status == "ok"
    assert summaries.source_ids == [str(before.memory_id), str(first.memory_id)]
    assert summaries.text.index("earlier") < summaries.text.index("first")
    assert "latest" not in summaries.text and "straddling" not in summaries.text
    assert summaries.source_tokens == summaries.tokens  # the dropped ones are not sources
