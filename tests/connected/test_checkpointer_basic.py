"""Patches, merge patches, conflicts, invalid patches, snapshots, session end."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.chat import SessionEnded, SessionEndedPayload
from contracts.state import StateConflict
from contracts.state_queries import StateGetReply, StateHistoryReply
from services.runtime.worker import Worker
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    AGENT,
    TENANT,
    USER,
    add,
    checkpointer_fixture,
    patch,
    request,
    run_checkpointer_fixture,
    version_of,
    wait_version,
)
from tests.helpers import dead_letters, eventually, publish, publish_raw


async def test_patch_then_merge_patch(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc,
        patch([add("/session/cart", []), add("/session/cart/-", {"sku": "A1"})]),
        patch(merge={"persistent": {"currency": "EUR"}, "session": {"draft": "x"}}),
        patch(merge={"session": {"draft": None}}),
    )
    await wait_version(db, 3)
    reply = await request(nc, "query.state.get", StateGetReply)
    assert reply.status == "ok"
    assert reply.state.version == 3
    assert reply.state.session == {"cart": [{"sku": "A1"}]}
    assert reply.state.persistent == {"currency": "EUR"}
    assert reply.modification_count == 5
    rows = await db.fetch(
        "SELECT version, kind, patch::text, inverse::text, trigger, actor "
        "FROM checkpoint.transitions ORDER BY version"
    )
    assert [r["kind"] for r in rows] == ["update", "merge", "merge"]
    assert json.loads(rows[2]["patch"]) == [{"op": "remove", "path": "/session/draft"}]
    assert json.loads(rows[2]["inverse"]) == [{"op": "add", "path": "/session/draft", "value": "x"}]
    assert (rows[0]["trigger"], rows[0]["actor"]) == (None, "tests")  # None: the event type
    state = await db.fetchrow(
        "SELECT session_state::text, version, size_bytes, "
        "modification_count FROM checkpoint.agent_states"
    )
    assert json.loads(state["session_state"]) == {"cart": [{"sku": "A1"}]}


async def test_stale_patch_is_a_conflict_not_lost(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    first, stale = patch([add("/local/a", 1)], expected=0), patch([add("/local/a", 2)], expected=0)
    await publish(nc, first)
    await wait_version(db, 1)
    await publish(nc, stale, patch([add("/local/b", 3)], expected=1))
    await wait_version(db, 2)
    conflict = await db.fetchrow("SELECT * FROM checkpoint.conflicts")
    assert conflict["event_id"] == stale.event_id
    assert (conflict["expected_version"], conflict["current_version"]) == (0, 1)
    # Published on ENGRAM for the sender, after the commit, through the outbox.
    sub = await nc.jetstream().pull_subscribe(
        "engram.state.conflict",
        stream="ENGRAM",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    msgs = await sub.fetch(1, timeout=10)
    event = StateConflict.model_validate_json(msgs[0].data)
    assert event.causation_id == stale.event_id
    assert event.payload.current_version == 1
    assert event.payload.expected_version == 0
    assert msgs[0].headers and msgs[0].headers["Nats-Msg-Id"] == event.msg_id
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM checkpoint.event_outbox"), lambda n: n == 0
    )
    reply = await request(nc, "query.state.get", StateGetReply)
    assert reply.state is not None and reply.state.local == {"a": 1, "b": 3}


async def test_invalid_patches_go_to_the_dlq_with_the_reason(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(nc, patch([add("/local/a", 1)]))
    await wait_version(db, 1)
    bad_path = patch([add("/local/a", 2), {"op": "replace", "path": "/local/nope", "value": 1}])
    failed_test = patch([{"op": "test", "path": "/local/a", "value": 99}])
    bad_shape = patch([{"op": "remove", "path": "/session"}])
    await publish(nc, bad_path, failed_test, bad_shape, patch([add("/local/c", 3)]))
    await publish_raw(
        nc,
        "state.patch",
        b'{"type":"state.patch","tenant_id":"acme","producer":"t","payload":'
        b'{"user_id":"u-1","agent_id":"bot","patch":[{"op":"bogus","path":"/x"}]}}',
    )
    found = await dead_letters(nc, "dlq.checkpointer.>", expect=4)
    reasons = {h["Engram-Dlq-Kind"] + ": " + h["Engram-Dlq-Reason"] for _, h, _ in found}
    assert any(
        "poison" in r
        and "PatchRejected" in r
        and "operation 1 (replace '/local/nope')" in r
        and "does not exist" in r
        for r in reasons
    ), reasons
    assert any("operation 0 (test '/local/a')" in r and "test failed" in r for r in reasons)
    assert any("partitions" in r for r in reasons)
    assert any(r.startswith("invalid") for r in reasons)
    await wait_version(db, 2)
    reply = await request(nc, "query.state.get", StateGetReply)
    assert reply.state is not None and reply.state.local == {"a": 1, "c": 3}


async def test_automatic_snapshots_every_n_versions(
    run_checkpointer: object, nc: NatsClient, db: asyncpg.Connection
) -> None:
    async with run_checkpointer(snapshot_every=5, compress_above=64):  # type: ignore[operator]
        await publish(nc, *(patch([add(f"/shared/k{i}", "v" * 50)]) for i in range(12)))
        await wait_version(db, 12)
    rows = await db.fetch(
        "SELECT version, checkpoint_type, compression, retention, size_bytes, "
        "length(snapshot) AS stored FROM checkpoint.checkpoints "
        "ORDER BY version"
    )
    assert [(r["version"], r["checkpoint_type"]) for r in rows] == [
        (5, "automatic"),
        (10, "automatic"),
    ]
    assert all(r["compression"] == "zstd" and r["stored"] < r["size_bytes"] for r in rows)


async def test_session_end_clears_the_session_partition(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(
        nc,
        patch([add("/session/cart", [1]), add("/local/keep", True)]),
        patch([add("/session/x", 1)], agent="other"),
        patch([add("/session/y", 1)], user="someone-else"),
    )
    await wait_version(db, 1)
    await wait_version(db, 1, agent="other")
    await wait_version(db, 1, user="someone-else")
    ended = SessionEnded(
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        tenant_id=TENANT,
        producer="chat",
        payload=SessionEndedPayload(
            session_id=uuid4(), conversation_id=uuid4(), user_id=USER, agent_id=AGENT
        ),
    )
    await publish(nc, ended)
    await wait_version(db, 2)
    reply = await request(nc, "query.state.get", StateGetReply)
    assert reply.state is not None
    assert (reply.state.session, reply.state.local) == ({}, {"keep": True})
    row = await db.fetchrow(
        "SELECT kind, trigger, event_id FROM checkpoint.transitions WHERE version = 2"
    )
    assert (row["kind"], row["trigger"], row["event_id"]) == ("reset", None, ended.event_id)
    history = await request(nc, "query.state.history", StateHistoryReply, limit=1)
    assert (history.items[0].trigger, history.items[0].op_count) == ("chat.session.ended", 1)
    # No agent named: every agent of that user.
    await publish(
        nc,
        SessionEnded(
            event_id=uuid4(),
            occurred_at=datetime.now(UTC),
            tenant_id=TENANT,
            producer="chat",
            payload=SessionEndedPayload(session_id=uuid4(), conversation_id=uuid4(), user_id=USER),
        ),
    )
    await wait_version(db, 2, agent="other")
    assert await version_of(db, user="someone-else") == 1
    assert await version_of(db) == 2  # session already empty: no new version
    assert await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM checkpoint.inbox WHERE subject = 'chat.session.ended'"
        ),
        lambda n: n == 2,
    )
