"""query.chat.history and query.chat.conversations against the real worker, nats-server
and PostgreSQL, written from the published contract (contracts/chat_queries.py): events
go in on the CHAT stream, answers come back over core-NATS request/reply."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from nats.aio.client import Client as NatsClient

from contracts.chat_queries import (
    CHAT_CONVERSATIONS_REPLY,
    CHAT_HISTORY_REPLY,
    MAX_HISTORY_LIMIT,
    ChatConversationsReply,
    ChatHistoryReply,
)
from contracts.errors import QueryError
from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import drained, eventually, publish

T0 = f.T0


async def ask(nc: NatsClient, subject: str, **body: Any) -> Any:
    body.setdefault("tenant_id", "acme")
    body = {k: str(v) if isinstance(v, UUID) else v for k, v in body.items()}
    msg = await nc.request(subject, orjson.dumps(body), timeout=10)
    reader = CHAT_HISTORY_REPLY if subject == "query.chat.history" else CHAT_CONVERSATIONS_REPLY
    return reader.validate_json(msg.data)


async def history(nc: NatsClient, cid: UUID, **body: Any) -> ChatHistoryReply:
    reply = await ask(nc, "query.chat.history", conversation_id=cid, **body)
    assert isinstance(reply, ChatHistoryReply), reply
    return reply


async def error(nc: NatsClient, subject: str, **body: Any) -> QueryError:
    reply = await ask(nc, subject, **body)
    assert isinstance(reply, QueryError), reply
    return reply


async def stored(nc: NatsClient) -> None:
    await eventually(lambda: drained(nc), timeout=60)


def ids(reply: ChatHistoryReply) -> list[UUID]:
    return [m.message_id for m in reply.items]


async def every_page(nc: NatsClient, cid: UUID, between: Any = None, **body: Any) -> list[UUID]:
    seen: list[UUID] = []
    cursor = None
    while True:
        page = await history(nc, cid, cursor=cursor, **body)
        seen += ids(page)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        if between is not None:
            await between()


async def test_pages_have_no_gaps_or_duplicates_while_messages_arrive(
    ingest: Worker, nc: NatsClient
) -> None:
    cid = uuid4()
    first = [uuid4() for _ in range(60)]
    await publish(nc, f.conversation(cid, user_id="u-1"))
    await publish(
        nc, *(f.message(cid, m, at=T0 + timedelta(seconds=i)) for i, m in enumerate(first))
    )
    await stored(nc)
    arrived: list[UUID] = []

    async def more() -> None:  # newer messages land between two pages
        new = [uuid4() for _ in range(3)]
        n = len(first) + len(arrived)
        await publish(
            nc, *(f.message(cid, m, at=T0 + timedelta(seconds=n + i)) for i, m in enumerate(new))
        )
        arrived.extend(new)
        await stored(nc)

    newest = await every_page(nc, cid, more, limit=7)
    assert newest == first[::-1]  # every one once, in order; the newer ones are above page 1
    oldest = await every_page(nc, cid, more, limit=7, order="oldest_first")
    assert oldest[: len(first)] == first
    assert len(set(oldest)) == len(oldest) and set(oldest) <= set(first) | set(arrived)
    everything = await every_page(nc, cid, limit=MAX_HISTORY_LIMIT, order="oldest_first")
    assert everything == first + arrived and oldest == everything[: len(oldest)]


async def test_edits_come_back_as_every_version_in_order(ingest: Worker, nc: NatsClient) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, mid, content="v1"),
        f.edit(mid, "v3", at=T0 + timedelta(minutes=3), reason="later"),
        f.edit(mid, "v2", at=T0 + timedelta(minutes=2), edited_by="u-2"),  # late, earlier
    )
    await stored(nc)
    plain = await history(nc, cid)
    [message] = plain.items
    assert (message.content, message.version, message.versions) == ("v3", 3, None)
    assert message.edited_at == T0 + timedelta(minutes=3)
    [full] = (await history(nc, cid, include_versions=True)).items
    assert full.versions is not None
    assert [(v.version, v.content) for v in full.versions] == [(1, "v1"), (2, "v2"), (3, "v3")]
    assert (full.versions[1].edited_by, full.versions[2].reason) == ("u-2", "later")


async def test_soft_deleted_messages_are_hidden_unless_asked_for(
    ingest: Worker, nc: NatsClient
) -> None:
    cid = uuid4()
    keep, gone = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid),
        f.message(cid, keep, at=T0, metadata={"tokens": 3}),
        f.message(cid, gone, at=T0 + timedelta(seconds=1), metadata={"tokens": 4}),
        f.delete(gone, reason="user request"),
    )
    await stored(nc)
    hidden = await history(nc, cid)
    assert ids(hidden) == [keep] and not hidden.items[0].deleted
    shown = await history(nc, cid, include_deleted=True)
    assert ids(shown) == [gone, keep]
    deleted = shown.items[0]
    assert (deleted.deleted, deleted.deleted_by, deleted.delete_reason) == (
        True,
        "u-1",
        "user request",
    )
    # Counters count what was created (docs/ingest.md): a delete takes nothing away.
    assert (shown.conversation.message_count, shown.conversation.total_tokens) == (2, 7)
    # A cursor of the listing with deleted messages is not one of the listing without.
    page = await history(nc, cid, include_deleted=True, limit=1)
    bad = await error(nc, "query.chat.history", conversation_id=cid, cursor=page.next_cursor)
    assert bad.code == "invalid"


async def test_another_tenants_conversation_is_not_found_like_a_missing_one(
    ingest: Worker, nc: NatsClient
) -> None:
    cid = uuid4()  # the same id in two tenants: two conversations that never meet
    await publish(
        nc,
        f.conversation(cid, user_id="u-1", title="acme's"),
        f.message(cid, content="for acme only"),
        f.conversation(cid, tenant="globex", user_id="u-1", title="globex's"),
        f.message(cid, tenant="globex", content="for globex only"),
    )
    await stored(nc)
    ours = await history(nc, cid)
    theirs = await history(nc, cid, tenant_id="globex")
    assert [m.content for m in ours.items] == ["for acme only"]
    assert [m.content for m in theirs.items] == ["for globex only"]
    nobody = await error(nc, "query.chat.history", conversation_id=cid, tenant_id="initech")
    missing = await error(nc, "query.chat.history", conversation_id=uuid4(), tenant_id="initech")
    assert nobody.code == missing.code == "not_found"
    assert (nobody.hint, nobody.detail) == (missing.hint, missing.detail)
    assert nobody.message == f"no conversation {cid} in tenant 'initech'"
    listed = await ask(nc, "query.chat.conversations", tenant_id="globex", user_id="u-1")
    assert [c.title for c in listed.items] == ["globex's"]


async def test_a_page_at_the_maximum_limit_and_the_one_after(
    ingest: Worker, nc: NatsClient
) -> None:
    cid = uuid4()
    await publish(nc, f.conversation(cid))
    mids = [uuid4() for _ in range(MAX_HISTORY_LIMIT + 1)]
    await publish(
        nc, *(f.message(cid, m, at=T0 + timedelta(seconds=i)) for i, m in enumerate(mids))
    )
    await stored(nc)
    full = await history(nc, cid, limit=MAX_HISTORY_LIMIT, order="oldest_first")
    assert ids(full) == mids[:-1] and not full.size_limited and full.next_cursor
    last = await history(
        nc, cid, limit=MAX_HISTORY_LIMIT, order="oldest_first", cursor=full.next_cursor
    )
    assert ids(last) == mids[-1:] and last.next_cursor is None
    over = await error(nc, "query.chat.history", conversation_id=cid, limit=MAX_HISTORY_LIMIT + 1)
    assert over.code == "invalid" and over.detail is not None
    assert over.detail["errors"][0]["loc"] == ["request", "limit"]


async def test_a_bad_cursor_is_a_typed_error(ingest: Worker, nc: NatsClient) -> None:
    cid = uuid4()
    await publish(nc, f.conversation(cid, user_id="u-1"), f.message(cid), f.message(cid))
    await stored(nc)
    for cursor in ("garbage", "eyJub3QiOiAiYSBjdXJzb3IifQ", "a" * 1001):
        bad = await error(nc, "query.chat.history", conversation_id=cid, cursor=cursor)
        assert bad.code == "invalid" and bad.detail is not None, bad
        assert bad.detail["errors"][0]["loc"] == ["request", "cursor"]
    page = await history(nc, cid, limit=1)
    wrong = await error(nc, "query.chat.conversations", user_id="u-1", cursor=page.next_cursor)
    assert wrong.code == "invalid" and "another query" in wrong.message
    assert wrong.hint is not None and "next_cursor" in wrong.hint


async def test_a_page_stops_where_the_reply_would_not_fit(ingest: Worker, nc: NatsClient) -> None:
    cid, big = uuid4(), uuid4()
    mids = [uuid4() for _ in range(5)]
    text = "x" * 300_000  # five of them are 1.5 MB: more than one NATS message (1 MiB)
    await publish(nc, f.conversation(cid))
    for i, m in enumerate(mids):
        await publish(nc, f.message(cid, m, content=text, at=T0 + timedelta(seconds=i)))
    await stored(nc)
    first = await history(nc, cid, limit=5, order="oldest_first")
    assert first.size_limited and 0 < len(first.items) < 5 and first.next_cursor
    assert await every_page(nc, cid, limit=5, order="oldest_first") == mids
    # One message whose versions alone do not fit: too_large, and a cursor past it.
    await publish(
        nc,
        f.message(cid, big, content="y" * 600_000, at=T0 + timedelta(seconds=10)),
        f.edit(big, "z" * 600_000),
    )
    await stored(nc)
    alone = await error(nc, "query.chat.history", conversation_id=cid, include_versions=True)
    assert alone.code == "too_large" and alone.detail is not None
    assert alone.detail["message_id"] == str(big)
    after = await history(nc, cid, include_versions=True, cursor=alone.detail["next_cursor"])
    assert ids(after)[0] == mids[-1]


async def test_conversations_by_last_activity_with_their_counters(
    ingest: Worker, nc: NatsClient
) -> None:
    quiet, busy, fresh = uuid4(), uuid4(), uuid4()
    sid = uuid4()
    await publish(
        nc,
        f.conversation(quiet, user_id="u-1", agent_id="bot", at=T0),
        f.conversation(busy, user_id="u-1", agent_id="bot", at=T0),
        f.conversation(fresh, user_id="u-1", agent_id="other", at=T0 + timedelta(hours=2)),
        f.conversation(uuid4(), user_id="u-2", agent_id="bot", at=T0),
        f.message(quiet, at=T0 + timedelta(minutes=1), metadata={"tokens": 1}),
        f.session_start(sid, busy, at=T0),
        f.message(busy, at=T0 + timedelta(hours=1), metadata={"tokens": 5}),
        f.message(busy, at=T0 + timedelta(hours=3), metadata={"tokens": 6}, session_id=sid),
        f.file(conversation_id=busy),
        f.conversation_archive(quiet),
    )
    await stored(nc)
    mine = await ask(nc, "query.chat.conversations", user_id="u-1")
    assert isinstance(mine, ChatConversationsReply), mine
    assert [c.conversation_id for c in mine.items] == [busy, fresh, quiet]
    b = mine.items[0]
    assert b.last_activity_at == T0 + timedelta(hours=3)
    assert (b.message_count, b.total_tokens, b.session_count, b.active_sessions, b.file_count) == (
        2,
        11,
        1,
        1,
        1,
    )
    assert mine.items[1].last_message_at is None  # no message: its creation time
    seen, cursor = [], None
    while True:
        page = await ask(nc, "query.chat.conversations", user_id="u-1", limit=1, cursor=cursor)
        seen += [c.conversation_id for c in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [busy, fresh, quiet]
    bot = await ask(nc, "query.chat.conversations", agent_id="bot", status="active")
    assert len(bot.items) == 2 and busy in {c.conversation_id for c in bot.items}
    both = await ask(nc, "query.chat.conversations", user_id="u-1", agent_id="bot")
    assert [c.conversation_id for c in both.items] == [busy, quiet]
    archived = await ask(nc, "query.chat.conversations", user_id="u-1", status="archived")
    assert [c.status for c in archived.items] == ["archived"]
