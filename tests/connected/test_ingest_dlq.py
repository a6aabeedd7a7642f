"""Dead letters of the ingest worker: invalid, poison and exhausted events reach
``dlq.ingest.<subject>`` with a readable reason and their original bytes, and never block
the valid events around them."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import ONE_BATCH_S, dead_letters, dlq_depth, drained, eventually

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]
Letter = tuple[str, dict[str, str], bytes]


async def send(nc: NatsClient, subject: str, data: bytes, msg_id: str | None = None) -> int:
    """Publish raw bytes to CHAT; returns the stream sequence."""
    ack = await nc.jetstream().publish(
        subject, data, headers={"Nats-Msg-Id": msg_id or str(uuid4())}
    )
    return int(ack.seq)


async def send_event(nc: NatsClient, event: Any) -> int:
    return await send(nc, event.type, event.model_dump_json().encode(), str(event.event_id))


async def message_ids(db: asyncpg.Connection) -> set[UUID]:
    return {r[0] for r in await db.fetch("SELECT message_id FROM ingest.messages")}


def broken(event: Any, change: Callable[[dict[str, Any]], object]) -> bytes:
    data = f.as_json(event)
    change(data)
    return json.dumps(data).encode()


def _delete(path: str) -> Callable[[dict[str, Any]], object]:
    *parents, last = path.split(".")

    def change(data: dict[str, Any]) -> None:
        for key in parents:
            data = data[key]
        del data[last]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], object]:
    *parents, last = path.split(".")

    def change(data: dict[str, Any]) -> None:
        for key in parents:
            data = data[key]
        data[last] = value

    return change


CID = UUID("6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10")
MID = UUID("9a3e7b52-1c4d-4f60-8b2a-3d5e6f708192")


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def _message() -> Any:
    return f.message(CID, MID, content="the bad one")


# (id, subject, bytes, fragments the reason must contain)
INVALID: list[tuple[str, str, bytes, tuple[str, ...]]] = [
    (
        "truncated-json",
        "chat.message.created",
        _message().model_dump_json().encode()[:60],
        ("contract violation", "Invalid JSON"),
    ),
    ("not-utf8", "chat.message.created", b"\xff\xfe\xfa garbage \x80", ("contract violation",)),
    ("empty-body", "chat.message.created", b"", ("contract violation", "Invalid JSON")),
    ("json-array", "chat.message.created", b"[1, 2, 3]", ("contract violation",)),
    (
        "missing-content",
        "chat.message.created",
        broken(_message(), _delete("payload.content")),
        ("payload.content", "Field required"),
    ),
    (
        "bad-role",
        "chat.message.created",
        broken(_message(), _set("payload.role", "wizard")),
        ("payload.role", "'assistant'"),
    ),
    (
        "naive-timestamp",
        "chat.message.created",
        broken(_message(), _set("occurred_at", "2026-11-01T09:00:00")),
        ("occurred_at", "time zone"),
    ),
    (
        "schema-major-2",
        "chat.message.created",
        broken(_message(), _set("schema_version", "2.0")),
        ("schema_version", "2.0", "major"),
    ),
    (
        "bad-tenant",
        "chat.message.created",
        broken(_message(), _set("tenant_id", "acme corp; DROP")),
        ("tenant_id",),
    ),
    (
        "negative-tokens",
        "chat.message.created",
        broken(_message(), _set("payload.metadata", {"tokens": -1})),
        ("tokens",),
    ),
    (
        "bad-uuid",
        "chat.message.created",
        broken(_message(), _set("payload.message_id", "not-a-uuid")),
        ("payload.message_id",),
    ),
    (
        "type-not-subject",
        "chat.message.edited",
        _message().model_dump_json().encode(),
        ("'chat.message.created'", "'chat.message.edited'"),
    ),
    (
        "unknown-type",
        "chat.message.reacted",
        broken(_message(), _set("type", "chat.message.reacted")),
        ("chat.message.reacted",),
    ),
    (
        "edit-without-editor",
        "chat.message.edited",
        broken(f.edit(MID, "x"), _set("payload.edited_by", "")),
        ("payload.edited_by",),
    ),
    (
        "missing-event-id",
        "chat.message.created",
        broken(_message(), _delete("event_id")),
        ("event_id", "Field required"),
    ),
    (
        "missing-occurred-at",
        "chat.message.edited",
        broken(f.edit(MID, "x"), _delete("occurred_at")),
        ("occurred_at", "Field required"),
    ),
    (
        "metadata-too-deep",
        "chat.session.started",
        broken(f.session_start(uuid4(), CID), _set("payload.metadata", _nested(33))),
        ("payload.metadata", "deeper than 32"),
    ),
    (
        "tokens-over-int32",
        "chat.message.created",
        broken(_message(), _set("payload.metadata", {"tokens": 2**31})),
        ("payload.metadata.tokens",),
    ),
    (
        "size-over-int64",
        "chat.file.uploaded",
        broken(f.file(message_id=None), _set("payload.size_bytes", 2**63)),
        ("payload.size_bytes",),
    ),
    (
        "file-bad-sha256",
        "chat.file.uploaded",
        broken(f.file(message_id=None), _set("payload.sha256", "XYZ")),
        ("payload.sha256",),
    ),
]


@pytest.mark.parametrize(
    ("subject", "data", "fragments"), [pytest.param(s, d, fr, id=i) for i, s, d, fr in INVALID]
)
async def test_invalid_event_is_dead_lettered_without_blocking_its_batch(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    *,
    subject: str,
    data: bytes,
    fragments: tuple[str, ...],
) -> None:
    cid, before, after = uuid4(), uuid4(), uuid4()
    await send_event(nc, f.conversation(cid))
    await send_event(nc, f.message(cid, before, content="before"))
    seq = await send(nc, subject, data)
    await send_event(nc, f.message(cid, after, content="after"))

    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # all four in the stream
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
        assert worker.stats.last_batch == 4
        assert worker.stats.dead == 1
    assert await message_ids(db) == {before, after}
    [(dlq_subject, headers, body)] = await dead_letters(nc)
    assert dlq_subject == f"dlq.ingest.{subject}"
    assert body == data
    assert headers["Engram-Dlq-Kind"] == "invalid"
    reason = headers["Engram-Dlq-Reason"]
    for fragment in fragments:
        assert fragment in reason
    assert "\n" not in reason
    assert headers["Engram-Original-Subject"] == subject
    assert headers["Engram-Original-Stream"] == "CHAT"
    assert headers["Engram-Original-Sequence"] == str(seq)
    assert headers["Engram-Deliveries"] == "1"  # never retried
    assert await dlq_depth(nc) == 1
    assert await db.fetchval("SELECT count(*) FROM ingest.inbox") == 3


async def test_many_invalid_events_in_one_batch_each_dead_lettered_once(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    valid: list[UUID] = []
    expected: dict[str, tuple[str, bytes]] = {}  # sequence -> (subject, bytes)
    await send_event(nc, f.conversation(cid))
    for _, subject, data, _fragments in INVALID:
        mid = uuid4()
        valid.append(mid)
        await send_event(nc, f.message(cid, mid, content=f"valid {mid}"))
        expected[str(await send(nc, subject, data))] = (subject, data)

    async with run_ingest() as worker:
        await eventually(lambda: drained(nc))
        assert worker.stats.dead == len(INVALID)
    assert await message_ids(db) == set(valid)
    letters = await dead_letters(nc, expect=len(INVALID))
    assert await dlq_depth(nc) == len(INVALID)
    got = {h["Engram-Original-Sequence"]: (s, h, body) for s, h, body in letters}
    assert set(got) == set(expected)
    for seq, (subject, data) in expected.items():
        dlq_subject, headers, body = got[seq]
        assert (dlq_subject, body) == (f"dlq.ingest.{subject}", data)
        assert headers["Engram-Dlq-Kind"] == "invalid"


async def test_newer_minor_version_with_unknown_fields_is_accepted(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    data = f.as_json(f.message(cid, mid, content="from the future"))
    data["schema_version"] = "1.7"
    data["trace_flags"] = {"sampled": True}
    data["payload"]["reactions"] = ["👍"]
    await send(nc, "chat.message.created", json.dumps(data).encode())
    await eventually(lambda: message_ids(db), lambda ids: mid in ids)
    assert (
        await db.fetchval("SELECT content FROM ingest.messages WHERE message_id = $1", mid)
        == "from the future"
    )
    assert await dlq_depth(nc) == 0


# --- exhausted ----------------------------------------------------------------------------


def _needs_missing_message(kind: str, mid: UUID) -> Any:
    if kind == "edit":
        return f.edit(mid, "never lands")
    if kind == "delete":
        return f.delete(mid)
    return f.file(conversation_id=uuid4(), message_id=mid)


@pytest.mark.parametrize("kind", ["edit", "delete", "file"])
async def test_event_whose_message_never_arrives_is_exhausted(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection, kind: str
) -> None:
    mid = uuid4()
    event = _needs_missing_message(kind, mid)
    data = event.model_dump_json().encode()
    seq = await send(nc, event.type, data, str(event.event_id))

    [(subject, headers, body)] = await dead_letters(nc)
    assert subject == f"dlq.ingest.{event.type}"
    assert body == data
    assert headers["Engram-Dlq-Kind"] == "exhausted"
    reason = headers["Engram-Dlq-Reason"]
    assert str(mid) in reason
    assert "4 deliveries" in reason
    assert headers["Engram-Deliveries"] == "4"  # FAST_RETRIES max_deliver
    assert headers["Engram-Original-Sequence"] == str(seq)
    await eventually(lambda: drained(nc))  # terminated: not redelivered again
    assert ingest.stats.retried == 3
    assert await dlq_depth(nc) == 1
    for table in ("messages", "message_versions", "files", "message_files", "inbox"):
        assert await db.fetchval(f"SELECT count(*) FROM ingest.{table}") == 0, table


# --- poison -------------------------------------------------------------------------------


def _poison_cases() -> list[Any]:
    # Valid by contract, refused by the database: a rule the test adds (a CHECK the
    # contract cannot know) stands for any such refusal. An id that another tenant also
    # uses is not one: ids are per tenant, and such an event is applied in its own tenant
    # (test_ingest_tenants.py, "message-in-acme-conversation" and
    # "conversation-created-with-acme-id", the two cases this test had before).
    return [
        pytest.param(
            "ALTER TABLE ingest.messages ADD CONSTRAINT refuses_poison CHECK (content <> 'poison')",
            lambda cid: f.message(cid, content="poison"),
            id="message",  # in one statement with the messages around it
        ),
        pytest.param(
            "ALTER TABLE ingest.conversations ADD CONSTRAINT refuses_poison "
            "CHECK (title IS DISTINCT FROM 'poison')",
            lambda cid: f.conversation_update(cid, title="poison"),
            id="conversation-upsert",
        ),
    ]


@pytest.mark.parametrize(("rule", "poison"), _poison_cases())
async def test_poison_event_is_isolated_and_the_batch_commits(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection, rule: str, poison: Any
) -> None:
    await db.execute(rule)
    cid, before, after, sid = uuid4(), uuid4(), uuid4(), uuid4()
    poison = poison(cid)
    await send_event(nc, f.conversation(cid, title="kept"))
    await send_event(nc, f.session_start(sid, cid))
    await send_event(nc, f.message(cid, before, metadata={"tokens": 2}))
    seq = await send_event(nc, poison)
    await send_event(nc, f.message(cid, after, metadata={"tokens": 3}))
    await send_event(nc, f.edit(before, "edited"))

    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
        assert worker.stats.dead == 1
    [(subject, headers, body)] = await dead_letters(nc)
    assert subject == f"dlq.ingest.{poison.type}"
    assert body == poison.model_dump_json().encode()
    assert headers["Engram-Dlq-Kind"] == "poison"
    assert "refuses_poison" in headers["Engram-Dlq-Reason"]
    assert headers["Engram-Original-Sequence"] == str(seq)
    assert headers["Engram-Deliveries"] == "1"  # not retried
    assert await message_ids(db) == {before, after}
    assert (
        await db.fetchval("SELECT content FROM ingest.messages WHERE message_id = $1", before)
        == "edited"
    )
    counters = await db.fetchrow(
        "SELECT message_count, total_tokens "
        "FROM ingest.conversation_sessions WHERE session_id = $1",
        sid,
    )
    assert tuple(counters) == (2, 5)
    assert poison.event_id not in {
        r[0] for r in await db.fetch("SELECT event_id FROM ingest.inbox")
    }
    assert await db.fetchval("SELECT count(*) FROM ingest.files") == 0
    assert await db.fetchval("SELECT count(*) FROM ingest.conversations") == 1
    assert await db.fetchval("SELECT title FROM ingest.conversations") == "kept"


async def test_each_stored_copy_of_an_invalid_event_is_dead_lettered_once(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """Each stored copy is its own dead letter (one per stream sequence), never more."""
    data = b'{"not": "an event"}'
    first = await send(nc, "chat.conversation.created", data)
    second = await send(nc, "chat.conversation.created", data)
    letters = await dead_letters(nc, expect=2)
    await eventually(lambda: drained(nc))
    assert sorted(h["Engram-Original-Sequence"] for _, h, _ in letters) == sorted(
        [str(first), str(second)]
    )
    assert await dlq_depth(nc) == 2
    assert ingest.stats.dead == 2
