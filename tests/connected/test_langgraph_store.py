"""EngramStore against the behaviours of LangGraph's own store tests
(libs/checkpoint-postgres/tests/test_async_store.py and test_store.py: batch operations,
put / update / delete, namespace listing with prefix, suffix and depth, search with
filters, vector search with pagination, TTL and refresh), ported to run through the real
memory and embedder workers (real model), nats-server and PostgreSQL; plus what those
tests do not check: tenants, read-your-writes across stores, items as engram memories.

Texts are sentences, not LangGraph's character-count fake embeddings: engram embeds with
its real model, so an expectation says which text is nearer in meaning.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langgraph.store.base import GetOp, Item, ListNamespacesOp, PutOp, SearchOp
from nats.aio.client import Client as NatsClient

from contracts.memory_search import MEMORY_SEARCH_REPLY, MEMORY_SEARCH_SUBJECT, MemorySearchReply
from engram_client.errors import InvalidRequest
from tests.conftest import Env
from tests.connected.store_fixtures import INDEX, Store, sql, store_for_fixture  # noqa: F401

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]


# ---- batches ------------------------------------------------------------------------------


async def test_abatch_order(store_for: Store) -> None:
    async with store_for() as store:
        await store.aput(("test", "foo"), "key1", {"data": "value1"})
        await store.aput(("test", "bar"), "key2", {"data": "value2"})
        results = await store.abatch(
            [
                GetOp(namespace=("test", "foo"), key="key1"),
                PutOp(namespace=("test", "bar"), key="key2", value={"data": "value2"}),
                SearchOp(namespace_prefix=("test",), filter={"data": "value1"}, limit=10),
                ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
                GetOp(namespace=("test",), key="key3"),
            ]
        )
        assert len(results) == 5
        assert isinstance(results[0], Item) and results[0].value == {"data": "value1"}
        assert results[0].key == "key1"
        assert results[1] is None
        assert isinstance(results[2], list) and len(results[2]) == 1
        assert isinstance(results[3], list)
        assert ("test", "foo") in results[3] and ("test", "bar") in results[3]
        assert results[4] is None

        again = await store.abatch(
            [
                SearchOp(namespace_prefix=("test",), filter=None, limit=5, offset=0),
                GetOp(namespace=("test", "bar"), key="key2"),
                ListNamespacesOp(match_conditions=None, max_depth=None, limit=5, offset=0),
                PutOp(namespace=("test",), key="key3", value={"data": "value3"}),
                GetOp(namespace=("test", "foo"), key="key1"),
            ]
        )
        assert isinstance(again[0], list) and len(again[0]) == 2
        assert isinstance(again[1], Item) and again[1].value == {"data": "value2"}
        assert isinstance(again[2], list) and ("test", "bar") in again[2]
        assert again[3] is None
        assert isinstance(again[4], Item) and again[4].value == {"data": "value1"}


async def test_batch_get_put_search_list(store_for: Store) -> None:
    async with store_for() as store:
        puts = await store.abatch(
            [
                PutOp(namespace=("test",), key="key1", value={"data": "value1"}),
                PutOp(namespace=("test",), key="key2", value={"data": "value2"}),
                PutOp(namespace=("test",), key="key3", value=None),
            ]
        )
        assert puts == [None, None, None]
        assert len(await store.asearch(("test",), limit=10)) == 2  # key3: None, not stored
        gets = await store.abatch(
            [GetOp(("test",), "key1"), GetOp(("test",), "key2"), GetOp(("test",), "key3")]
        )
        assert [g.key if isinstance(g, Item) else g for g in gets] == ["key1", "key2", None]

        await store.aput(("test", "namespace1"), "key1", {"data": "value1"})
        await store.aput(("test", "namespace2"), "key2", {"data": "value2"})
        found = await store.abatch(
            [
                SearchOp(namespace_prefix=("test",), filter={"data": "value1"}, limit=10),
                SearchOp(namespace_prefix=("test", "namespace2"), limit=5),
                ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            ]
        )
        assert isinstance(found[0], list) and len(found[0]) == 2
        assert isinstance(found[1], list) and [i.key for i in found[1]] == ["key2"]
        assert found[2] == [("test",), ("test", "namespace1"), ("test", "namespace2")]


async def test_basic_put_update_delete(store_for: Store) -> None:
    async with store_for() as store:
        ns = ("test", "documents")
        await store.aput(ns, "doc1", {"title": "Test Document", "content": "Hello, World!"})
        item = await store.aget(ns, "doc1")
        assert item is not None
        assert (item.namespace, item.key) == (ns, "doc1")
        assert item.value == {"title": "Test Document", "content": "Hello, World!"}

        await store.aput(ns, "doc1", {"title": "Updated Document", "content": "Hello, Updated!"})
        updated = await store.aget(ns, "doc1")
        assert updated is not None and updated.value["title"] == "Updated Document"
        assert updated.updated_at > item.updated_at
        assert updated.created_at == item.created_at
        assert await store.aget(("test", "other_documents"), "doc1") is None

        await store.adelete(ns, "doc1")
        assert await store.aget(ns, "doc1") is None
        await store.adelete(ns, "doc1")  # deleting twice is fine


async def test_concurrent_calls_and_sync_calls_from_threads(store_for: Store) -> None:
    """test_large_batches(_async), scaled to a shared 2-core machine: many concurrent
    calls of every kind; and the sync methods, from other threads."""
    async with store_for() as store:
        coros: list[Any] = []
        for m in range(4):
            ns = ("test", "foo", "bar", "baz", str(m % 2))
            for i in range(25):
                coros += [
                    store.aput(ns, f"key{i}", value={"foo": f"bar{i}"}),
                    store.aget(ns, f"key{i}"),
                    store.alist_namespaces(prefix=None, max_depth=m + 1),
                    store.asearch(("test",)),
                    store.aput(ns, f"key{i}", value={"foo": f"bar{i}"}),
                    store.adelete(ns, f"key{i}"),
                ]
        results = await asyncio.gather(*coros)
        assert len(results) == 4 * 25 * 6
        assert await store.asearch(("test",)) == []

        await asyncio.to_thread(store.put, ("sync",), "k", {"val": "baz"})
        got = await asyncio.to_thread(store.get, ("sync",), "k")
        assert got is not None and got.value == {"val": "baz"}
        assert await asyncio.to_thread(store.list_namespaces, prefix=("sync",)) == [("sync",)]
        with pytest.raises(asyncio.InvalidStateError):
            store.get(("sync",), "k")  # from the store's own loop


# ---- namespaces ---------------------------------------------------------------------------


async def test_list_namespaces_prefix_suffix_depth(store_for: Store) -> None:
    async with store_for() as store:
        namespaces = [
            ("test", "documents", "public"),
            ("test", "documents", "private"),
            ("test", "images", "public"),
            ("test", "images", "private"),
            ("prod", "documents", "public"),
            ("prod", "documents", "private"),
        ]
        for ns in namespaces:
            await store.aput(ns, "dummy", {"content": "dummy"})
        assert sorted(await store.alist_namespaces()) == sorted(namespaces)
        test_ns = await store.alist_namespaces(prefix=["test"])
        assert len(test_ns) == 4 and all(ns[0] == "test" for ns in test_ns)
        public = await store.alist_namespaces(suffix=["public"])
        assert len(public) == 3 and all(ns[-1] == "public" for ns in public)
        assert await store.alist_namespaces(max_depth=2) == [
            ("prod", "documents"),
            ("test", "documents"),
            ("test", "images"),
        ]
        assert len(await store.alist_namespaces(limit=3)) == 3
        assert await store.alist_namespaces(limit=3, offset=3) == sorted(namespaces)[3:]
        assert await store.alist_namespaces(prefix=["test", "*", "public"]) == [
            ("test", "documents", "public"),
            ("test", "images", "public"),
        ]
        assert await store.alist_namespaces(prefix=["prod"], suffix=["private"]) == [
            ("prod", "documents", "private")
        ]
        for ns in namespaces:
            await store.adelete(ns, "dummy")
        assert await store.alist_namespaces() == []


async def test_namespace_segment_boundaries(store_for: Store) -> None:
    async with store_for() as store:
        for ns in [
            ("foo",),
            ("foo", "child"),
            ("foo", "child", "deep"),
            ("foobar",),
            ("foobar", "baz"),
            ("foo2",),
            ("uid", "users", "alice"),
            ("uid", "users", "malice"),
            ("uid", "a", "b", "alice"),
            ("users", "alice\n"),
            ("user_1",),
            ("userX1",),
            ("a%b",),
            ("axxb",),
        ]:
            await store.aput(ns, "k", {"v": 1})

        async def found(prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
            return {i.namespace for i in await store.asearch(prefix, limit=100)}

        assert await found(("foo",)) == {("foo",), ("foo", "child"), ("foo", "child", "deep")}
        assert await found(("foobar",)) == {("foobar",), ("foobar", "baz")}
        assert await found(("foo2",)) == {("foo2",)}
        assert await found(("fo",)) == set()
        assert await found(("user_1",)) == {("user_1",)}
        assert await found(("a%b",)) == {("a%b",)}
        assert len(await found(())) == 14  # an empty prefix constrains nothing
        assert set(await store.alist_namespaces(suffix=["alice"], limit=100)) == {
            ("uid", "users", "alice"),
            ("uid", "a", "b", "alice"),
        }
        assert await store.alist_namespaces(prefix=["uid", "*", "alice"]) == [
            ("uid", "users", "alice")
        ]
        assert await store.alist_namespaces(prefix=["users", "alice"]) == []


# ---- search -------------------------------------------------------------------------------


async def test_search_filters_and_pages(store_for: Store) -> None:
    async with store_for() as store:
        data = [
            (("test", "docs"), "doc1", {"title": "First", "author": "Alice", "n": 1}),
            (("test", "docs"), "doc2", {"title": "Second", "author": "Bob", "n": 2}),
            (("test", "images"), "img1", {"title": "Image", "author": "Alice", "n": 3}),
        ]
        for ns, key, value in data:
            await store.aput(ns, key, value)
        assert len(await store.asearch(("test",))) == 3
        docs = await store.asearch(("test", "docs"))
        assert {i.key for i in docs} == {"doc1", "doc2"}
        alice = await store.asearch(("test",), filter={"author": "Alice"})
        assert {i.key for i in alice} == {"doc1", "img1"}
        assert [i.key for i in await store.asearch(("test",))] == ["img1", "doc2", "doc1"]
        assert len(await store.asearch(("test",), limit=2)) == 2
        assert [i.key for i in await store.asearch(("test",), offset=2)] == ["doc1"]
        assert {i.key for i in await store.asearch(("test",), filter={"n": {"$gt": 1}})} == {
            "doc2",
            "img1",
        }
        ne = await store.asearch(("test",), filter={"author": {"$ne": "Alice"}, "n": {"$lte": 2}})
        assert [i.key for i in ne] == ["doc2"]
        assert all(i.score is None for i in await store.asearch(("test",)))
        with pytest.raises(InvalidRequest):
            await store.asearch(("test",), filter={"n": {"$near": 1}})


# ---- beyond LangGraph's tests: tenants, read-your-writes, memories ---------------------------


async def test_tenants_are_invisible_to_each_other(store_for: Store) -> None:
    async with store_for("acme", index=INDEX) as acme, store_for("globex", index=INDEX) as globex:
        await acme.aput(("users", "u1"), "pref", {"text": "likes green tea"})
        await globex.aput(("users", "u1"), "pref", {"text": "likes black coffee"})
        await acme.aput(("users", "u2"), "only-acme", {"text": "acme only"})
        a = await acme.aget(("users", "u1"), "pref")
        g = await globex.aget(("users", "u1"), "pref")
        assert a is not None and a.value["text"] == "likes green tea"
        assert g is not None and g.value["text"] == "likes black coffee"
        assert await globex.aget(("users", "u2"), "only-acme") is None
        assert await globex.alist_namespaces() == [("users", "u1")]
        hits = await globex.asearch(("users",), query="acme only")
        assert [h.key for h in hits] == ["pref"]
        await globex.adelete(("users", "u1"), "pref")
        assert await acme.aget(("users", "u1"), "pref") is not None


async def test_read_your_writes_across_stores(store_for: Store) -> None:
    async with store_for(index=INDEX) as writer, store_for(index=INDEX) as reader:
        for i in range(10):
            await writer.aput(("notes",), f"n{i}", {"text": f"note number {i} about sailing"})
            got = await reader.aget(("notes",), f"n{i}")
            assert got is not None and got.value["text"].startswith(f"note number {i}")
            hits = await reader.asearch(("notes",), query=f"note number {i} about sailing")
            assert hits[0].key == f"n{i}"


async def test_indexed_items_are_engram_memories(
    env: Env, nc: NatsClient, store_for: Store
) -> None:
    async with store_for(index=INDEX, agent_id="travel-bot") as store:
        await store.aput(
            ("users", "u1", "memories"),
            "drink",
            {"text": "The user prefers green tea in the morning", "importance": 0.9},
        )
        await store.aput(("users", "u1", "memories"), "plain", {"text": "not indexed"}, index=False)
        rows = await sql(
            env,
            "SELECT m.memory_type, m.agent_id, m.importance, m.content, m.origin,"
            " m.embedding IS NOT NULL AS has_vector FROM memory.memories m"
            " JOIN memory.store_items i USING (tenant_id, memory_id)",
        )
        assert len(rows) == 1
        row = rows[0]
        assert (row["memory_type"], row["agent_id"], row["origin"]) == (
            "semantic",
            "travel-bot",
            "store",
        )
        assert row["importance"] == pytest.approx(0.9) and row["has_vector"]
        assert '"concept": "drink"' in row["content"]

        body = {"tenant_id": "acme", "agent_id": "travel-bot", "text": "what does the user drink?"}
        msg = await nc.request(MEMORY_SEARCH_SUBJECT, json.dumps(body).encode(), timeout=10)
        reply = MEMORY_SEARCH_REPLY.validate_json(msg.data)
        assert isinstance(reply, MemorySearchReply), reply
        assert [h.text for h in reply.hits] == ["The user prefers green tea in the morning"]

        ns = ("users", "u1", "memories")
        store_memories = "SELECT text FROM memory.memories WHERE origin = 'store'"
        await store.aput(ns, "drink", {"text": "The user now drinks coffee"}, index=False)
        assert await sql(env, store_memories) == []  # no longer indexed: no memory
        await store.aput(ns, "drink", {"text": "The user now drinks coffee"})
        assert [r["text"] for r in await sql(env, store_memories)] == ["The user now drinks coffee"]
        await store.adelete(ns, "drink")
        assert await sql(env, store_memories) == []
