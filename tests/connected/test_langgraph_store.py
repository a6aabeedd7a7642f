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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from langgraph.store.base import GetOp, Item, ListNamespacesOp, PutOp, SearchOp
from nats.aio.client import Client as NatsClient

from contracts.memory_search import MEMORY_SEARCH_REPLY, MEMORY_SEARCH_SUBJECT, MemorySearchReply
from engram_client.errors import InvalidRequest
from engram_client.store import EngramStore
from services.runtime.nats_auth import PRODUCER, inbox_prefix
from services.runtime.service import Worker
from tests.conftest import Env

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]
Store = Callable[..., AbstractAsyncContextManager[EngramStore]]
INDEX: dict[str, Any] = {"dims": 384, "fields": ["text"]}


@pytest.fixture(name="store_for")
def store_for_fixture(env: Env, memory: Worker) -> Store:
    """``async with store_for(tenant, **options)``: a store on its own connection, as an
    agent's (the ``producer`` NATS user; no database login)."""

    @asynccontextmanager
    async def make(tenant: str = "acme", **options: Any) -> AsyncIterator[EngramStore]:
        async with EngramStore.connect(
            env.nats_login(PRODUCER),
            tenant_id=tenant,
            nats_options={"inbox_prefix": inbox_prefix(PRODUCER)},
            **options,
        ) as store:
            yield store

    return make


async def _sql(env: Env, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(env.database_url)  # the superuser: past the tenant wall
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _expire_now(env: Env, ns: tuple[str, ...], key: str) -> None:
    """Backdate an item's expiry (unswept), as LangGraph's _aexpire_now does."""
    await _sql(
        env,
        "UPDATE memory.store_items SET expires_at = now() - interval '1 minute'"
        " WHERE namespace = $1 AND key = $2",
        list(ns),
        key,
    )


async def _expires_at(env: Env, ns: tuple[str, ...], key: str) -> datetime:
    rows = await _sql(
        env,
        "SELECT expires_at FROM memory.store_items WHERE namespace = $1 AND key = $2",
        list(ns),
        key,
    )
    return rows[0]["expires_at"]  # type: ignore[no-any-return]


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


# ---- vector search --------------------------------------------------------------------------


async def test_vector_insert_update_and_index_false(store_for: Store) -> None:
    async with store_for(index={"dims": 384}) as store:  # default fields: the whole value
        await store.aput(("test",), "doc1", {"text": "a zebra runs across the savanna"})
        await store.aput(("test",), "doc2", {"text": "my dog loves to chase the ball"})
        await store.aput(("test",), "doc3", {"text": "birds sing in the morning"})
        first = await store.asearch(("test",), query="zebras in Africa")
        assert first[0].key == "doc1"
        score = first[0].score
        assert score is not None and all(r.score is not None and r.score <= score for r in first)

        await store.aput(("test",), "doc1", {"text": "a puppy plays with a ball"})
        after = await store.asearch(("test",), query="zebras in Africa")
        assert next(r.score for r in after if r.key == "doc1") < score  # type: ignore[operator]
        dogs = await store.asearch(("test",), query="a dog playing ball")
        assert {r.key for r in dogs[:2]} == {"doc1", "doc2"}

        await store.aput(("test",), "doc4", {"text": "a dog playing ball"}, index=False)
        top = await store.asearch(("test",), query="a dog playing ball", limit=3)
        assert "doc4" not in {r.key for r in top}
        everything = await store.asearch(("test",), query="a dog playing ball", limit=10)
        assert everything[-1].key == "doc4" and everything[-1].score is None  # unindexed: last


async def test_vector_search_with_filters(store_for: Store) -> None:
    async with store_for(index=INDEX) as store:
        docs = [
            ("doc1", {"text": "a red apple", "color": "red", "score": 4.5}),
            ("doc2", {"text": "a red sports car", "color": "red", "score": 3.0}),
            ("doc3", {"text": "a green apple", "color": "green", "score": 4.0}),
            ("doc4", {"text": "a blue car", "color": "blue", "score": 3.5}),
        ]
        for key, value in docs:
            await store.aput(("test",), key, value)
        red = await store.asearch(("test",), query="apple fruit", filter={"color": "red"})
        assert [r.key for r in red] == ["doc1", "doc2"]
        cars = await store.asearch(("test",), query="automobile", filter={"color": "red"})
        assert [r.key for r in cars] == ["doc2", "doc1"]
        gt = await store.asearch(("test",), query="blue vehicle", filter={"score": {"$gt": 3.2}})
        assert len(gt) == 3 and gt[0].key == "doc4"
        both = await store.asearch(
            ("test",), query="apple", filter={"score": {"$gte": 4.0}, "color": "green"}
        )
        assert [r.key for r in both] == ["doc3"]


async def test_vector_search_pagination_and_edge_cases(store_for: Store) -> None:
    async with store_for(index=INDEX) as store:
        for i in range(5):
            await store.aput(("test",), f"doc{i}", {"text": f"test document number {i}"})
        page1 = await store.asearch(("test",), query="test", limit=2)
        page2 = await store.asearch(("test",), query="test", limit=2, offset=2)
        assert len(page1) == len(page2) == 2
        assert not {r.key for r in page1} & {r.key for r in page2}
        assert len(await store.asearch(("test",), query="test", limit=10)) == 5

    async with store_for("edge", index=INDEX) as store:
        await store.aput(("test",), "doc1", {"text": "test document"})
        perfect = (await store.asearch(("test",), query="test document"))[0].score
        assert perfect == pytest.approx(1.0, abs=1e-3)
        for query in ("", None):
            results = await store.asearch(("test",), query=query)
            assert len(results) == 1 and results[0].score is None
        for query in ("foo " * 100, "test!@#$%^&*()"):
            results = await store.asearch(("test",), query=query)
            assert len(results) == 1 and results[0].score is not None
            assert results[0].score < perfect


async def test_embed_with_path_and_operation_fields(store_for: Store) -> None:
    async with store_for(index={"dims": 384, "fields": ["key0", "key1", "key3"]}) as store:
        # doc1 has two vectors (key0 absent), doc2 three; key2 is never indexed.
        await store.aput(
            ("test",), "doc1", {"key1": "ocean waves", "key2": "tax forms", "key3": "mountains"}
        )
        await store.aput(
            ("test",),
            "doc2",
            {
                "key0": "jazz music",
                "key1": "cooking pasta",
                "key2": "violins",
                "key3": "ocean waves",
            },
        )
        tie = await store.asearch(("test",), query="ocean waves")
        assert len(tie) == 2 and tie[0].key != tie[1].key
        assert tie[0].score == pytest.approx(tie[1].score, abs=1e-3)  # the best vector counts
        jazz = await store.asearch(("test",), query="jazz music")
        assert jazz[0].key == "doc2" and jazz[0].score > jazz[1].score  # type: ignore[operator]
        unindexed = await store.asearch(("test",), query="tax forms")
        assert all(r.score is not None and r.score < 0.9 for r in unindexed)

        # put(index=[...]) overrides the store's fields; index=False stores no vector.
        await store.aput(
            ("ops",), "doc3", {"key0": "ripe bananas", "key5": "chess"}, index=["key5"]
        )
        await store.aput(("ops",), "doc4", {"key0": "hhh"}, index=False)
        chess = await store.asearch(("ops",), query="chess")
        assert chess[0].key == "doc3" and chess[0].score == pytest.approx(1.0, abs=1e-3)
        assert chess[1].key == "doc4" and chess[1].score is None
        plain = await store.asearch(("ops",))
        assert len(plain) == 2 and all(r.score is None for r in plain)


async def test_search_sorting_and_non_ascii(store_for: Store) -> None:
    async with store_for(index={"dims": 384, "fields": ["key1"]}) as store:
        await store.aput(("test", "M"), "M", {"key1": "mountain climbing"})
        for i in range(30):
            await store.aput(("test", "A"), f"A{i}", {"key1": "no"})
            await store.aput(("test", "Z"), f"Z{i}", {"key1": "no"})
        results = await store.asearch(("test",), query="mountain climbing", limit=10)
        assert len({r.key for r in results}) == 10
        assert results[0].key == "M" and results[0].score > results[1].score  # type: ignore[operator]

        texts = ["这是中文", "これは日本語です", "이건 한국어야", "Это русский", "यह रूसी है"]
        for i, text in enumerate(texts, start=1):
            await store.aput(("user_123", "memories"), str(i), {"key1": text})
        for i, text in enumerate(texts, start=1):
            hits = await store.asearch(("user_123", "memories"), query=text)
            assert hits[0].key == str(i)


# ---- TTL --------------------------------------------------------------------------------------

TTL_SECONDS = 4
TTL_MINUTES = TTL_SECONDS / 60


async def test_ttl_refresh_on_read(store_for: Store) -> None:
    ttl = {"default_ttl": TTL_MINUTES, "refresh_on_read": True}
    async with store_for(ttl=ttl) as store:
        ns = ("foo",)
        await store.aput(ns, key="item1", value={"foo": "bar"})
        await asyncio.sleep(TTL_SECONDS - 1.5)
        assert await store.aget(ns, key="item1", refresh_ttl=True) is not None
        await asyncio.sleep(TTL_SECONDS - 1.5)
        assert len(await store.asearch(ns, refresh_ttl=True)) == 1
        await asyncio.sleep(TTL_SECONDS - 1.5)
        assert await store.aget(ns, key="item1", refresh_ttl=False) is not None
        await asyncio.sleep(TTL_SECONDS - 1.5)
        assert await store.asearch(ns, refresh_ttl=False) == []
        assert await store.aget(ns, "item1") is None


async def test_expired_items_are_omitted_and_swept(env: Env, store_for: Store) -> None:
    async with store_for(ttl={"default_ttl": 60, "refresh_on_read": True}) as store:
        await store.aput(("omit", "expired"), "e", {"data": "gone"})
        await store.aput(("omit", "control"), "c", {"data": "keep"}, ttl=None)
        await _expire_now(env, ("omit", "expired"), "e")
        assert await store.aget(("omit", "expired"), "e") is None
        assert await store.aget(("omit", "control"), "c") is not None
        assert await store.asearch(("omit", "expired")) == []
        assert await store.alist_namespaces(prefix=("omit",)) == [("omit", "control")]

        ns = ("refresh",)
        for key in ("expired", "live_get", "live_search"):
            await store.aput(ns, key, {"n": key})
        await _expire_now(env, ns, "expired")
        expired_before = await _expires_at(env, ns, "expired")
        get_before = await _expires_at(env, ns, "live_get")
        search_before = await _expires_at(env, ns, "live_search")
        assert await store.aget(ns, "expired", refresh_ttl=True) is None
        assert "expired" not in {i.key for i in await store.asearch(ns, refresh_ttl=True)}
        assert await _expires_at(env, ns, "expired") == expired_before  # not resurrected
        assert await store.aget(ns, "live_get", refresh_ttl=True) is not None
        assert await _expires_at(env, ns, "live_get") > get_before
        assert await _expires_at(env, ns, "live_search") > search_before

        page = ("page",)
        for key in ("a", "expired", "b", "c"):
            await store.aput(page, key, {"k": key})
        await _expire_now(env, page, "expired")
        for key, secs in {"a": 1, "expired": 2, "b": 3, "c": 4}.items():
            await _sql(
                env,
                "UPDATE memory.store_items SET updated_at = now() - $1 * interval '1 second'"
                " WHERE namespace = $2 AND key = $3",
                secs,
                list(page),
                key,
            )
        assert [i.key for i in await store.asearch(page, limit=2)] == ["a", "b"]
        assert [i.key for i in await store.asearch(page, limit=2, offset=2)] == ["c"]

        assert await store.asweep_ttl() == 3  # e, refresh/expired, page/expired
        left = await _sql(
            env, "SELECT count(*) AS n FROM memory.store_items WHERE expires_at < now()"
        )
        assert left[0]["n"] == 0
        assert await store.aget(("omit", "control"), "c") is not None


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
        rows = await _sql(
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
        assert await _sql(env, store_memories) == []  # no longer indexed: no memory
        await store.aput(ns, "drink", {"text": "The user now drinks coffee"})
        assert [r["text"] for r in await _sql(env, store_memories)] == [
            "The user now drinks coffee"
        ]
        await store.adelete(ns, "drink")
        assert await _sql(env, store_memories) == []
