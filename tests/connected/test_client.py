"""EngramClient against the real stack, as an upstream service uses it: logged in as the
NATS user ``engram_producer``, it publishes typed events that the real workers apply, asks
every query of contracts.registry, and gets typed errors and bounded retries."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.errors import ErrorCode, QueryError
from contracts.memory import SemanticContent
from contracts.registry import QUERIES
from contracts.state_queries import StateGetReply, StateGetRequest, StateView
from engram_client import (
    BatchPublishFailed,
    EngramClient,
    InvalidRequest,
    NotFound,
    PublishFailed,
    RequestTimeout,
    Retry,
    SyncEngramClient,
    Unavailable,
)
from engram_client.queries import METHODS
from engram_client.queries_read import READ_METHODS
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import checkpointer_fixture, run_checkpointer_fixture
from tests.connected.context_fixtures import context_fixture, run_context_fixture
from tests.connected.embedder_fixtures import Running
from tests.helpers import eventually

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]
__all__ = [
    "checkpointer_fixture",
    "context_fixture",
    "run_checkpointer_fixture",
    "run_context_fixture",
]

TENANT, USER, AGENT = "acme", "u-1", "travel-bot"
FAST = Retry(attempts=3, base_s=0.05, max_s=0.1, timeout_s=0.5)


@pytest.fixture
async def client(env: Env) -> AsyncIterator[EngramClient]:
    async with await EngramClient.connect(
        env.nats_login("producer"),
        tenant_id=TENANT,
        producer="chat-api",
        retry=Retry(timeout_s=10.0),
    ) as engram:
        yield engram


async def test_chat_events_are_stored_once_and_bulk_loads_complete(
    ingest: Worker, client: EngramClient, db: asyncpg.Connection
) -> None:
    conversation = client.events.conversation_created(title="Trip to Lisbon", user_id=USER)
    first = await client.publish(conversation)
    assert first.stream == "CHAT" and not first.duplicate
    again = await client.publish(conversation)  # same Nats-Msg-Id: JetStream keeps one
    assert again.duplicate and again.seq == first.seq

    cid = conversation.payload.conversation_id
    say = client.events.correlated()
    messages = [say.message_created(cid, "user", f"message {i}") for i in range(300)]
    acks = await client.publish_many(messages, max_in_flight=32)
    assert len({ack.seq for ack in acks}) == 300 and not any(a.duplicate for a in acks)
    assert len({m.correlation_id for m in messages}) == 1

    stored = await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM ingest.messages WHERE conversation_id = $1 AND tenant_id = $2",
            cid,
            TENANT,
        ),
        lambda n: n == 300,
        timeout=60,
    )
    assert stored == 300
    title = await db.fetchval(
        "SELECT title FROM ingest.conversations WHERE conversation_id = $1", cid
    )
    assert title == "Trip to Lisbon"

    # Read back through the typed queries: every message once, in order, over pages.
    seen, cursor = [], None
    while True:
        page = await client.chat_history(cid, order="oldest_first", limit=128, cursor=cursor)
        seen += [m.content for m in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [f"message {i}" for i in range(300)]
    mine = await client.chat_conversations(user_id=USER)
    assert [c.conversation_id for c in mine.items] == [cid]
    assert mine.items[0].message_count == 300


async def test_a_context_build_through_the_client_stays_in_its_budget(
    ingest: Worker, context: Worker, client: EngramClient
) -> None:
    conversation = client.events.conversation_created(user_id=USER)
    cid = conversation.payload.conversation_id
    await client.publish(conversation)
    await client.publish_many(
        [client.events.message_created(cid, "user", f"turn {i} about Lisbon") for i in range(40)]
    )

    async def newest_first() -> list[str]:
        try:
            return [m.content for m in (await client.chat_history(cid, limit=1)).items]
        except NotFound:  # the conversation is not stored yet
            return []

    await eventually(newest_first, lambda got: got == ["turn 39 about Lisbon"], timeout=60)
    built = await client.context_build(
        "where are we going?",
        agent_id=AGENT,
        user_id=USER,
        token_budget=60,
        conversation_id=cid,
        options={"sources": ["messages"]},
    )
    assert 0 < built.total_tokens <= 60
    assert "turn 39 about Lisbon" in built.segments[-1].text
    again = await client.context_snapshot(snapshot_id=built.snapshot_id)
    assert again.snapshot.total_tokens == built.total_tokens


async def test_a_subject_no_stream_takes_is_a_publish_failure(client: EngramClient) -> None:
    # The producer may not publish engram's own events: JetStream never acks them.
    notice = client.events.state_patch(USER, AGENT, merge_patch={"a": 1})
    forged = notice.model_copy(update={"type": "engram.state.forged"})
    with pytest.raises(PublishFailed):
        await client.publish(forged, retry=FAST)

    # In a batch, the others are still stored, and the failure names the one that was not.
    conversation = client.events.conversation_created()
    batch = [
        conversation,
        forged,
        client.events.session_started(conversation.payload.conversation_id),
    ]
    with pytest.raises(BatchPublishFailed) as failed:
        await client.publish_many(batch, retry=FAST)
    assert set(failed.value.errors) == {1}
    stored = failed.value.results
    assert stored[0] is not None and stored[2] is not None and stored[1] is None
    assert (await client.publish_many([batch[0], batch[2]]))[0].duplicate


async def test_state_queries_return_typed_replies(
    checkpointer: Worker, client: EngramClient
) -> None:
    events = [
        client.events.state_patch(USER, AGENT, merge_patch={"session": {"city": "Lisbon"}}),
        client.events.state_patch(
            USER, AGENT, patch=[{"op": "add", "path": "/session/nights", "value": 3}]
        ),
    ]
    await client.publish_many(events)

    async def version() -> int:
        try:
            return (await client.state_get(user_id=USER, agent_id=AGENT)).state.version
        except NotFound:
            return 0

    await eventually(version, lambda v: v == 2)
    now = await client.state_get(user_id=USER, agent_id=AGENT)
    assert now.state.session == {"city": "Lisbon", "nights": 3}
    past = await client.state_get(user_id=USER, agent_id=AGENT, at_version=1)
    assert past.state.session == {"city": "Lisbon"}

    history = await client.state_history(user_id=USER, agent_id=AGENT)
    assert [item.version for item in history.items] == [2, 1]
    diff = await client.state_diff(user_id=USER, agent_id=AGENT, from_version=1, to_version=2)
    assert diff.patch == [{"op": "add", "path": "/session/nights", "value": 3}]

    generic = await client.query(
        StateGetRequest(tenant_id=TENANT, user_id=USER, agent_id=AGENT, partitions=["session"])
    )
    assert isinstance(generic, StateGetReply) and generic.state.local is None

    # Another tenant sees nothing of acme's.
    with pytest.raises(NotFound) as missing:
        await client.state_get(user_id=USER, agent_id=AGENT, tenant_id="globex")
    assert missing.value.error.code is ErrorCode.not_found
    with pytest.raises(NotFound):
        await client.state_diff(user_id=USER, agent_id=AGENT, from_version=1, to_version=9)


async def test_memory_knowledge_and_embed_queries(
    memory: Worker, embedder: Running, ingest: Worker, client: EngramClient
) -> None:
    lisbon = SemanticContent(concept="Alfama", definition="The oldest district of Lisbon.")
    await client.publish(
        client.events.memory_write(AGENT, "Alfama is the oldest district of Lisbon.", lisbon, 0.8)
    )
    conversation = client.events.conversation_created()
    cid = conversation.payload.conversation_id
    await client.publish_many(
        [conversation, client.events.message_created(cid, "user", "Book Hotel Alfama, please.")]
    )

    async def memories() -> int:
        return len((await client.memory_search("old district", agent_id=AGENT)).hits)

    await eventually(memories, lambda n: n == 1, timeout=60)
    found = await client.memory_search("old district of Lisbon", agent_id=AGENT, top_k=3)
    assert found.hits[0].text == "Alfama is the oldest district of Lisbon."

    async def hits() -> int:
        return len((await client.knowledge_search("hotel booking")).hits)

    await eventually(hits, lambda n: n >= 1, timeout=60)
    knowledge = await client.knowledge_search("hotel booking", mode="hybrid", top_k=5)
    assert any("Hotel Alfama" in hit.text for hit in knowledge.hits)

    vectors = await client.embed(["quiet room", "late check-in"])
    assert len(vectors.vectors) == 2 and len(vectors.vectors[0]) == vectors.dimensions


def test_every_registered_query_has_a_typed_method() -> None:
    typed = METHODS | READ_METHODS
    # query.langgraph.* and query.store.* are the protocols of EngramSaver and EngramStore
    # (engram_client.langgraph, engram_client.store), not methods.
    protocols = ("query.langgraph.", "query.store.")
    assert set(typed) == {q for q in QUERIES if not q.startswith(protocols)}
    assert all(callable(getattr(EngramClient, name)) for name in typed.values())
    assert all(callable(getattr(SyncEngramClient, name)) for name in typed.values())


async def test_a_bad_request_is_a_typed_error(checkpointer: Worker, client: EngramClient) -> None:
    # Caught before sending (no reply to wait for) ...
    with pytest.raises(InvalidRequest) as local:
        await client.memory_search("x", agent_id=AGENT, top_k=0)
    assert local.value.detail is not None
    assert [e["loc"][-1] for e in local.value.detail["errors"]] == ["top_k"]
    # ... and by the service, for a request built without validation.
    unchecked = StateGetRequest.model_construct(
        tenant_id=TENANT, user_id="", agent_id=AGENT, at_version=-1
    )
    with pytest.raises(InvalidRequest) as remote:
        await client.query(unchecked)
    assert remote.value.error.code is ErrorCode.invalid
    assert remote.value.detail is not None
    fields = {e["loc"][-1] for e in remote.value.detail["errors"]}
    assert {"user_id", "at_version"} <= fields


async def answering(
    nc: NatsClient, client: EngramClient, subject: str, replies: list[bytes | None]
) -> list[float]:
    """A stand-in service on ``subject``: answers its n-th request with replies[n] (the
    last one from then on; None: no answer) and records when each request came. Returns
    once the client's own connection reaches it (so no try meets "no responders")."""
    seen: list[float] = []

    async def handler(msg: Msg) -> None:
        if msg.data == b"ping":
            await msg.respond(b"pong")
            return
        seen.append(time.monotonic())
        reply = replies[min(len(seen), len(replies)) - 1]
        if reply is not None:
            await msg.respond(reply)

    await nc.subscribe(subject, cb=handler)
    await nc.flush()
    await eventually(lambda: ping(client, subject), lambda ok: ok)
    return seen


async def ping(client: EngramClient, subject: str) -> bool:
    try:
        return (await client.nc.request(subject, b"ping", timeout=1)).data == b"pong"
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False


def state_reply(version: int) -> bytes:
    view = StateView(
        version=version, state_hash="0" * 64, local={}, shared={}, session={}, persistent={}
    )
    return StateGetReply(state=view).model_dump_json().encode()


BUSY = QueryError(code=ErrorCode.unavailable, message="database down").model_dump_json().encode()


async def test_timeouts_and_unavailable_are_retried_with_backoff(
    nc: NatsClient, client: EngramClient
) -> None:
    seen = await answering(nc, client, "query.state.get", [None, BUSY, state_reply(7)])
    reply = await client.state_get(user_id=USER, agent_id=AGENT, retry=FAST)
    assert reply.state.version == 7
    assert len(seen) == 3
    assert seen[1] - seen[0] >= FAST.timeout_s  # the first try waited out its timeout


async def test_retries_are_bounded(nc: NatsClient, client: EngramClient) -> None:
    silent = await answering(nc, client, "query.state.get", [None])
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as timed_out:
        await client.state_get(user_id=USER, agent_id=AGENT, retry=FAST)
    assert isinstance(timed_out.value, TimeoutError) and timed_out.value.attempts == 3
    assert len(silent) == 3
    assert time.monotonic() - started < 3 * FAST.timeout_s + 2 * FAST.max_s + 1

    busy = await answering(nc, client, "query.state.history", [BUSY])
    with pytest.raises(Unavailable) as unavailable:
        await client.state_history(user_id=USER, agent_id=AGENT, retry=FAST)
    assert unavailable.value.message == "database down"
    assert len(busy) == 3


async def test_no_responder_is_retried_then_a_timeout(client: EngramClient) -> None:
    with pytest.raises(RequestTimeout, match="no responder"):
        await client.embed(["hello"], retry=FAST)
