"""query.context.build and query.context.snapshot against the real bus and database, from
the published contract: the checkpointer answers query.state.get; the other sources are
not running (no responders) or never answer (a subscriber that stays silent)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest
from nats.aio.client import Client as NatsClient

from contracts.context import (
    CONTEXT_BUILD_REPLY,
    CONTEXT_SNAPSHOT_REPLY,
    ContextBuildReply,
    ContextSnapshotReply,
)
from contracts.context_templates import (
    TemplateDeleted,
    TemplateDeletedPayload,
)
from contracts.errors import QueryError
from services.context.tokens import tokenizer
from services.runtime.bus_setup import connect
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    AGENT,
    TENANT,
    USER,
    add,
    checkpointer_fixture,
    patch,
    run_checkpointer_fixture,
)
from tests.connected.context_fixtures import (  # noqa: F401
    context_fixture,
    run_context_fixture,
    template_put,
)
from tests.helpers import drained, eventually, publish

CONVERSATION = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"


@pytest.fixture
async def producer(env: Env) -> AsyncIterator[NatsClient]:
    """A client as upstream services connect: the producer's NATS user."""
    client = await connect(env.nats_login("producer"))
    yield client
    await client.drain()


async def ask(nc: NatsClient, subject: str, body: dict[str, Any]) -> Any:
    reply = CONTEXT_BUILD_REPLY if subject == "query.context.build" else CONTEXT_SNAPSHOT_REPLY
    msg = await nc.request(subject, orjson.dumps(body), timeout=10)
    return reply.validate_json(msg.data)


def build_request(budget: int, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "agent_id": AGENT,
        "user_id": USER,
        "conversation_id": CONVERSATION,
        "query": "which hotel did we book?",
        "token_budget": budget,
        "segments": [{"name": "persona", "text": "You are {agent_id}, booking for {city}."}],
        "variables": {"city": "Lisbon"},
        **extra,
    }


async def test_a_build_fills_its_budget_exactly_and_is_recorded(
    context: Worker, checkpointer: Worker, nc: NatsClient, producer: NatsClient
) -> None:
    notes = {f"note{i}": f"the guest prefers room {i} facing the river" for i in range(200)}
    await publish(nc, patch([add("/persistent/notes", notes)]))
    await wait_version_nc(producer)
    message_id = str(uuid4())
    started = time.perf_counter()
    reply = await ask(producer, "query.context.build", build_request(300, message_id=message_id))
    elapsed = time.perf_counter() - started
    assert isinstance(reply, ContextBuildReply), reply
    by_kind = {s.kind.value: s for s in reply.segments}
    assert [s.kind.value for s in reply.segments] == [
        "system",
        "state",
        "summary",
        "memories",
        "knowledge",
        "messages",
    ]
    assert by_kind["system"].text == f"You are {AGENT}, booking for Lisbon."
    assert by_kind["system"].source_ids == ["persona"]
    state = by_kind["state"]
    assert state.status == "ok" and state.truncated and state.source_ids == [f"{USER}/{AGENT}@1"]
    assert state.text.startswith('state: {"persistent":{"notes":')
    # The only source with more to give takes every token the others left: exactly full.
    assert reply.total_tokens == 300 == sum(s.tokens for s in reply.segments)
    tok = tokenizer("cl100k_base")
    assert all(tok.count(s.text) == s.tokens for s in reply.segments)
    assert reply.compression_ratio == pytest.approx(reply.source_tokens / 300, rel=1e-3)
    assert reply.compression_ratio > 5
    for kind in ("summary", "memories", "knowledge"):  # none of them running
        assert by_kind[kind].status == "missing", by_kind[kind]
        assert "no service answers query." in (by_kind[kind].reason or "")
    assert by_kind["messages"].status == "missing" and by_kind["messages"].reason
    assert elapsed < 3.0  # no source waited for: the absent ones answer "no responders" at once

    key = {"tenant_id": TENANT, "snapshot_id": str(reply.snapshot_id)}
    snap = await ask(producer, "query.context.snapshot", key)
    assert isinstance(snap, ContextSnapshotReply), snap
    assert snap.snapshot.segments == reply.segments
    assert snap.snapshot.total_tokens == 300 and snap.snapshot.segment_count == 6
    assert snap.snapshot.request.variables == {"city": "Lisbon"}
    key = {"tenant_id": TENANT, "message_id": message_id}
    by_message = await ask(producer, "query.context.snapshot", key)
    assert isinstance(by_message, ContextSnapshotReply)
    assert by_message.snapshot.snapshot_id == reply.snapshot_id

    # Another tenant sees nothing of it, by id or by message.
    for key in ({"snapshot_id": str(reply.snapshot_id)}, {"message_id": message_id}):
        other = await ask(producer, "query.context.snapshot", {"tenant_id": "other", **key})
        assert isinstance(other, QueryError) and other.code == "not_found"


async def test_a_source_that_does_not_answer_is_missing_and_the_reply_comes_in_time(
    context: Worker, nc: NatsClient, producer: NatsClient
) -> None:
    silent = await nc.subscribe("query.memory.search")  # receives, never answers
    try:
        started = time.perf_counter()
        reply = await ask(
            producer,
            "query.context.build",
            build_request(50, options={"timeout_ms": 200, "sources": ["memories", "state"]}),
        )
        elapsed = time.perf_counter() - started
    finally:
        await silent.unsubscribe()
    assert isinstance(reply, ContextBuildReply), reply
    by_kind = {s.kind.value: s for s in reply.segments}
    assert list(by_kind) == ["system", "state", "memories"]
    assert by_kind["memories"].status == "missing"
    assert "did not answer within" in (by_kind["memories"].reason or "")
    assert by_kind["state"].status == "missing"  # no checkpointer in this test
    assert by_kind["system"].status == "ok" and reply.total_tokens == by_kind["system"].tokens
    # It waited the silent source's 200 ms, then answered (load on CI leaves some slack).
    assert 0.2 <= elapsed < 2.5


async def test_recent_messages_come_from_the_conversation_newest_first(
    context: Worker, ingest: Worker, nc: NatsClient, producer: NatsClient
) -> None:
    cid = UUID(CONVERSATION)
    sent = [uuid4() for _ in range(30)]
    await publish(nc, f.conversation(cid, tenant=TENANT, user_id=USER))
    await publish(
        nc,
        *(
            f.message(cid, m, TENANT, f"message {i} about the hotel", f.T0 + timedelta(seconds=i))
            for i, m in enumerate(sent)
        ),
        f.delete(sent[-2], TENANT, f.T0 + timedelta(minutes=5)),
    )
    await eventually(lambda: drained(nc), timeout=60)
    reply = await ask(
        producer, "query.context.build", build_request(100, options={"sources": ["messages"]})
    )
    assert isinstance(reply, ContextBuildReply), reply
    messages = {s.kind.value: s for s in reply.segments}["messages"]
    assert messages.status == "ok", messages
    kept = messages.source_ids
    # The newest that fit the budget, the deleted one left out, older turns dropped.
    newest = [str(m) for m in reversed(sent) if m != sent[-2]]
    assert 0 < len(kept) < len(newest) and set(kept) == set(newest[: len(kept)])
    assert "message 29 about the hotel" in messages.text
    assert "message 28 about" not in messages.text
    assert reply.total_tokens <= 100


async def test_a_build_with_an_unknown_variable_is_invalid(
    context: Worker, producer: NatsClient
) -> None:
    body = build_request(100, segments=[{"text": "Hello {nobody}"}])
    reply = await ask(producer, "query.context.build", body)
    assert isinstance(reply, QueryError) and reply.code == "invalid"
    assert reply.detail == {"variable": "nobody"}


async def wait_version_nc(producer: NatsClient) -> None:
    """Until the checkpointer answers version 1 (read through the bus, as a client would)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = await producer.request(
            "query.state.get",
            orjson.dumps({"tenant_id": TENANT, "user_id": USER, "agent_id": AGENT}),
            timeout=5,
        )
        if b'"version":1' in msg.data:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the state never reached version 1")


async def test_a_template_fills_its_variables_and_counts_its_uses(
    context: Worker, nc: NatsClient, producer: NatsClient, db: asyncpg.Connection
) -> None:
    put = template_put(
        "travel",
        "You are {agent_id}, a {tone} agent in {city}.",
        TENANT,
        defaults={"tone": "friendly", "city": "Paris"},
    )
    await publish(nc, put, template_put("travel", "Another tenant's.", "other"))

    async def stored() -> int:
        return int(await db.fetchval("SELECT count(*) FROM context.templates"))

    await eventually(stored, lambda n: n == 2)
    body = build_request(200, template="travel", options={"sources": []})
    reply = await ask(producer, "query.context.build", body)
    assert isinstance(reply, ContextBuildReply), reply
    (system,) = reply.segments
    # The template's segment first (its default tone, the request's city), then the request's.
    assert system.text == (
        f"You are {AGENT}, a friendly agent in Lisbon.\n\nYou are {AGENT}, booking for Lisbon."
    )
    assert system.source_ids == ["travel/persona", "persona"]
    await ask(producer, "query.context.build", body)
    row = await db.fetchrow(
        "SELECT use_count, token_total FROM context.templates WHERE tenant_id = $1", TENANT
    )
    assert row["use_count"] == 2 and row["token_total"] > 0

    # Deleted: a build naming it is not_found; a put older than the delete stays dead.
    deleted = TemplateDeleted(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=TENANT,
        producer="tests",
        payload=TemplateDeletedPayload(name="travel"),
    )
    await publish(nc, deleted, put.model_copy(update={"event_id": uuid4()}))

    async def gone() -> Any:
        return await ask(producer, "query.context.build", body)

    missing = await eventually(gone, lambda r: isinstance(r, QueryError))
    assert missing.code == "not_found"
    await asyncio.sleep(0.5)  # the late put is applied (or not) by now
    assert isinstance(await gone(), QueryError)


async def test_snapshots_older_than_the_retention_are_deleted(
    run_context: Callable[..., AbstractAsyncContextManager[Worker]],
    producer: NatsClient,
    db: asyncpg.Connection,
) -> None:
    async with run_context(snapshot_keep_days=1, snapshot_prune_every_s=0.2):
        old = await ask(producer, "query.context.build", build_request(20, options={"sources": []}))
        new = await ask(producer, "query.context.build", build_request(20, options={"sources": []}))
        assert isinstance(old, ContextBuildReply) and isinstance(new, ContextBuildReply)
        await db.execute(
            "UPDATE context.snapshots SET created_at = now() - interval '2 days' "
            "WHERE snapshot_id = $1",
            old.snapshot_id,
        )

        async def kept() -> set[Any]:
            return {r[0] for r in await db.fetch("SELECT snapshot_id FROM context.snapshots")}

        assert await eventually(kept, lambda ids: old.snapshot_id not in ids) == {new.snapshot_id}
