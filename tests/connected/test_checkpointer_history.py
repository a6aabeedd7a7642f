"""Checkpoints, restore, time travel (at a version, at a time), diff, history, tenants."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
from nats.aio.client import Client as NatsClient

from contracts.state_queries import StateDiffReply, StateGetReply, StateHistoryReply
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    add,
    checkpoint,
    checkpointer_fixture,
    patch,
    request,
    restore,
    run_checkpointer_fixture,
    wait_version,
)
from tests.helpers import dead_letters, publish


async def local(nc: NatsClient, **at: object) -> dict[str, object]:
    reply = await request(nc, "query.state.get", StateGetReply, **at)
    assert reply.status == "ok", reply
    return reply.state.local


async def test_checkpoint_and_restore_make_new_versions(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cp = uuid4()
    await publish(
        nc,
        patch([add("/local/step", 1)]),
        patch([add("/local/step", 2)]),
        checkpoint(cp, label="before booking", retention="permanent"),
        patch([add("/local/step", 3), add("/local/oops", True)]),
    )
    await wait_version(db, 3)
    await publish(nc, restore(checkpoint_id=cp, reason="tool loop went wrong"))
    await wait_version(db, 4)
    assert await local(nc) == {"step": 2}
    await publish(nc, restore(version=1), restore(version=3))  # in one batch, most likely
    await wait_version(db, 6)
    assert await local(nc) == {"step": 3, "oops": True}
    assert await local(nc, at_version=5) == {"step": 1}
    rows = await db.fetch(
        "SELECT version, kind, trigger, restored_from_version, "
        "restored_from_checkpoint FROM checkpoint.transitions ORDER BY version"
    )
    assert [r["kind"] for r in rows] == [
        "update",
        "update",
        "update",
        "restore",
        "restore",
        "restore",
    ]
    assert (rows[3]["restored_from_checkpoint"], rows[3]["trigger"]) == (cp, "tool loop went wrong")
    assert rows[4]["restored_from_version"] == 1
    saved = await db.fetchrow(
        "SELECT version, label, retention, checkpoint_type "
        "FROM checkpoint.checkpoints WHERE checkpoint_id = $1",
        cp,
    )
    assert tuple(saved.values()) == (2, "before booking", "permanent", "manual")


async def test_restore_of_unknown_checkpoint_is_dead_lettered(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc, patch([add("/local/a", 1)]), restore(checkpoint_id=uuid4()), restore(version=7)
    )
    found = await dead_letters(nc, "dlq.checkpointer.>", expect=2)
    reasons = " | ".join(h["Engram-Dlq-Reason"] for _, h, _ in found)
    assert "does not exist for this state" in reasons
    assert "cannot restore: version 7 does not exist (current is 1)" in reasons


async def test_time_travel_at_a_version_and_at_a_time(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    marks = []
    for i in range(1, 5):
        await publish(nc, patch([add("/local/n", i)]))
        await wait_version(db, i)
        await asyncio.sleep(0.02)
        marks.append(datetime.now(UTC))
        await asyncio.sleep(0.02)
    before = await db.fetchval("SELECT min(applied_at) FROM checkpoint.transitions")
    for i, mark in enumerate(marks, 1):
        assert await local(nc, at_time=mark) == {"n": i}
        assert await local(nc, at_version=i) == {"n": i}
    assert await local(nc, at_version=0) == {}
    reply = await request(nc, "query.state.get", StateGetReply, at_time=before.replace(year=2000))
    assert reply.state is not None and reply.state.version == 0
    missing = await request(nc, "query.state.get", StateGetReply, at_version=9)
    assert missing.code == "not_found"


async def test_diff_and_history(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc,
        *(patch([add(f"/local/k{i}", i)]) for i in range(7)),
        patch([{"op": "remove", "path": "/local/k0"}]),
    )
    await wait_version(db, 8)
    diff = await request(nc, "query.state.diff", StateDiffReply, from_version=2, to_version=8)
    assert diff.status == "ok"
    assert diff.patch == [{"op": "remove", "path": "/local/k0"}] + [
        {"op": "add", "path": f"/local/k{i}", "value": i} for i in range(2, 7)
    ]
    back = await request(nc, "query.state.diff", StateDiffReply, from_version=8, to_version=7)
    assert back.patch == [{"op": "add", "path": "/local/k0", "value": 0}]
    page = await request(nc, "query.state.history", StateHistoryReply, limit=3)
    assert [t.version for t in page.items] == [8, 7, 6]
    assert page.next_before_version == 6 and page.current_version == 8
    assert page.items[0].patch == [{"op": "remove", "path": "/local/k0"}]
    assert page.items[0].inverse == [{"op": "add", "path": "/local/k0", "value": 0}]
    rest = await request(
        nc,
        "query.state.history",
        StateHistoryReply,
        limit=10,
        before_version=6,
        include_patches=False,
    )
    assert [t.version for t in rest.items] == [5, 4, 3, 2, 1]
    assert rest.next_before_version is None and rest.items[0].patch is None


async def test_queries_are_scoped_by_tenant(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    await publish(
        nc,
        patch([add("/local/secret", "acme's")]),
        patch([add("/local/secret", "globex's")], tenant="globex"),
    )
    await wait_version(db, 1)
    await wait_version(db, 1, tenant="globex")
    other = await request(nc, "query.state.get", StateGetReply, tenant_id="initech")
    assert other.code == "not_found"
    mine = await request(nc, "query.state.get", StateGetReply, tenant_id="globex")
    assert mine.state is not None and mine.state.local == {"secret": "globex's"}
    bad = await request(nc, "query.state.get", StateGetReply, tenant_id="")
    assert bad.code == "invalid"
    # The second wall: row-level security for the service's role.
    conn = await asyncpg.connect(env.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE engram_checkpointer")
            await conn.execute("SELECT set_config('engram.tenant_id', 'acme', true)")
            rows = await conn.fetch(
                "SELECT tenant_id, local_state::text FROM checkpoint.agent_states"
            )
            assert [(r[0], json.loads(r[1])) for r in rows] == [("acme", {"secret": "acme's"})]
            assert await conn.fetchval("SELECT count(*) FROM checkpoint.transitions") == 1
    finally:
        await conn.close()
