"""Replies at the limit of one NATS message (max_payload, 1 MiB): every query answers,
over the real bus, with a shortened result or a `too_large` error that says what to ask
instead; never a dropped reply (a client timeout). Every reply validates against the
published schema."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.replies import REPLY_MARGIN
from services.runtime.worker import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    AGENT,
    TENANT,
    add,
    checkpointer_fixture,
    patch,
    run_checkpointer_fixture,
    wait_version,
)
from tests.connected.embedder_fixtures import Running
from tests.connected.memory_fixtures import write
from tests.connected.test_query_errors import (  # noqa: F401
    STATE_KEY,
    ask,
    published_fixture,
)
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

KB = 1024
BIG = 700 * KB  # one value per patch: each event fits in 1 MiB, three make a 2 MiB state


def too_large(reply: dict[str, Any], *hint_words: str) -> None:
    assert reply["status"] == "error" and reply["code"] == "too_large", reply
    assert reply["hint"] and all(w in reply["hint"] for w in hint_words), reply


async def test_a_state_over_one_message(
    checkpointer: Worker,
    nc: NatsClient,
    db: asyncpg.Connection,
    published: dict[str, dict[str, Any]],
) -> None:
    limit = nc.max_payload - REPLY_MARGIN
    await publish(
        nc,
        *(patch([add(f"/{part}/big", part[0] * BIG)]) for part in ("local", "shared", "session")),
    )
    await wait_version(db, 3)
    # query.state.get: the whole state (2.1 MB) does not fit; each partition does
    whole = await ask(nc, published, "query.state.get", STATE_KEY)
    too_large(whole, "partitions")
    assert whole["detail"]["size"] > 2 * BIG and whole["detail"]["limit"] == limit
    assert whole["detail"]["partition_bytes"]["local"] > BIG
    one = await ask(nc, published, "query.state.get", {**STATE_KEY, "partitions": ["shared"]})
    assert one["status"] == "ok" and one["state"]["shared"]["big"] == "s" * BIG
    assert one["state"]["local"] is None and one["state"]["version"] == 3
    # query.state.history: pages stop before the limit and give the cursor
    seen, before = [], None
    while True:
        page = await ask(
            nc,
            published,
            "query.state.history",
            {**STATE_KEY, "limit": 50, "before_version": before},
        )
        assert page["status"] == "ok", page
        seen += [t["version"] for t in page["items"]]
        assert len(json.dumps(page)) <= limit
        before = page["next_before_version"]
        if before is None:
            break
        assert page["size_limited"] and len(page["items"]) == 1
    assert seen == [3, 2, 1]
    # query.state.diff: 2.1 MB of patch does not fit; a shorter range does
    too_large(
        await ask(
            nc, published, "query.state.diff", {**STATE_KEY, "from_version": 0, "to_version": 3}
        ),
        "shorter range",
    )
    short = await ask(
        nc, published, "query.state.diff", {**STATE_KEY, "from_version": 2, "to_version": 3}
    )
    assert short["status"] == "ok" and short["patch"][0]["path"] == "/session/big"


async def test_one_transition_over_one_message(
    checkpointer: Worker,
    nc: NatsClient,
    db: asyncpg.Connection,
    published: dict[str, dict[str, Any]],
) -> None:
    await publish(
        nc,
        patch([add("/local/big", "a" * BIG)]),
        patch([{"op": "replace", "path": "/local/big", "value": "b" * BIG}]),
    )
    await wait_version(db, 2)
    # version 2's patch and inverse are 1.4 MB together
    too_large(await ask(nc, published, "query.state.history", STATE_KEY), "include_patches")
    bare = await ask(nc, published, "query.state.history", {**STATE_KEY, "include_patches": False})
    assert bare["status"] == "ok" and [t["version"] for t in bare["items"]] == [2, 1]


async def test_memory_search_over_one_message(
    embedder: Running,
    memory: Any,
    nc: NatsClient,
    db: asyncpg.Connection,
    published: dict[str, dict[str, Any]],
) -> None:
    # ~400 KB each: words of 200 four-byte characters (few tokens, many bytes)
    text = " ".join(["\U0001f600" * 200] * 495)
    assert 380 * KB < len(text.encode()) < 400 * KB and len(text) < 99_990
    events = [
        write(f"{text} {i}", content={"concept": f"smile {i}", "definition": "smiles"})
        for i in range(3)
    ]
    await publish(nc, *events)
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM memory.memories WHERE embedding IS NOT NULL"),
        lambda c: c >= 3,
        timeout=120,
    )
    reply = await ask(
        nc,
        published,
        "query.memory.search",
        {"tenant_id": TENANT, "agent_id": "travel-bot", "text": "smile", "top_k": 3},
    )
    assert reply["status"] == "ok", json.dumps(reply)[:600]  # not the hits' texts
    assert len(reply["hits"]) == 2 and reply["omitted"] == 1, (len(reply["hits"]), reply["omitted"])
    assert len(json.dumps(reply, ensure_ascii=False).encode()) <= nc.max_payload - REPLY_MARGIN


async def test_embed_over_one_message(
    embedder: Running,
    nc: NatsClient,
    published: dict[str, dict[str, Any]],
) -> None:
    texts = [f"text number {i}" for i in range(256)]  # 256 vectors: about 2 MB of JSON
    reply = await ask(nc, published, "query.embed", {"texts": texts})
    too_large(reply, "texts")
    fits = reply["detail"]["fits"]
    assert 1 <= fits < 256
    ok = await ask(nc, published, "query.embed", {"texts": texts[:fits]})
    assert ok["status"] == "ok" and len(ok["vectors"]) == fits
