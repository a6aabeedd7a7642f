"""Every CHAT event type through the real ingest worker, asserted on rows in ``ingest``.

Also: duplicates beyond JetStream's de-duplication, out-of-order arrival (placeholders,
retried edits/deletes/file links), and content that must round-trip exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import ONE_BATCH_S, dlq_depth, drained, eventually, publish, publish_raw

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]
T0 = f.T0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def wait_drained(nc: NatsClient) -> None:
    await eventually(lambda: drained(nc))


async def conversation_row(db: asyncpg.Connection, cid: UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM ingest.conversations WHERE conversation_id = $1", cid)


async def message_row(db: asyncpg.Connection, mid: UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM ingest.messages WHERE message_id = $1", mid)


async def session_row(db: asyncpg.Connection, sid: UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM ingest.conversation_sessions WHERE session_id = $1", sid
    )


async def versions(db: asyncpg.Connection, mid: UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM ingest.message_versions WHERE message_id = $1 ORDER BY version", mid
    )


async def retried(worker: Worker) -> int:
    return worker.stats.retried


async def inbox_ids(db: asyncpg.Connection) -> set[UUID]:
    return {r[0] for r in await db.fetch("SELECT event_id FROM ingest.inbox")}


# --- conversations ------------------------------------------------------------------------


async def test_conversation_created_stores_every_field(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    when = datetime(2026, 11, 1, 14, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    await publish(
        nc,
        f.conversation(
            cid,
            tenant="acme",
            at=when,
            title="Trip to Lisbon",
            user_id="u-123",
            agent_id="travel-bot",
            metadata={"channel": "web", "n": [1, 2]},
        ),
    )
    row = await eventually(lambda: conversation_row(db, cid))
    assert row["tenant_id"] == "acme"
    assert row["title"] == "Trip to Lisbon"
    assert row["user_id"] == "u-123"
    assert row["agent_id"] == "travel-bot"
    assert json.loads(row["metadata"]) == {"channel": "web", "n": [1, 2]}
    assert row["status"] == "active"
    assert row["is_placeholder"] is False
    assert row["created_at"] == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # same instant
    assert row["archived_at"] is None
    assert row["last_message_at"] is None


async def test_update_before_created_makes_a_placeholder_that_created_fills(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(nc, f.conversation_update(cid, at=at(5), metadata={"pinned": True}))
    row = await eventually(lambda: conversation_row(db, cid))
    assert row["is_placeholder"] is True
    assert row["title"] is None
    assert row["user_id"] is None
    assert json.loads(row["metadata"]) == {"pinned": True}
    assert row["created_at"] == at(5)
    assert row["source_updated_at"] == at(5)

    await publish(
        nc,
        f.conversation(
            cid,
            at=T0,
            title="Trip",
            user_id="u-1",
            agent_id="bot",
            metadata={"channel": "web", "pinned": False},
        ),
    )
    row = await eventually(lambda: conversation_row(db, cid), lambda r: not r["is_placeholder"])
    assert row["title"] == "Trip"
    assert row["user_id"] == "u-1"
    assert row["agent_id"] == "bot"
    # The (newer) update's key wins over the created event's default for it.
    assert json.loads(row["metadata"]) == {"channel": "web", "pinned": True}
    assert row["created_at"] == T0
    assert row["source_updated_at"] == at(5)
    assert row["status"] == "active"


async def test_title_of_an_update_that_came_first_survives_the_created_event(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(nc, f.conversation_update(cid, at=at(5), title="Renamed"))
    await eventually(lambda: conversation_row(db, cid))
    await publish(nc, f.conversation(cid, at=T0, title="Original", user_id="u-1"))
    row = await eventually(lambda: conversation_row(db, cid), lambda r: not r["is_placeholder"])
    assert row["title"] == "Renamed"
    assert row["user_id"] == "u-1"


async def test_older_update_arriving_late_does_not_overwrite_a_newer_one(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(
        nc,
        f.conversation(cid, at=T0, title="A", metadata={"channel": "web"}),
        f.conversation_update(cid, at=at(10), title="C", metadata={"pinned": True}),
        f.conversation_update(cid, at=at(5), title="B", metadata={"pinned": False, "color": "red"}),
    )
    await wait_drained(nc)
    row = await conversation_row(db, cid)
    assert row is not None
    assert row["title"] == "C"
    # The late, older update only fills keys that were missing.
    assert json.loads(row["metadata"]) == {"channel": "web", "pinned": True, "color": "red"}
    assert row["source_updated_at"] == at(10)

    await publish(nc, f.conversation_update(cid, at=at(20), title="D"))
    row = await eventually(lambda: conversation_row(db, cid), lambda r: r["title"] == "D")
    assert row["source_updated_at"] == at(20)
    assert json.loads(row["metadata"]) == {"channel": "web", "pinned": True, "color": "red"}


async def test_archive_records_the_first_archival(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(
        nc,
        f.conversation(cid, title="Trip"),
        f.conversation_archive(cid, at=at(10), archived_by="u-1"),
        f.conversation_archive(cid, at=at(30), archived_by="admin"),
    )
    await wait_drained(nc)
    row = await conversation_row(db, cid)
    assert row is not None
    assert row["status"] == "archived"
    assert row["archived_at"] == at(10)
    assert row["archived_by"] == "u-1"
    assert row["title"] == "Trip"
    assert row["is_placeholder"] is False


async def test_archive_before_created_then_created_fills_it(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    await publish(nc, f.conversation_archive(cid, at=at(10), archived_by="u-9"))
    row = await eventually(lambda: conversation_row(db, cid))
    assert row["is_placeholder"] is True
    assert row["status"] == "archived"
    assert row["title"] is None

    await publish(nc, f.conversation(cid, at=T0, title="Late", agent_id="bot"))
    row = await eventually(lambda: conversation_row(db, cid), lambda r: not r["is_placeholder"])
    assert row["title"] == "Late"
    assert row["agent_id"] == "bot"
    assert row["status"] == "archived"
    assert row["archived_at"] == at(10)
    assert row["archived_by"] == "u-9"
    assert row["created_at"] == T0


# --- messages -----------------------------------------------------------------------------


async def test_message_created_stores_every_field_and_version_one(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, parent = uuid4(), uuid4(), uuid4()
    event = f.message(
        cid,
        mid,
        content='{"answer": 42}',
        at=at(1),
        role="assistant",
        content_type="structured",
        parent_message_id=parent,
        sender_agent_id="travel-bot",
        metadata={"tokens": 12, "model": "gpt-4.1", "latency_ms": 812.5, "trace": "abc"},
    )
    await publish(nc, f.conversation(cid), event)
    row = await eventually(lambda: message_row(db, mid))
    assert row["tenant_id"] == "acme"
    assert row["conversation_id"] == cid
    assert row["role"] == "assistant"
    assert row["content"] == '{"answer": 42}'
    assert row["content_type"] == "structured"
    assert row["parent_message_id"] == parent
    assert row["sender_agent_id"] == "travel-bot"
    assert row["sender_user_id"] is None
    assert row["tokens"] == 12
    assert row["model"] == "gpt-4.1"
    assert json.loads(row["metadata"]) == {
        "tokens": 12,
        "model": "gpt-4.1",
        "latency_ms": 812.5,
        "trace": "abc",
    }
    assert row["version"] == 1
    assert row["created_at"] == at(1)
    assert row["edited_at"] is None
    assert row["deleted_at"] is None
    assert row["session_id"] is None

    [v1] = await versions(db, mid)
    assert (v1["version"], v1["content"], v1["content_type"]) == (1, '{"answer": 42}', "structured")
    assert (v1["edited_by"], v1["reason"]) == (None, None)
    assert v1["event_id"] == event.event_id
    assert v1["tenant_id"] == "acme"
    assert v1["created_at"] == at(1)

    conv = await conversation_row(db, cid)
    assert conv is not None
    assert conv["last_message_at"] == at(1)


async def test_edits_keep_every_version_with_editor_and_reason(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    first = f.edit(mid, "hotel near the old town", at=at(2), edited_by="u-1", reason="typo")
    second = f.edit(
        mid, "<b>old town</b>", at=at(3), edited_by="moderator", content_type="multimodal"
    )
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid, content="hotel near the river", at=at(1)),
        first,
        second,
    )
    row = await eventually(lambda: message_row(db, mid), lambda r: r and r["version"] == 3)
    assert row["content"] == "<b>old town</b>"
    assert row["content_type"] == "multimodal"
    assert row["edited_at"] == at(3)
    assert row["created_at"] == at(1)

    rows = await versions(db, mid)
    assert [
        (v["version"], v["content"], v["content_type"], v["edited_by"], v["reason"]) for v in rows
    ] == [
        (1, "hotel near the river", "text", None, None),
        (2, "hotel near the old town", "text", "u-1", "typo"),
        (3, "<b>old town</b>", "multimodal", "moderator", None),
    ]
    assert [v["event_id"] for v in rows[1:]] == [first.event_id, second.event_id]
    assert [v["created_at"] for v in rows] == [at(1), at(2), at(3)]
    assert {v["tenant_id"] for v in rows} == {"acme"}


async def test_delete_is_soft_and_the_first_delete_is_recorded(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid, content="secret", at=at(1)),
        f.edit(mid, "less secret", at=at(2)),
        f.delete(mid, at=at(4), deleted_by="moderator", reason="spam"),
        f.delete(mid, at=at(9), deleted_by="u-1", reason="again"),
    )
    await wait_drained(nc)
    row = await message_row(db, mid)
    assert row is not None
    assert row["deleted_at"] == at(4)
    assert row["deleted_by"] == "moderator"
    assert row["delete_reason"] == "spam"
    assert row["content"] == "less secret"  # kept
    assert row["version"] == 2
    assert [v["content"] for v in await versions(db, mid)] == ["secret", "less secret"]


# --- files --------------------------------------------------------------------------------


async def test_file_uploaded_with_a_message_is_linked(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, fid = uuid4(), uuid4(), uuid4()
    digest = "ab" * 32
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid),
        f.file(
            fid,
            at=at(3),
            conversation_id=cid,
            message_id=mid,
            uploaded_by="u-1",
            filename="itinerary.pdf",
            mime_type="application/pdf",
            size_bytes=5_000_000_000,
            sha256=digest,
            storage_uri="s3://bucket/itinerary.pdf",
            extracted_text="Day 1: Alfama",
            metadata={"pages": 3},
        ),
    )
    row = await eventually(
        lambda: db.fetchrow("SELECT * FROM ingest.files WHERE file_id = $1", fid)
    )
    assert row["tenant_id"] == "acme"
    assert row["conversation_id"] == cid
    assert row["uploaded_by"] == "u-1"
    assert row["filename"] == "itinerary.pdf"
    assert row["mime_type"] == "application/pdf"
    assert row["size_bytes"] == 5_000_000_000
    assert row["sha256"] == digest
    assert row["storage_uri"] == "s3://bucket/itinerary.pdf"
    assert row["extracted_text"] == "Day 1: Alfama"
    assert json.loads(row["metadata"]) == {"pages": 3}
    assert row["created_at"] == at(3)
    links = await db.fetch("SELECT message_id, file_id, tenant_id FROM ingest.message_files")
    assert [tuple(link) for link in links] == [(mid, fid, "acme")]


async def test_file_uploaded_without_a_message(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    lone, shared, cid = uuid4(), uuid4(), uuid4()
    await publish(
        nc,
        f.file(lone, filename="notes.txt", mime_type="text/plain", size_bytes=0),
        f.file(shared, at=at(3), conversation_id=cid, filename="map.png", mime_type="image/png"),
    )
    await wait_drained(nc)
    rows = {r["file_id"]: r for r in await db.fetch("SELECT * FROM ingest.files")}
    assert set(rows) == {lone, shared}
    assert rows[lone]["conversation_id"] is None
    assert rows[lone]["size_bytes"] == 0
    assert rows[shared]["conversation_id"] == cid
    assert await db.fetchval("SELECT count(*) FROM ingest.message_files") == 0
    # The conversation it names does not exist yet: a placeholder stands in for it.
    conv = await conversation_row(db, cid)
    assert conv is not None
    assert conv["is_placeholder"] is True
    assert conv["created_at"] == at(3)


# --- sessions -----------------------------------------------------------------------------


async def test_session_counters_from_named_and_active_sessions(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, other_cid, sid, other_sid = uuid4(), uuid4(), uuid4(), uuid4()
    m_active, m_named, m_no_tokens, m_after = uuid4(), uuid4(), uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.conversation(other_cid),
        f.session_start(
            sid, cid, at=at(1), user_id="u-1", agent_id="bot", metadata={"client": "ios"}
        ),
        f.session_start(other_sid, other_cid, at=at(1)),
        f.message(cid, m_active, at=at(2), metadata={"tokens": 10}),  # falls back to sid
        f.message(cid, m_named, at=at(3), session_id=sid, metadata={"tokens": 5}),
        f.message(cid, m_no_tokens, at=at(4)),
        f.session_end(sid, cid, at=at(30), reason="timeout"),
        f.message(cid, m_after, at=at(31), metadata={"tokens": 100}),  # no active session
    )
    await wait_drained(nc)
    session = await session_row(db, sid)
    assert session is not None
    assert (session["message_count"], session["total_tokens"]) == (3, 15)
    assert session["status"] == "ended"
    assert session["started_at"] == at(1)
    assert session["ended_at"] == at(30)
    assert session["end_reason"] == "timeout"
    assert (session["user_id"], session["agent_id"]) == ("u-1", "bot")
    assert json.loads(session["metadata"]) == {"client": "ios"}
    assert session["tenant_id"] == "acme"
    assert session["conversation_id"] == cid

    other = await session_row(db, other_sid)
    assert other is not None
    assert (other["message_count"], other["total_tokens"], other["status"]) == (0, 0, "active")

    owners = dict(
        await db.fetch(
            "SELECT message_id, session_id FROM ingest.messages WHERE conversation_id = $1", cid
        )
    )
    assert owners == {m_active: sid, m_named: sid, m_no_tokens: sid, m_after: None}


async def test_message_naming_a_session_before_it_started(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, sid, mid = uuid4(), uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid, at=at(2), session_id=sid, metadata={"tokens": 7}),
    )
    session = await eventually(lambda: session_row(db, sid))
    assert session["started_at"] is None
    assert session["status"] == "active"
    assert (session["message_count"], session["total_tokens"]) == (1, 7)
    assert session["conversation_id"] == cid

    await publish(
        nc,
        f.session_start(sid, cid, at=at(1), user_id="u-1"),
        f.message(cid, at=at(3), metadata={"tokens": 3}),
    )  # falls back to sid
    session = await eventually(lambda: session_row(db, sid), lambda s: s["message_count"] == 2)
    assert session["started_at"] == at(1)
    assert session["user_id"] == "u-1"
    assert session["total_tokens"] == 10


async def test_session_ended_before_it_started(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, sid = uuid4(), uuid4()
    await publish(nc, f.session_end(sid, cid, at=at(30), reason="closed", agent_id="bot"))
    session = await eventually(lambda: session_row(db, sid))
    assert session["status"] == "ended"
    assert session["started_at"] is None
    assert session["ended_at"] == at(30)
    assert session["end_reason"] == "closed"
    conv = await conversation_row(db, cid)
    assert conv is not None
    assert conv["is_placeholder"] is True

    await publish(
        nc, f.session_start(sid, cid, at=at(1), user_id="u-1", metadata={"client": "web"})
    )
    session = await eventually(lambda: session_row(db, sid), lambda s: s["started_at"])
    assert session["started_at"] == at(1)
    assert session["status"] == "ended"  # the start does not reopen it
    assert session["ended_at"] == at(30)
    assert (session["user_id"], session["agent_id"]) == ("u-1", "bot")
    assert json.loads(session["metadata"]) == {"client": "web"}


# --- duplicates ---------------------------------------------------------------------------


async def test_same_event_stored_twice_by_jetstream_is_applied_once(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, sid, mid, fid = uuid4(), uuid4(), uuid4(), uuid4()
    events = [
        f.conversation(cid, title="Trip"),
        f.session_start(sid, cid, at=at(1)),
        f.message(cid, mid, at=at(2), metadata={"tokens": 9}),
        f.edit(mid, "edited", at=at(3)),
        f.file(fid, message_id=mid, conversation_id=cid),
        f.conversation_update(cid, at=at(5), metadata={"pinned": True}),
    ]
    for event in events:
        data = event.model_dump_json().encode()
        # Two different Nats-Msg-Ids: JetStream cannot tell they are the same event.
        await publish_raw(nc, event.type, data, msg_id=f"first-{event.event_id}")
        await publish_raw(nc, event.type, data, msg_id=f"second-{event.event_id}")
    # A third copy with a repeated msg id is dropped by JetStream itself.
    await publish_raw(
        nc,
        events[2].type,
        events[2].model_dump_json().encode(),
        msg_id=f"first-{events[2].event_id}",
    )
    assert (await nc.jetstream().stream_info("CHAT")).state.messages == 2 * len(events)

    await wait_drained(nc)
    assert ingest.stats.duplicates == len(events)
    assert await db.fetchval("SELECT count(*) FROM ingest.messages") == 1
    row = await message_row(db, mid)
    assert row is not None
    assert (row["content"], row["version"]) == ("edited", 2)
    assert len(await versions(db, mid)) == 2
    session = await session_row(db, sid)
    assert session is not None
    assert (session["message_count"], session["total_tokens"]) == (1, 9)
    assert await db.fetchval("SELECT count(*) FROM ingest.files") == 1
    assert await db.fetchval("SELECT count(*) FROM ingest.message_files") == 1
    assert await inbox_ids(db) == {e.event_id for e in events}
    assert await dlq_depth(nc) == 0


async def test_duplicates_within_one_batch_are_applied_once(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, sid, mid = uuid4(), uuid4(), uuid4()
    created = f.message(cid, mid, at=at(2), session_id=sid, metadata={"tokens": 4})
    edited = f.edit(mid, "v2", at=at(3))
    same_message_new_event = f.message(
        cid, mid, content="other", at=at(2), session_id=sid, metadata={"tokens": 40}
    )
    await publish(nc, f.conversation(cid), f.session_start(sid, cid, at=at(1)))

    async def twice(event: Any) -> None:
        for copy in ("a", "b"):
            await publish_raw(
                nc, event.type, event.model_dump_json().encode(), msg_id=f"{copy}-{event.event_id}"
            )

    await twice(created)
    # Next to the original in one run of message.created: one INSERT sees both.
    await publish(nc, same_message_new_event)
    await twice(edited)

    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # all in the stream: one batch
        await wait_drained(nc)
        assert worker.stats.last_batch == 7
    row = await message_row(db, mid)
    assert row is not None
    assert (row["content"], row["version"], row["tokens"]) == ("v2", 2, 4)
    assert [v["content"] for v in await versions(db, mid)] == ["hello", "v2"]
    session = await session_row(db, sid)
    assert session is not None
    assert (session["message_count"], session["total_tokens"]) == (1, 4)
    assert await dlq_depth(nc) == 0


async def test_same_message_id_under_a_new_event_id_adds_no_row(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, sid, mid = uuid4(), uuid4(), uuid4()
    first = f.message(cid, mid, content="first", at=at(2), session_id=sid, metadata={"tokens": 3})
    again = f.message(
        cid,
        mid,
        content="second",
        at=at(6),
        session_id=sid,
        metadata={"tokens": 7},
        role="assistant",
    )
    await publish(nc, f.conversation(cid), f.session_start(sid, cid, at=at(1)), first)
    await eventually(lambda: message_row(db, mid))
    await publish(nc, again)
    await wait_drained(nc)
    assert await db.fetchval("SELECT count(*) FROM ingest.messages") == 1
    row = await message_row(db, mid)
    assert row is not None
    assert (row["content"], row["role"], row["tokens"], row["created_at"]) == (
        "first",
        "user",
        3,
        at(2),
    )
    [v1] = await versions(db, mid)
    assert (v1["content"], v1["event_id"]) == ("first", first.event_id)
    session = await session_row(db, sid)
    assert session is not None
    assert (session["message_count"], session["total_tokens"]) == (1, 3)
    assert {first.event_id, again.event_id} <= await inbox_ids(db)
    assert await dlq_depth(nc) == 0


# --- out of order -------------------------------------------------------------------------


async def test_message_before_its_conversation_creates_a_placeholder(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(nc, f.message(cid, mid, tenant="globex", at=at(7), content="early"))
    row = await eventually(lambda: message_row(db, mid))
    assert row["content"] == "early"
    conv = await conversation_row(db, cid)
    assert conv is not None
    assert conv["is_placeholder"] is True
    assert conv["tenant_id"] == "globex"
    assert conv["title"] is None
    assert conv["created_at"] == at(7)
    assert conv["last_message_at"] == at(7)

    await publish(nc, f.conversation(cid, tenant="globex", at=T0, title="Trip", user_id="u-1"))
    conv = await eventually(lambda: conversation_row(db, cid), lambda c: not c["is_placeholder"])
    assert (conv["title"], conv["user_id"]) == ("Trip", "u-1")
    assert conv["created_at"] == T0
    assert conv["last_message_at"] == at(7)
    assert await db.fetchval("SELECT count(*) FROM ingest.conversations") == 1


async def test_edit_and_delete_before_their_message_land_when_it_arrives(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    edit = f.edit(mid, "edited early", at=at(3), edited_by="u-7", reason="typo")
    delete = f.delete(mid, at=at(4), deleted_by="u-8", reason="oops")
    # More deliveries than the default test policy: the message is published only after
    # both were retried, and must arrive before they are exhausted.
    async with run_ingest(max_deliver=30, retry_max_s=0.1) as worker:
        await publish(nc, edit, delete)
        await eventually(lambda: retried(worker), lambda n: n >= 2)
        assert await message_row(db, mid) is None
        assert not {edit.event_id, delete.event_id} & await inbox_ids(db)

        await publish(nc, f.conversation(cid), f.message(cid, mid, content="original", at=at(1)))
        await wait_drained(nc)
    row = await message_row(db, mid)
    assert row is not None
    assert (row["content"], row["version"]) == ("edited early", 2)
    assert (row["deleted_at"], row["deleted_by"], row["delete_reason"]) == (at(4), "u-8", "oops")
    rows = await versions(db, mid)
    assert [(v["version"], v["content"], v["edited_by"], v["reason"]) for v in rows] == [
        (1, "original", None, None),
        (2, "edited early", "u-7", "typo"),
    ]
    assert {edit.event_id, delete.event_id} <= await inbox_ids(db)
    assert await dlq_depth(nc) == 0


async def test_file_before_its_message_is_linked_when_it_arrives(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, fid = uuid4(), uuid4(), uuid4()
    async with run_ingest(max_deliver=30, retry_max_s=0.1) as worker:
        await publish(nc, f.file(fid, conversation_id=cid, message_id=mid))
        await eventually(lambda: retried(worker), lambda n: n >= 1)
        assert await db.fetchval("SELECT count(*) FROM ingest.files") == 0
        await publish(nc, f.conversation(cid), f.message(cid, mid))
        await wait_drained(nc)
    assert await db.fetchval("SELECT count(*) FROM ingest.files WHERE file_id = $1", fid) == 1
    links = await db.fetch("SELECT message_id, file_id, tenant_id FROM ingest.message_files")
    assert [tuple(link) for link in links] == [(mid, fid, "acme")]
    assert await dlq_depth(nc) == 0


# --- content ------------------------------------------------------------------------------

UNICODE = (
    "👩‍👩‍👧‍👦 🇵🇹 🏳️‍🌈 — שָׁלוֹם עוֹלָם \u200f(RTL)\u200e مرحبا بالعالم — "
    "中文字符 日本語のテキスト 한국어 — 𠀋𡈽𪚲 (CJK ext. B) — "
    'e\u0301 (combining) — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 — \u2028line\u2029para\ttab "quote" \\ back'  # noqa: RUF001
)


async def test_unicode_round_trips_exactly(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid, escaped_mid, fid = uuid4(), uuid4(), uuid4(), uuid4()
    escaped = f.message(cid, escaped_mid, content=UNICODE[::-1])
    await publish(
        nc,
        f.conversation(cid, title="שלום 👋 中文"),
        f.message(cid, mid, content=UNICODE, metadata={"note": "ünïcødé ✓"}),
        f.edit(mid, UNICODE + " ✏️ 編集", edited_by="ユーザー", reason="تصحيح"),
        f.file(fid, message_id=mid, filename="旅程表 📄.pdf"),
    )
    # The same text with every non-ASCII character \u-escaped in the JSON.
    await publish_raw(
        nc,
        escaped.type,
        json.dumps(f.as_json(escaped), ensure_ascii=True).encode("ascii"),
        msg_id=str(escaped.event_id),
    )
    await wait_drained(nc)
    row = await message_row(db, mid)
    assert row is not None
    assert row["content"] == UNICODE + " ✏️ 編集"
    assert json.loads(row["metadata"])["note"] == "ünïcødé ✓"
    rows = await versions(db, mid)
    assert [v["content"] for v in rows] == [UNICODE, UNICODE + " ✏️ 編集"]
    assert (rows[1]["edited_by"], rows[1]["reason"]) == ("ユーザー", "تصحيح")
    escaped_row = await message_row(db, escaped_mid)
    assert escaped_row is not None
    assert escaped_row["content"] == UNICODE[::-1]
    conv = await conversation_row(db, cid)
    assert conv is not None
    assert conv["title"] == "שלום 👋 中文"
    assert (
        await db.fetchval("SELECT filename FROM ingest.files WHERE file_id = $1", fid)
        == "旅程表 📄.pdf"
    )
    # Code points, not bytes: Postgres counts the same characters Python does.
    assert await db.fetchval(
        "SELECT length(content) FROM ingest.message_versions WHERE message_id = $1 AND version = 1",
        mid,
    ) == len(UNICODE)


async def test_a_one_megabyte_message_round_trips_exactly(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    block = "lorem ipsum dolor sit amet " * 370 + "é€😀中"  # 9 994 characters
    content = block * 100
    assert len(content) > 990_000
    assert len(content.encode()) < 1_010_000
    cid, mid = uuid4(), uuid4()
    event = f.message(cid, mid, content=content, metadata={"tokens": 250_000})
    assert len(event.model_dump_json().encode()) < 1024 * 1024  # fits the default max_payload
    await publish(nc, f.conversation(cid), event)
    await wait_drained(nc)
    row = await db.fetchrow(
        "SELECT m.content, v.content AS v1, octet_length(m.content) AS bytes "
        "FROM ingest.messages m JOIN ingest.message_versions v USING (message_id) "
        "WHERE message_id = $1 AND v.version = 1",
        mid,
    )
    assert row is not None
    assert row["content"] == content
    assert row["v1"] == content
    assert row["bytes"] == len(content.encode())
    assert await dlq_depth(nc) == 0


# --- known bugs ---------------------------------------------------------------------------


async def test_older_edit_arriving_late_does_not_overwrite_the_newer_content(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid, content="v1", at=at(1)),
        f.edit(mid, "newest", at=at(3)),
        f.edit(mid, "older", at=at(2)),
    )
    await wait_drained(nc)
    assert sorted(v["content"] for v in await versions(db, mid)) == ["newest", "older", "v1"]
    row = await message_row(db, mid)
    assert row is not None
    assert (row["content"], row["edited_at"]) == ("newest", at(3))


async def test_a_repeated_message_id_does_not_split_the_batch(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    events = [
        f.conversation(cid),
        *(f.message(cid, content=f"m{i}") for i in range(5)),
        f.message(cid, mid, content="first"),
        f.message(cid, mid, content="again"),
        *(f.message(cid, content=f"n{i}") for i in range(5)),
    ]
    await publish(nc, *events)
    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:
        await wait_drained(nc)
        assert worker.stats.batches == 1
    row = await message_row(db, mid)
    assert row is not None
    assert row["content"] == "first"
    assert await db.fetchval("SELECT count(*) FROM ingest.messages") == 11
    # One transaction for the whole batch: every inbox row has the same now().
    assert await db.fetchval("SELECT count(DISTINCT received_at) FROM ingest.inbox") == 1
