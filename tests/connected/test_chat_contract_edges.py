"""What the published CHAT contract promises at its edges, tried as an outside producer
would: exactly-once holds by the contract (event_id is required, so a retry is always the
same event, with or without a Nats-Msg-Id header), and a stray U+0000 is stored, not
lost."""

from __future__ import annotations

import json
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.envelope import NUL_RECORD_KEY
from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import dead_letters, dlq_depth, drained, eventually

pytestmark = pytest.mark.connected


async def _versions(db: asyncpg.Connection, mid: object) -> list[str]:
    rows = await db.fetch(
        "SELECT content FROM ingest.message_versions WHERE message_id = $1 ORDER BY version", mid
    )
    return [r[0] for r in rows]


async def test_an_envelope_without_event_id_is_invalid_not_applied_twice(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """Before, a missing event_id got a fresh id on each delivery: a producer's retry
    without the id made two message versions."""
    cid, mid = uuid4(), uuid4()
    js = nc.jetstream()
    await js.publish("chat.conversation.created", f.conversation(cid).model_dump_json().encode())
    await js.publish("chat.message.created", f.message(cid, mid).model_dump_json().encode())
    edit = f.as_json(f.edit(mid, "retried"))
    del edit["event_id"]
    for _ in range(2):  # the producer's retry: same bytes, no Nats-Msg-Id
        await js.publish("chat.message.edited", json.dumps(edit).encode())
    letters = await dead_letters(nc, expect=2)
    assert {h["Engram-Dlq-Kind"] for _, h, _ in letters} == {"invalid"}
    assert all("event_id: Field required" in h["Engram-Dlq-Reason"] for _, h, _ in letters)
    await eventually(lambda: drained(nc))
    assert await _versions(db, mid) == ["hello"]


async def test_a_retry_without_nats_msg_id_is_applied_once(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """JetStream cannot drop a retry that carries no Nats-Msg-Id; the inbox must."""
    cid, mid = uuid4(), uuid4()
    js = nc.jetstream()
    edit = f.edit(mid, "edited once")
    for event in (f.conversation(cid), f.message(cid, mid), edit, edit, edit):
        await js.publish(event.type, event.model_dump_json().encode())  # no headers
    await eventually(lambda: _versions(db, mid), lambda v: v == ["hello", "edited once"])
    await eventually(lambda: drained(nc))
    assert await _versions(db, mid) == ["hello", "edited once"]
    assert ingest.stats.duplicates == 2
    assert await dlq_depth(nc) == 0


async def test_a_stray_nul_is_stored_as_u_fffd_and_recorded(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, sid = uuid4(), uuid4(), uuid4()
    js = nc.jetstream()
    events = [
        f.conversation(cid, title="trip\x00plan", metadata={"k\x00": "v"}),
        f.session_start(sid, cid),
        f.message(cid, mid, content="a\x00b", metadata={"tokens": 2, "note": "x\x00"}),
        f.edit(mid, "edited\x00"),
    ]
    for event in events:
        await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())
    await eventually(lambda: _versions(db, mid), lambda v: len(v) == 2)
    title, conv_meta = await db.fetchrow(
        "SELECT title, metadata FROM ingest.conversations WHERE conversation_id = $1", cid
    )
    assert title == "trip\ufffdplan"
    assert json.loads(conv_meta) == {
        "k\ufffd": "v",
        NUL_RECORD_KEY: ["payload.title", "payload.metadata.k\ufffd"],
    }
    content, meta = await db.fetchrow(
        "SELECT content, metadata FROM ingest.messages WHERE message_id = $1", mid
    )
    assert content == "edited\ufffd"
    assert json.loads(meta)[NUL_RECORD_KEY] == ["payload.content", "payload.metadata.note"]
    assert await _versions(db, mid) == ["a\ufffdb", "edited\ufffd"]
    assert await dlq_depth(nc) == 0
    assert ingest.stats.dead == 0
