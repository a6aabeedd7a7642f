"""EngramSaver against LangGraph's own conformance suite (langgraph-checkpoint-conformance),
through the real checkpointer worker, nats-server and PostgreSQL; and what the suite does
not check: tenants, read-your-writes across savers, the delta storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.graph import START, MessagesState, StateGraph

from contracts.langgraph import GetTupleAnswer, GetTupleReply, GetTupleRequest
from engram_client.langgraph import EngramSaver
from services.runtime.worker import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    checkpointer_fixture,
    run_checkpointer_fixture,
)
from tests.connected.saver_fixtures import Saver, saver_for_fixture  # noqa: F401

pytestmark = pytest.mark.connected


async def test_conformance_every_capability(checkpointer: Worker, saver_for: Saver) -> None:
    @checkpointer_test(name="EngramSaver")
    async def engram_saver() -> AsyncIterator[EngramSaver]:
        async with saver_for() as saver:
            yield saver

    report = await validate(engram_saver)
    report.print_report()  # shown with -s: which capabilities, how many tests each
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}, failures
    assert set(report.results) == {c.value for c in Capability}  # base and extended
    assert all(r.detected and r.tests_passed > 0 for r in report.results.values())
    assert report.conformance_level() == "FULL"


async def _put(
    saver: EngramSaver, thread: str, values: dict[str, Any], version: int = 1
) -> dict[str, Any]:
    versions = dict.fromkeys(values, version)
    cp = generate_checkpoint(channel_values=values, channel_versions=versions)
    return dict(await saver.aput(generate_config(thread), cp, generate_metadata(), versions))


async def test_tenants_do_not_see_each_others_threads(
    checkpointer: Worker, saver_for: Saver
) -> None:
    async with saver_for("acme") as acme, saver_for("globex") as globex:
        await _put(acme, "shared-name", {"who": ["acme"]})
        assert await globex.aget_tuple(generate_config("shared-name")) is None
        assert [t async for t in globex.alist(None)] == []
        await _put(globex, "shared-name", {"who": ["globex"]})
        await globex.adelete_thread("shared-name")
        mine = await acme.aget_tuple(generate_config("shared-name"))
        assert mine is not None
        assert mine.checkpoint["channel_values"]["who"] == ["acme"]


async def test_a_put_is_read_by_another_saver_at_once(
    checkpointer: Worker, saver_for: Saver
) -> None:
    thread = str(uuid4())
    async with saver_for() as writer, saver_for() as reader:
        for step in range(20):
            stored = await _put(writer, thread, {"messages": list(range(step))}, step + 1)
            got = await reader.aget_tuple(generate_config(thread))
            assert got is not None
            assert (
                got.config["configurable"]["checkpoint_id"]
                == stored["configurable"]["checkpoint_id"]
            )
            assert got.checkpoint["channel_values"]["messages"] == list(range(step))


async def test_a_growing_channel_is_stored_as_deltas(
    checkpointer: Worker, saver_for: Saver, db: asyncpg.Connection
) -> None:
    thread, messages = str(uuid4()), []
    async with saver_for() as saver:
        parent: dict[str, Any] | None = None
        for step in range(40):
            messages.append({"role": "user", "content": f"message {step}: " + "lorem ipsum " * 20})
            config = generate_config(thread)
            if parent:
                config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
            version = saver.get_next_version(None if step == 0 else f"{step:032}.0", None)
            cp = generate_checkpoint(
                channel_values={"messages": list(messages)},
                channel_versions={"messages": version},
            )
            parent = dict(
                await saver.aput(config, cp, generate_metadata(step=step), {"messages": version})
            )
        rows = await db.fetch(
            "SELECT codec, raw_bytes, length(data) AS size FROM checkpoint.lg_blobs "
            "WHERE thread_id = $1 ORDER BY version",
            thread,
        )
        codecs = [r["codec"] for r in rows]
        assert codecs.count("delta") >= 35, codecs
        last = rows[-1]
        assert last["size"] < last["raw_bytes"] / 20, dict(last)
        # Every version reads back whole, deltas decoded (the oldest through the chain).
        seen = [t async for t in saver.alist(generate_config(thread))]
        assert len(seen) == 40
        assert seen[0].checkpoint["channel_values"]["messages"] == messages
        assert seen[-1].checkpoint["channel_values"]["messages"] == messages[:1]
        # Retention keeps what the kept checkpoint needs, and drops the rest.
        await saver.aprune([thread])
        head = await saver.aget_tuple(generate_config(thread))
        assert head is not None
        assert head.checkpoint["channel_values"]["messages"] == messages
        left = await db.fetchval(
            "SELECT count(*) FROM checkpoint.lg_blobs WHERE thread_id = $1", thread
        )
        assert left < 40


async def test_a_graph_resumes_its_thread_through_engram(
    checkpointer: Worker, saver_for: Saver
) -> None:
    def echo(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [AIMessage(f"echo {len(state['messages'])}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    config: Any = {"configurable": {"thread_id": str(uuid4())}}
    async with saver_for() as saver:
        graph = builder.compile(checkpointer=saver)
        await graph.ainvoke({"messages": [HumanMessage("hi")]}, config)
    async with saver_for() as other:  # another process's saver resumes the thread
        graph = builder.compile(checkpointer=other)
        await graph.ainvoke({"messages": [HumanMessage("again")]}, config)
        state = await graph.aget_state(config)
        assert [m.content for m in state.values["messages"]] == ["hi", "echo 1", "again", "echo 3"]
        history = [s async for s in graph.aget_state_history(config)]
        assert len(history) >= 6  # time travel: every step's checkpoint


async def test_sync_methods_run_from_another_thread_only(
    checkpointer: Worker, saver_for: Saver
) -> None:
    thread = str(uuid4())
    async with saver_for() as saver:
        await _put(saver, thread, {"messages": ["a"]})
        got = await asyncio.to_thread(saver.get_tuple, generate_config(thread))
        assert got is not None
        assert got.checkpoint["channel_values"]["messages"] == ["a"]
        listed = await asyncio.to_thread(lambda: list(saver.list(generate_config(thread))))
        assert len(listed) == 1
        with pytest.raises(asyncio.InvalidStateError):
            saver.get_tuple(generate_config(thread))


async def test_values_the_client_holds_come_back_without_their_bytes(
    checkpointer: Worker, saver_for: Saver
) -> None:
    thread = str(uuid4())
    async with saver_for() as saver:
        ids = [
            (await _put(saver, thread, {"messages": [f"m{i}"] * 300}, step))["configurable"]
            for step, i in enumerate(range(5), start=1)
        ]

        async def ask(held: list[int], checkpoint_id: str | None = None) -> GetTupleReply:
            request = GetTupleRequest(
                tenant_id="acme", thread_id=thread, checkpoint_id=checkpoint_id, held=held
            )
            msg = await saver.nc.request(
                "query.langgraph.get_tuple", request.model_dump_json().encode(), timeout=10
            )
            reply = GetTupleAnswer.model_validate_json(msg.data).root
            assert isinstance(reply, GetTupleReply)
            return reply

        plain = await ask([])
        assert plain.checkpoint is not None
        (value,) = plain.checkpoint.values
        assert value.data and not value.held and value.blob_id is not None
        held = await ask([value.blob_id])
        assert held.checkpoint is not None
        (same,) = held.checkpoint.values
        assert same.held and same.data is None and same.blob_id == value.blob_id
        other = await ask([value.blob_id + 10**9])  # an id the thread does not have
        assert other.checkpoint is not None
        assert other.checkpoint.values[0].data == value.data
        # The saver names what it holds, and reads the same values as one that holds none.
        async with saver_for(held_bytes=0) as cold:
            for step, config in enumerate(ids):
                want = ["m" + str(step)] * 300
                for reader in (saver, cold):
                    got = await reader.aget_tuple({"configurable": config})
                    assert got is not None
                    assert got.checkpoint["channel_values"]["messages"] == want
