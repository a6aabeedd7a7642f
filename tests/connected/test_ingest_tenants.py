"""Tenants through the real ingest worker: interleaved tenants never mix, and an event
naming another tenant's row is dead-lettered as poison while its batch still commits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.service import Worker
from tests import factories as f
from tests.helpers import (
    ONE_BATCH_S,
    dead_letters,
    dlq_depth,
    drained,
    eventually,
    publish,
    send_event,
)

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]
TENANTS = ("acme", "globex", "initech")
T0 = f.T0


def at(minutes: float) -> Any:
    return T0 + timedelta(minutes=minutes)


# --- interleaved tenants ------------------------------------------------------------------


def tenant_story(tenant: str, tokens: int) -> list[list[Any]]:
    """One tenant's events in steps; step i of every tenant is published together."""
    cid, sid, fid = uuid4(), uuid4(), uuid4()
    mids = [uuid4() for _ in range(3)]
    messages = [
        f.message(
            cid,
            mid,
            tenant=tenant,
            content=f"{tenant}:message {i}",
            at=at(2 + i),
            sender_user_id=f"{tenant}-user",
            metadata={"tokens": tokens * (i + 1)},
        )
        for i, mid in enumerate(mids)
    ]
    conversation = f.conversation(
        cid,
        tenant=tenant,
        title=f"{tenant} chat",
        user_id=f"{tenant}-user",
        metadata={"tenant": tenant},
    )
    start = f.session_start(sid, cid, tenant=tenant, at=at(1), user_id=f"{tenant}-user")
    if tenant == "globex":  # its messages come before its conversation and session
        steps = [[messages[0]], [conversation, start], messages[1:]]
    else:
        steps = [[conversation, start], [messages[0]], messages[1:]]
    return [
        *steps,
        [
            f.edit(
                mids[0],
                f"{tenant}:edited",
                tenant=tenant,
                at=at(10),
                edited_by=f"{tenant}-editor",
                reason=f"{tenant} reason",
            )
        ],
        [f.delete(mids[1], tenant=tenant, at=at(11), deleted_by=f"{tenant}-mod")],
        [
            f.file(
                fid,
                tenant=tenant,
                conversation_id=cid,
                message_id=mids[2],
                filename=f"{tenant}.pdf",
                uploaded_by=f"{tenant}-user",
                metadata={"tenant": tenant},
            )
        ],
        [
            f.conversation_update(
                cid, tenant=tenant, at=at(20), title=f"{tenant} renamed", metadata={"owner": tenant}
            )
        ],
        [f.session_end(sid, cid, tenant=tenant, at=at(30), reason=f"{tenant} done")],
    ]


async def test_three_tenants_interleaved_never_mix(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    tokens = {"acme": 1, "globex": 10, "initech": 100}
    stories = {t: tenant_story(t, tokens[t]) for t in TENANTS}

    async def publish_story(tenant: str, gate: list[asyncio.Event]) -> None:
        for step, events in enumerate(stories[tenant]):
            if step:
                await gate[step - 1].wait()
            await publish(nc, *events)

    # Three producers publishing concurrently, step by step, so their events interleave.
    steps = len(stories["acme"])
    gates = [asyncio.Event() for _ in range(steps)]

    async def open_gates() -> None:
        for gate in gates:
            await asyncio.sleep(0.01)
            gate.set()

    await asyncio.gather(open_gates(), *(publish_story(t, gates) for t in TENANTS))
    await eventually(lambda: drained(nc))
    assert await dlq_depth(nc) == 0

    for tenant in TENANTS:
        conv = await db.fetchrow("SELECT * FROM ingest.conversations WHERE tenant_id = $1", tenant)
        assert conv is not None
        assert (conv["title"], conv["user_id"]) == (f"{tenant} renamed", f"{tenant}-user")
        assert json.loads(conv["metadata"]) == {"tenant": tenant, "owner": tenant}
        assert conv["is_placeholder"] is False

        contents = [
            r[0]
            for r in await db.fetch(
                "SELECT content FROM ingest.messages WHERE tenant_id = $1 ORDER BY created_at",
                tenant,
            )
        ]
        assert contents == [f"{tenant}:edited", f"{tenant}:message 1", f"{tenant}:message 2"]
        deleted = await db.fetch(
            "SELECT deleted_by FROM ingest.messages "
            "WHERE tenant_id = $1 AND deleted_at IS NOT NULL",
            tenant,
        )
        assert [r[0] for r in deleted] == [f"{tenant}-mod"]
        edits = await db.fetch(
            "SELECT content, edited_by, reason FROM ingest.message_versions "
            "WHERE tenant_id = $1 AND version > 1",
            tenant,
        )
        assert [tuple(r) for r in edits] == [
            (f"{tenant}:edited", f"{tenant}-editor", f"{tenant} reason")
        ]
        assert (
            await db.fetchval(
                "SELECT count(*) FROM ingest.message_versions WHERE tenant_id = $1", tenant
            )
            == 4
        )

        session = await db.fetchrow(
            "SELECT * FROM ingest.conversation_sessions WHERE tenant_id = $1", tenant
        )
        assert session is not None
        # globex's first message came before its session started: it counts towards none.
        expected = (2, 5 * tokens[tenant]) if tenant == "globex" else (3, 6 * tokens[tenant])
        assert (session["message_count"], session["total_tokens"]) == expected
        assert (session["status"], session["end_reason"]) == ("ended", f"{tenant} done")

        files = await db.fetch(
            "SELECT filename, uploaded_by, metadata FROM ingest.files WHERE tenant_id = $1", tenant
        )
        assert [(r[0], r[1], json.loads(r[2])) for r in files] == [
            (f"{tenant}.pdf", f"{tenant}-user", {"tenant": tenant})
        ]

    # Across tables: every reference stays inside one tenant, and no text of one tenant
    # sits in another tenant's row.
    mixed = await db.fetchval("""
        SELECT count(*) FROM (
            SELECT m.tenant_id FROM ingest.messages m
              JOIN ingest.conversations c USING (conversation_id)
             WHERE c.tenant_id <> m.tenant_id
            UNION ALL
            SELECT m.tenant_id FROM ingest.messages m
              JOIN ingest.conversation_sessions s USING (session_id)
             WHERE s.tenant_id <> m.tenant_id
            UNION ALL
            SELECT v.tenant_id FROM ingest.message_versions v
              JOIN ingest.messages m USING (message_id)
             WHERE v.tenant_id <> m.tenant_id
            UNION ALL
            SELECT l.tenant_id FROM ingest.message_files l
              JOIN ingest.files fl USING (file_id) JOIN ingest.messages m USING (message_id)
             WHERE l.tenant_id <> fl.tenant_id OR l.tenant_id <> m.tenant_id
            UNION ALL
            SELECT fl.tenant_id FROM ingest.files fl
              JOIN ingest.conversations c USING (conversation_id)
             WHERE c.tenant_id <> fl.tenant_id
            UNION ALL
            SELECT tenant_id FROM ingest.messages
             WHERE content NOT LIKE tenant_id || ':%'
                OR sender_user_id <> tenant_id || '-user'
                OR coalesce(deleted_by, tenant_id || '-mod') <> tenant_id || '-mod'
            UNION ALL
            SELECT tenant_id FROM ingest.message_versions
             WHERE content NOT LIKE tenant_id || ':%'
                OR coalesce(edited_by, tenant_id || '-editor') <> tenant_id || '-editor'
            UNION ALL
            SELECT tenant_id FROM ingest.conversations WHERE title NOT LIKE tenant_id || ' %'
            UNION ALL
            SELECT tenant_id FROM ingest.conversation_sessions
             WHERE user_id <> tenant_id || '-user' OR end_reason <> tenant_id || ' done'
        ) AS leaks""")
    assert mixed == 0
    counts = await db.fetch("""
        SELECT tenant_id, count(*) FROM ingest.messages GROUP BY tenant_id ORDER BY 1""")
    assert [tuple(r) for r in counts] == [(t, 3) for t in sorted(TENANTS)]
    assert await db.fetchval("SELECT count(*) FROM ingest.message_files") == 3


# --- one tenant naming another's rows -----------------------------------------------------


class Acme:
    """acme's rows that another tenant's event tries to touch."""

    def __init__(self) -> None:
        self.cid, self.sid, self.mid, self.fid = uuid4(), uuid4(), uuid4(), uuid4()

    def events(self) -> list[Any]:
        return [
            f.conversation(self.cid, tenant="acme", title="acme chat"),
            f.session_start(self.sid, self.cid, tenant="acme", at=at(1)),
            f.message(
                self.cid,
                self.mid,
                tenant="acme",
                content="acme says hi",
                at=at(2),
                session_id=self.sid,
                metadata={"tokens": 5},
            ),
            f.file(
                self.fid,
                tenant="acme",
                conversation_id=self.cid,
                message_id=self.mid,
                filename="acme.pdf",
            ),
        ]

    async def unchanged(self, db: asyncpg.Connection) -> None:
        conv = await db.fetchrow(
            "SELECT * FROM ingest.conversations WHERE conversation_id = $1", self.cid
        )
        assert conv is not None
        assert (conv["tenant_id"], conv["title"], conv["status"]) == ("acme", "acme chat", "active")
        assert json.loads(conv["metadata"]) == {}
        assert conv["last_message_at"] == at(2)
        msg = await db.fetchrow("SELECT * FROM ingest.messages WHERE message_id = $1", self.mid)
        assert msg is not None
        assert (msg["tenant_id"], msg["content"], msg["version"]) == ("acme", "acme says hi", 1)
        assert (msg["deleted_at"], msg["role"]) == (None, "user")
        assert (
            await db.fetchval(
                "SELECT count(*) FROM ingest.message_versions WHERE tenant_id = 'acme'"
            )
            == 1
        )
        session = await db.fetchrow(
            "SELECT * FROM ingest.conversation_sessions WHERE session_id = $1", self.sid
        )
        assert session is not None
        assert (
            session["tenant_id"],
            session["status"],
            session["message_count"],
            session["total_tokens"],
            session["conversation_id"],
        ) == ("acme", "active", 1, 5, self.cid)
        assert session["user_id"] is None
        files = await db.fetch("SELECT file_id, tenant_id, filename FROM ingest.files")
        assert [tuple(r) for r in files] == [(self.fid, "acme", "acme.pdf")]
        links = await db.fetch("SELECT message_id, file_id, tenant_id FROM ingest.message_files")
        assert [tuple(r) for r in links] == [(self.mid, self.fid, "acme")]
        # The only sessions and messages are acme's and the other tenants' valid ones.
        assert await db.fetchval("SELECT count(*) FROM ingest.conversation_sessions") == 1
        assert (
            await db.fetchval("SELECT count(*) FROM ingest.messages WHERE tenant_id <> 'acme'") == 2
        )


def _intruders() -> list[Any]:
    def case(name: str, build: Callable[[Acme, UUID], Any]) -> Any:
        return pytest.param(build, id=name)

    g = "globex"
    return [
        case(
            "message-in-acme-conversation",
            lambda a, gc: f.message(a.cid, tenant=g, content="globex was here", at=at(9)),
        ),
        case(
            "message-reusing-acme-message-id",
            lambda a, gc: f.message(gc, a.mid, tenant=g, content="globex copy"),
        ),
        case(
            "message-naming-acme-session",
            lambda a, gc: f.message(gc, tenant=g, session_id=a.sid, metadata={"tokens": 99}),
        ),
        case("edit-of-acme-message", lambda a, gc: f.edit(a.mid, "globex rewrote it", tenant=g)),
        case("delete-of-acme-message", lambda a, gc: f.delete(a.mid, tenant=g)),
        case(
            "conversation-created-with-acme-id",
            lambda a, gc: f.conversation(a.cid, tenant=g, title="globex chat"),
        ),
        case(
            "update-of-acme-conversation",
            lambda a, gc: f.conversation_update(a.cid, tenant=g, title="pwned", metadata={"x": 1}),
        ),
        case(
            "archive-of-acme-conversation",
            lambda a, gc: f.conversation_archive(a.cid, tenant=g, archived_by="globex"),
        ),
        case(
            "session-started-in-acme-conversation",
            lambda a, gc: f.session_start(uuid4(), a.cid, tenant=g),
        ),
        case(
            "session-started-reusing-acme-session-id",
            lambda a, gc: f.session_start(a.sid, gc, tenant=g, user_id="globex-user"),
        ),
        case("session-ended-of-acme-session", lambda a, gc: f.session_end(a.sid, a.cid, tenant=g)),
        case(
            "file-linked-to-acme-message",
            lambda a, gc: f.file(tenant=g, message_id=a.mid, filename="globex.pdf"),
        ),
        case(
            "file-in-acme-conversation",
            lambda a, gc: f.file(tenant=g, conversation_id=a.cid, filename="globex.pdf"),
        ),
        case(
            "file-reusing-acme-file-id",
            lambda a, gc: f.file(a.fid, tenant=g, filename="globex.pdf"),
        ),
    ]


@pytest.mark.parametrize("build", _intruders())
async def test_event_naming_another_tenants_row_is_poison_and_its_batch_commits(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    build: Callable[[Acme, UUID], Any],
) -> None:
    acme = Acme()
    gcid, g1 = uuid4(), uuid4()
    intruder = build(acme, gcid)
    for event in acme.events():
        await send_event(nc, event)
    # Another type between acme's last event and the intruder: they are applied by
    # different statements (see test_same_id_in_one_run_* for one statement).
    await send_event(nc, f.message(uuid4(), tenant="initech", content="initech says hi"))
    seq = await send_event(nc, intruder)
    await send_event(nc, f.conversation(gcid, tenant="globex", title="globex chat"))
    await send_event(nc, f.message(gcid, g1, tenant="globex", content="globex says hi"))

    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # all in the stream: one batch
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
    assert await dlq_depth(nc) == 1
    [(subject, headers, body)] = await dead_letters(nc)
    assert subject == f"dlq.ingest.{intruder.type}"
    assert headers["Engram-Dlq-Kind"] == "poison"
    assert headers["Engram-Original-Sequence"] == str(seq)
    assert body == intruder.model_dump_json().encode()
    reason = headers["Engram-Dlq-Reason"]
    assert "tenant" in reason or "foreign key" in reason, reason

    await acme.unchanged(db)
    globex = await db.fetchrow(
        "SELECT tenant_id, conversation_id, content FROM ingest.messages WHERE message_id = $1", g1
    )
    assert globex is not None
    assert tuple(globex) == ("globex", gcid, "globex says hi")
    assert (
        await db.fetchval("SELECT title FROM ingest.conversations WHERE conversation_id = $1", gcid)
        == "globex chat"
    )
    assert (
        await db.fetchval("SELECT count(*) FROM ingest.messages WHERE tenant_id = 'initech'") == 1
    )
    inbox = {r[0] for r in await db.fetch("SELECT event_id FROM ingest.inbox")}
    assert intruder.event_id not in inbox
    assert len(inbox) == len(acme.events()) + 3


async def test_message_naming_another_tenants_conversation_names_it_in_the_reason(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    acme = Acme()
    for event in acme.events():
        await send_event(nc, event)
    bad = f.message(acme.cid, tenant="globex", content="globex was here")
    await send_event(nc, bad)
    ok = f.message(acme.cid, tenant="acme", content="acme again", at=at(3))
    await send_event(nc, ok)
    async with run_ingest():
        await eventually(lambda: drained(nc))
    [(_, headers, _)] = await dead_letters(nc)
    assert headers["Engram-Dlq-Kind"] == "poison"
    assert str(acme.cid) in headers["Engram-Dlq-Reason"]
    assert "globex" in headers["Engram-Dlq-Reason"]
    rows = await db.fetch(
        "SELECT tenant_id, content FROM ingest.messages "
        "WHERE conversation_id = $1 ORDER BY created_at",
        acme.cid,
    )
    assert [tuple(r) for r in rows] == [("acme", "acme says hi"), ("acme", "acme again")]


async def test_reply_to_another_tenants_message_is_not_stored(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    acme = Acme()
    await publish(nc, *acme.events())
    await eventually(lambda: drained(nc))
    gcid = uuid4()
    reply = f.message(gcid, tenant="globex", content="re: acme", parent_message_id=acme.mid)
    await publish(nc, f.conversation(gcid, tenant="globex"), reply)
    await eventually(lambda: drained(nc))
    leaked = await db.fetchval(
        """SELECT count(*) FROM ingest.messages r JOIN ingest.messages p
                ON p.message_id = r.parent_message_id
            WHERE r.tenant_id <> p.tenant_id"""
    )
    assert leaked == 0
    [(_, headers, body)] = await dead_letters(nc)
    assert headers["Engram-Dlq-Kind"] == "poison"
    assert body == reply.model_dump_json().encode()


# --- the same id from two tenants, next to each other in one batch -------------------------
#
# Consecutive events of one type are applied by one statement (one `executemany`). The
# tenant check of conversations, sessions and files runs before that statement, when
# neither row exists yet, and `ON CONFLICT ... DO UPDATE` then merges the second tenant's
# fields into the first tenant's row (files: `DO NOTHING` drops it silently).


def _same_run_cases() -> list[Any]:
    x = uuid4()
    gx = uuid4()
    mid = uuid4()
    return [
        pytest.param(
            [f.conversation(x, tenant="acme", metadata={"a": 1})],
            f.conversation(
                x,
                tenant="globex",
                title="globex secret",
                user_id="globex-user",
                metadata={"g": "secret"},
            ),
            "SELECT title, user_id, metadata::text FROM ingest.conversations "
            f"WHERE conversation_id = '{x}'",
            (None, None, '{"a": 1}'),
            id="conversation-created",
        ),
        pytest.param(
            [f.conversation_update(x, tenant="acme", at=at(5), title="acme title")],
            f.conversation_update(
                x, tenant="globex", at=at(6), title="globex secret", metadata={"g": "secret"}
            ),
            f"SELECT title, metadata::text FROM ingest.conversations WHERE conversation_id = '{x}'",
            ("acme title", "{}"),
            id="conversation-updated",
        ),
        pytest.param(
            [f.conversation_archive(x, tenant="acme")],
            f.conversation_archive(x, tenant="globex", archived_by="globex-admin"),
            f"SELECT archived_by FROM ingest.conversations WHERE conversation_id = '{x}'",
            (None,),
            id="conversation-archived",
        ),
        pytest.param(
            [
                f.conversation(x, tenant="acme"),
                f.conversation(gx, tenant="globex"),
                f.session_start(SID, x, tenant="acme"),
            ],
            f.session_start(
                SID, gx, tenant="globex", user_id="globex-user", metadata={"g": "secret"}
            ),
            "SELECT tenant_id, user_id, metadata::text FROM ingest.conversation_sessions",
            ("acme", None, "{}"),
            id="session-started",
        ),
        pytest.param(
            [
                f.conversation(x, tenant="acme"),
                f.conversation(gx, tenant="globex"),
                f.session_end(SID, x, tenant="acme"),
            ],
            f.session_end(SID, gx, tenant="globex", reason="globex secret", agent_id="globex-bot"),
            "SELECT tenant_id, end_reason, agent_id FROM ingest.conversation_sessions",
            ("acme", None, None),
            id="session-ended",
        ),
        pytest.param(
            [f.file(FID, tenant="acme", filename="acme.pdf")],
            f.file(FID, tenant="globex", filename="globex.pdf"),
            "SELECT tenant_id, filename FROM ingest.files",
            ("acme", "acme.pdf"),
            id="file-uploaded",
        ),
        pytest.param(
            [f.message(x, mid, tenant="acme", content="acme question")],
            f.message(gx, tenant="globex", content="re: acme", parent_message_id=mid),
            f"SELECT count(*) FROM ingest.messages WHERE parent_message_id = '{mid}'",
            (0,),
            id="reply-to-a-message-of-the-run",
        ),
    ]


SID, FID = uuid4(), uuid4()


@pytest.mark.parametrize(("acme_events", "intruder", "query", "expected"), _same_run_cases())
async def test_same_id_in_one_run_from_another_tenant_is_poison(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    *,
    acme_events: list[Any],
    intruder: Any,
    query: str,
    expected: tuple[Any, ...],
) -> None:
    g1 = uuid4()
    for event in acme_events:
        await send_event(nc, event)
    seq = await send_event(nc, intruder)  # right after acme's event of the same type
    await send_event(nc, f.message(uuid4(), g1, tenant="globex", content="globex says hi"))
    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # one batch, as in production
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
    assert (
        await db.fetchval("SELECT content FROM ingest.messages WHERE message_id = $1", g1)
        == "globex says hi"
    )
    row = await db.fetchrow(query)
    assert row is not None
    assert tuple(row) == expected  # nothing of globex's event in acme's row
    assert await dlq_depth(nc) == 1
    [(_, headers, body)] = await dead_letters(nc)
    assert headers["Engram-Dlq-Kind"] == "poison"
    assert headers["Engram-Original-Sequence"] == str(seq)
    assert body == intruder.model_dump_json().encode()
