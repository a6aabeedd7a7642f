"""The audit writer records every message of every stream once, malformed ones too."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from services.runtime.bus import STREAMS
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.audit_fixtures import RunAudit, recorded, verify
from tests.helpers import eventually, publish, publish_raw

pytestmark = pytest.mark.connected


def envelope(subject: str, tenant: str = "acme", **payload: Any) -> tuple[str, dict[str, Any]]:
    """A raw envelope for streams whose contracts other services own (audit needs none)."""
    return subject, {
        "event_id": str(uuid4()),
        "type": subject,
        "occurred_at": "2026-11-01T09:00:00.123456789Z",
        "tenant_id": tenant,
        "producer": "tests",
        "schema_version": "1.3",
        "correlation_id": str(uuid4()),
        "causation_id": None,
        "payload": payload,
        "future_field": {"added": "in 1.3"},
    }


async def publish_families(nc: NatsClient) -> dict[str, Any]:
    """One message of every subject family, a DLQ copy, and three malformed ones."""
    cid, mid, sid = uuid4(), uuid4(), uuid4()
    chat = [
        f.conversation(cid, title="Trip"),
        f.session_start(sid, cid),
        f.message(cid, mid, content="hello", session_id=sid, metadata={"tokens": 3}),
        f.edit(mid, "hello again"),
        f.delete(mid),
        f.file(conversation_id=cid, extracted_text="Day 1"),
        f.conversation_update(cid, title="Lisbon"),
        f.session_end(sid, cid),
        f.conversation_archive(cid),
    ]
    await publish(nc, *chat)
    others = [
        envelope("memory.write", content="likes rivers", kind="semantic"),
        envelope("memory.forget", memory_id=str(uuid4())),
        envelope("memory.consolidate", user_id="u-1"),
        envelope("state.patch", patch=[{"op": "add", "path": "/a", "value": 1.5e-7}]),
        envelope("state.checkpoint", tenant="globex", version=3),
        envelope("state.restore", tenant="globex", version=2),
        envelope("engram.embedding.ready", vector=[0.25, -0.5, 1e20], model="m"),
    ]
    js = nc.jetstream()
    for subject, body in others:
        await js.publish(
            subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": body["event_id"]}
        )
    # What a service dead-letters: the original bytes (same event_id!) and reason headers.
    original = chat[2]
    await js.publish(
        "dlq.ingest.chat.message.created",
        original.model_dump_json().encode(),
        headers={
            "Engram-Dlq-Kind": "poison",
            "Engram-Dlq-Reason": "tests",
            "Nats-Msg-Id": f"ingest:CHAT:{uuid4()}",
        },
    )
    await publish_raw(nc, "chat.message.created", b"\xff\xfe not json at all")
    await publish_raw(nc, "memory.write", b'["a", "json", "array"]')
    bad_tenant = {"event_id": "not-a-uuid", "tenant_id": "has spaces", "payload": {"x": 1}}
    await publish_raw(nc, "state.patch", json.dumps(bad_tenant).encode())
    return {"chat": chat, "others": others, "dlq_of": original, "total": len(chat) + 7 + 1 + 3}


async def test_every_family_recorded_once_and_chained(
    audit: Worker, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    sent = await publish_families(nc)
    await eventually(lambda: recorded(db), sent["total"].__eq__)

    rows = await db.fetch("SELECT * FROM audit.events ORDER BY tenant_id, position")
    by_stream: dict[str, int] = {}
    for row in rows:
        by_stream[row["stream"]] = by_stream.get(row["stream"], 0) + 1
    assert by_stream == {"CHAT": 10, "MEMORY": 4, "STATE": 4, "ENGRAM": 1, "DLQ": 1}
    assert len({(r["stream"], r["stream_seq"]) for r in rows}) == len(rows)

    # A valid CHAT event: every envelope field in its column, the payload as JSONB.
    message = sent["chat"][2]
    row = next(r for r in rows if r["stream"] == "CHAT" and r["event_id"] == message.event_id)
    assert (row["tenant_id"], row["type"], row["subject"]) == ("acme", message.type, message.type)
    assert row["producer"] == "tests" and row["occurred_at"] == message.occurred_at
    assert json.loads(row["payload"]) == message.model_dump(mode="json")["payload"]
    assert row["headers"] and json.loads(row["headers"]) == {"Nats-Msg-Id": message.msg_id}
    # The DLQ copy is a message of its own, with the same event id and the reason headers.
    copy = next(r for r in rows if r["stream"] == "DLQ")
    assert copy["event_id"] == message.event_id and copy["tenant_id"] == "acme"
    assert json.loads(copy["headers"])["Engram-Dlq-Kind"] == "poison"
    # Unknown newer fields and nanosecond times are kept; numbers survive jsonb.
    memory = next(r for r in rows if r["type"] == "memory.write")
    assert json.loads(memory["extra"]) == {"future_field": {"added": "in 1.3"}}
    assert memory["occurred_at"] == datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)
    # Malformed: raw bytes and their digest; a JSON non-object; a bad tenant and event id.
    malformed = [r for r in rows if r["tenant_id"] == "_malformed"]
    assert sorted(bytes(r["raw"]) for r in malformed) == [
        b'["a", "json", "array"]',
        b"\xff\xfe not json at all",
    ]
    unknown = next(r for r in rows if r["tenant_id"] == "_unknown")
    assert json.loads(unknown["extra"]) == {"event_id": "not-a-uuid", "tenant_id": "has spaces"}
    assert unknown["event_id"] is None and json.loads(unknown["payload"]) == {"x": 1}

    # Each tenant's chain: positions 1..n, linked, and verify agrees.
    for tenant in {r["tenant_id"] for r in rows}:
        positions = [r["position"] for r in rows if r["tenant_id"] == tenant]
        assert positions == list(range(1, len(positions) + 1))
    result = await verify(env)
    assert result.ok, result.breaks
    assert result.rows == sent["total"] and result.chains == 4  # acme, globex, _malformed, _unknown


async def test_redelivery_of_everything_records_nothing_twice(
    run_audit: RunAudit, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    async with run_audit():
        sent = await publish_families(nc)
        await eventually(lambda: recorded(db), sent["total"].__eq__)
    # A new durable per stream delivers every message again from the start: the consumers
    # and the positions the worker would re-create them from are both forgotten.
    js = nc.jetstream()
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream.name, "audit")
    await db.execute("DELETE FROM audit.consumer_positions")

    async def backlog() -> int:
        total = 0
        for stream in STREAMS:
            try:
                info = await js.consumer_info(stream.name, "audit")
            except NotFoundError:
                return -1
            total += info.num_pending + info.num_ack_pending
        return total

    async with run_audit() as worker:
        await eventually(backlog, (0).__eq__)
        assert worker.stats.duplicates == sent["total"]
    assert await recorded(db) == sent["total"]
    assert (await verify(env)).ok


async def test_append_only_for_the_writer_role_and_for_superusers(
    audit: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    await publish(nc, f.conversation(uuid4()))
    await eventually(lambda: recorded(db), (1).__eq__)
    async with db.transaction():
        await db.execute("SET LOCAL ROLE engram_audit")
        for sql in (
            "UPDATE audit.events SET producer = 'x'",
            "DELETE FROM audit.events",
            "TRUNCATE audit.events",
            "DELETE FROM audit.chain_heads",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with db.transaction():
                    await db.execute(sql)
    # The owner (a superuser here) is refused by the trigger, in replica mode too.
    await db.execute("SET session_replication_role = replica")
    partition = await db.fetchval("SELECT tableoid::regclass::text FROM audit.events LIMIT 1")
    for sql in (
        "UPDATE audit.events SET producer = 'x'",
        "DELETE FROM audit.events",
        "TRUNCATE audit.events",
        f"TRUNCATE {partition}",
        f"DELETE FROM {partition}",
    ):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await db.execute(sql)
    await db.execute("RESET session_replication_role")
    assert await recorded(db) == 1


async def test_record_id_is_the_message_not_the_event(
    audit: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """The same event re-published after JetStream's duplicate window is a second bus
    message (an operator replaying a fixed DLQ body): recorded twice, same event id."""
    event = f.conversation(uuid4())
    js = nc.jetstream()
    data = event.model_dump_json().encode()
    await js.publish(event.type, data, headers={"Nats-Msg-Id": "first"})
    await js.publish(event.type, data, headers={"Nats-Msg-Id": "replayed"})
    await eventually(lambda: recorded(db), (2).__eq__)
    rows = await db.fetch("SELECT event_id, record_id, stream_seq FROM audit.events")
    assert {r["event_id"] for r in rows} == {event.event_id}
    assert len({r["record_id"] for r in rows}) == 2
    assert isinstance(rows[0]["record_id"], UUID)


async def test_a_configuration_error_is_retried_not_dead_lettered(
    run_audit: RunAudit, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """Until an operator fixes a missing grant, records wait (nak with a growing delay):
    dead-lettering them would feed the DLQ stream, which this writer records too."""
    await db.execute("REVOKE INSERT ON audit.events FROM engram_audit")
    async with run_audit(retry_base_s=0.05, retry_max_s=0.2) as worker:
        await publish(nc, f.conversation(uuid4()), f.conversation(uuid4()))
        await eventually(lambda: asyncio.sleep(0, worker.stats.retried), (4).__le__)
        assert await recorded(db) == 0
        await db.execute("GRANT INSERT ON audit.events TO engram_audit")
        await eventually(lambda: recorded(db), (2).__eq__)
    assert (await nc.jetstream().stream_info("DLQ")).state.messages == 0
    assert worker.stats.dead == 0
