"""engram's MCP server against the real stack, from the outside: ``engram-mcp`` spawned as
its own process (stdio, and streamable HTTP), the ``mcp`` package's own client, and the
real workers (embedder, memory, checkpointer, ingest) on real NATS and PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from mcp import ClientSession
from mcp_types import CallToolResult

from contracts.errors import ErrorCode
from contracts.registry import QUERIES
from engram_client import EngramClient, NotFound
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.mcp_fixtures import (
    AGENT,
    USER,
    call,
    call_error,
    engram_error,
    http_server,
    http_session,
    stdio_session,
    text_of,
)
from tests.helpers import eventually

pytestmark = pytest.mark.connected
pytest_plugins = [
    "tests.connected.embedder_fixtures",
    "tests.connected.memory_fixtures",
    "tests.connected.checkpointer_fixtures",
]

TOOLS = {
    "memory_search",
    "memory_write",
    "memory_forget",
    "state_get",
    "state_patch",
    "state_history",
    "knowledge_search",
    "conversation_history",
}
LISBON = "The user's favourite city is Lisbon; they go every spring."


async def recalled(session: ClientSession, text: str, memory_id: str) -> dict[str, Any]:
    """The search reply once ``memory_id`` is among its hits (written, then embedded)."""
    return await eventually(
        lambda: call(session, "memory_search", query=text),
        lambda reply: memory_id in {h["memory_id"] for h in reply["hits"]},
        timeout=60,
        interval=0.2,
    )


async def test_stdio_tools_write_search_patch_and_errors(
    env: Env, memory: Worker, checkpointer: Worker
) -> None:
    async with stdio_session(env, "acme") as session:
        listed = (await session.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        for tool in listed:
            assert tool.description, tool.name
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
            # Scope is configuration, never an argument the model could change.
            assert not {"tenant_id", "agent_id", "user_id"} & set(tool.input_schema["properties"])
        search = next(t for t in listed if t.name == "memory_search")
        assert search.input_schema["required"] == ["query"]
        assert search.output_schema and "hits" in search.output_schema["properties"]

        written = await call(session, "memory_write", text=LISBON, importance=0.8)
        memory_id = written["memory_id"]
        reply = await recalled(session, "which city does the user love?", memory_id)
        hit = next(h for h in reply["hits"] if h["memory_id"] == memory_id)
        assert hit["text"] == LISBON and hit["user_id"] == USER

        patched = await call(session, "state_patch", merge_patch={"session": {"topic": "Lisbon"}})
        assert patched["applied"] is True and patched["version"] == 1
        state = await call(session, "state_get")
        assert state["state"]["session"] == {"topic": "Lisbon"}
        assert state["state"]["version"] == 1
        history = await call(session, "state_history")
        assert [t["version"] for t in history["items"]] == [1]
        assert history["items"][0]["event_id"] == patched["event_id"]

        # A request that breaks engram's contract: the error model, not a traceback.
        both = await engram_error(session, "state_patch", merge_patch={}, patch=[])
        assert both.code == ErrorCode.invalid and "exactly one" in str(both.detail)
        wrong = await engram_error(
            session,
            "memory_write",
            text="x",
            memory_type="working",
            content={"concept": "a", "definition": "b"},
        )
        assert wrong.code == ErrorCode.invalid
        missing = await engram_error(session, "state_get", at_version=99)
        assert missing.code in {ErrorCode.not_found, ErrorCode.pruned}
        stranger = await engram_error(session, "memory_forget", memory_ids=[str(uuid4())])
        assert stranger.code == ErrorCode.not_found
        # Arguments that break the tool's own input schema are refused by the SDK.
        schema = await call_error(session, "memory_search", query="x", top_k=0)
        assert "top_k" in text_of(schema) and "Traceback" not in text_of(schema)

        knowledge = await call(session, "knowledge_search", query="Lisbon")
        assert knowledge["status"] == "ok" and isinstance(knowledge["hits"], list)

        forgotten = await call(session, "memory_forget", memory_ids=[memory_id], reason="test")
        assert forgotten["memory_ids"] == [memory_id]
        await eventually(
            lambda: call(session, "memory_search", query="which city does the user love?"),
            lambda reply: memory_id not in {h["memory_id"] for h in reply["hits"]},
            timeout=30,
            interval=0.2,
        )


async def test_http_transport_and_tenant_scoping(env: Env, memory: Worker) -> None:
    with http_server(env, "acme") as url:
        async with http_session(url) as acme:
            assert {t.name for t in (await acme.list_tools()).tools} == TOOLS
            memory_id = (await call(acme, "memory_write", text=LISBON))["memory_id"]
            await recalled(acme, LISBON, memory_id)
            async with stdio_session(env, "globex") as globex:
                reply = await call(globex, "memory_search", query=LISBON)
                assert reply["hits"] == []
                refused = await engram_error(globex, "memory_forget", memory_ids=[memory_id])
                assert refused.code == ErrorCode.not_found
            # Another user of the same agent and tenant does not see memories about u-1.
            async with stdio_session(env, "acme", user="u-2") as other_user:
                reply = await call(other_user, "memory_search", query=LISBON)
                assert memory_id not in {h["memory_id"] for h in reply["hits"]}
            await recalled(acme, LISBON, memory_id)  # still there for its own scope


async def test_a_server_without_a_user_offers_no_state_tools(env: Env) -> None:
    async with stdio_session(env, "acme", user=None) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert names == TOOLS - {"state_get", "state_patch", "state_history"}


@pytest.mark.skipif(
    "query.chat.history" not in QUERIES, reason="query.chat.history has no contract here yet"
)
async def test_conversation_history(env: Env, ingest: Worker) -> None:
    request_model = QUERIES["query.chat.history"][0]
    async with await EngramClient.connect(
        env.nats_login("producer"), tenant_id="acme", inbox_prefix="_INBOX_producer"
    ) as client:
        mine = client.events.conversation_created(agent_id=AGENT, user_id=USER, title="Trip")
        theirs = client.events.conversation_created(agent_id="other-bot", user_id=USER)
        cid, other_cid = mine.payload.conversation_id, theirs.payload.conversation_id
        said = [
            client.events.message_created(cid, "user", "Book me a hotel in Lisbon"),
            client.events.message_created(cid, "assistant", "Hotel Alfama is booked."),
        ]
        await client.publish_many([mine, theirs, *said])

        async def stored(conversation_id: UUID) -> bool:
            try:
                await client.query(request_model(tenant_id="acme", conversation_id=conversation_id))
            except NotFound:
                return False
            return True

        # The other agent's conversation is there for the tenant (the query answers)...
        await eventually(lambda: stored(other_cid), timeout=30, interval=0.2)
    async with stdio_session(env, "acme") as session:

        async def page() -> CallToolResult:
            result = await session.call_tool(
                "conversation_history", {"conversation_id": str(cid), "order": "oldest_first"}
            )
            assert isinstance(result, CallToolResult)
            return result

        done = await eventually(
            page,
            lambda r: not r.is_error and len((r.structured_content or {})["items"]) == 2,
            timeout=30,
            interval=0.2,
        )
        items = (done.structured_content or {})["items"]
        assert [m["content"] for m in items] == [e.payload.content for e in said]
        # ...but not for this server's agent.
        refused = await engram_error(
            session, "conversation_history", conversation_id=str(other_cid)
        )
        assert refused.code == ErrorCode.not_found
