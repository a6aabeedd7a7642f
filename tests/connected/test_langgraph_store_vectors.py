"""EngramStore: LangGraph's vector search and TTL store tests, ported (see
test_langgraph_store.py). Texts are sentences, not LangGraph's character-count fake
embeddings: engram embeds with its real model, so an expectation says which text is
nearer in meaning."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Env
from tests.connected.store_fixtures import (  # noqa: F401
    INDEX,
    Store,
    expire_now,
    expires_at,
    sql,
    store_for_fixture,
)

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]


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
        await expire_now(env, ("omit", "expired"), "e")
        assert await store.aget(("omit", "expired"), "e") is None
        assert await store.aget(("omit", "control"), "c") is not None
        assert await store.asearch(("omit", "expired")) == []
        assert await store.alist_namespaces(prefix=("omit",)) == [("omit", "control")]

        ns = ("refresh",)
        for key in ("expired", "live_get", "live_search"):
            await store.aput(ns, key, {"n": key})
        await expire_now(env, ns, "expired")
        expired_before = await expires_at(env, ns, "expired")
        get_before = await expires_at(env, ns, "live_get")
        search_before = await expires_at(env, ns, "live_search")
        assert await store.aget(ns, "expired", refresh_ttl=True) is None
        assert "expired" not in {i.key for i in await store.asearch(ns, refresh_ttl=True)}
        assert await expires_at(env, ns, "expired") == expired_before  # not resurrected
        assert await store.aget(ns, "live_get", refresh_ttl=True) is not None
        assert await expires_at(env, ns, "live_get") > get_before
        assert await expires_at(env, ns, "live_search") > search_before

        page = ("page",)
        for key in ("a", "expired", "b", "c"):
            await store.aput(page, key, {"k": key})
        await expire_now(env, page, "expired")
        for key, secs in {"a": 1, "expired": 2, "b": 3, "c": 4}.items():
            await sql(
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
        left = await sql(
            env, "SELECT count(*) AS n FROM memory.store_items WHERE expires_at < now()"
        )
        assert left[0]["n"] == 0
        assert await store.aget(("omit", "control"), "c") is not None


async def items(env: Env, ns: tuple[str, ...]) -> set[str]:
    rows = await sql(env, "SELECT key FROM memory.store_items WHERE namespace = $1", list(ns))
    return {r["key"] for r in rows}


async def test_a_connected_store_sweeps_by_itself_until_closed(env: Env, store_for: Store) -> None:
    """``connect(ttl={"sweep_interval_minutes": ...})``: expired items are deleted (not
    only hidden) with no call, and the sweeper ends with the store. ``sweep_ttl`` runs
    from another thread and is refused on the store's own loop."""
    ns = ("swept", "by-itself")
    every = {"default_ttl": 60, "sweep_interval_minutes": 0.005}  # a sweep every 0.3 s
    before = asyncio.all_tasks()
    async with store_for("sweeper", ttl=every) as store:
        for key in ("old", "new", "after"):
            await store.aput(ns, key, {"k": key})
        await expire_now(env, ns, "old")
        deadline = asyncio.get_running_loop().time() + 15
        while "old" in await items(env, ns):
            assert asyncio.get_running_loop().time() < deadline, "never swept"
            await asyncio.sleep(0.1)
        assert await items(env, ns) == {"new", "after"}
    left = asyncio.all_tasks() - before
    sweepers = [t for t in left if "sweep" in t.get_coro().__qualname__]
    assert sweepers == []  # it ended with the store

    await expire_now(env, ns, "after")

    async with store_for("sweeper") as store:  # no sweeper of its own
        assert await asyncio.to_thread(store.sweep_ttl) == 1
        assert await items(env, ns) == {"new"}
        with pytest.raises(asyncio.InvalidStateError):
            store.sweep_ttl()  # from the store's own loop
