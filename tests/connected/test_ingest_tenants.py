"""Tenants through the real ingest worker: interleaved tenants never mix, and ids are per
tenant: an event using an id another tenant also uses takes effect in its own tenant (its
own placeholder conversation or session, its own message or file of that id), leaves the
other tenant's rows exactly as they were, and is never a dead letter."""

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

from services.runtime.worker import Worker
from tests import factories as f
from tests.helpers import (
    ONE_BATCH_S,
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


# --- one tenant using another's ids -------------------------------------------------------

CONTROL = "hooli"  # gets the same events as acme under ids of its own, and no intruder


class Tenant:
    """A tenant's conversation, session, message and file: the rows another tenant's events
    name by the same ids."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.cid, self.sid, self.mid, self.fid = uuid4(), uuid4(), uuid4(), uuid4()
        self.events = [
            f.conversation(self.cid, tenant=tenant, title="the chat"),
            f.session_start(self.sid, self.cid, tenant=tenant, at=at(1)),
            f.message(
                self.cid,
                self.mid,
                tenant=tenant,
                content="hi there",
                at=at(2),
                session_id=self.sid,
                metadata={"tokens": 5},
            ),
            f.file(
                self.fid,
                tenant=tenant,
                conversation_id=self.cid,
                message_id=self.mid,
                filename="the.pdf",
            ),
        ]

    async def rows(self, db: asyncpg.Connection) -> dict[str, list[str]]:
        """Every row of the tenant, every column (but when it was written), with its own ids
        and event ids replaced by names: comparable between two tenants."""
        names = {str(self.cid): "cid", str(self.sid): "sid", str(self.mid): "mid"}
        names |= {str(self.fid): "fid"}
        names |= {str(e.event_id): f"event {i}" for i, e in enumerate(self.events)}
        found: dict[str, list[str]] = {}
        for table in TABLES:
            rows = await db.fetch(
                f"SELECT to_jsonb(t) - '{{tenant_id,updated_at}}'::text[] "
                f"FROM ingest.{table} t WHERE tenant_id = $1",
                self.tenant,
            )
            found[table] = sorted(
                json.dumps(
                    {
                        k: names.get(v, v) if isinstance(v, str) else v
                        for k, v in json.loads(r[0]).items()
                        if (table, k) != ("message_files", "created_at")  # now()
                    },
                    sort_keys=True,
                )
                for r in rows
            )
        return found

    async def unchanged(self, db: asyncpg.Connection, control: Tenant) -> None:
        """Exactly what the same events made of the control tenant's rows."""
        mine, theirs = await self.rows(db), await control.rows(db)
        assert mine == theirs
        assert {table: len(rows) for table, rows in mine.items()} == dict.fromkeys(TABLES, 1)
        [conv], [session], [msg] = (
            [json.loads(r) for r in mine[t]]
            for t in ("conversations", "conversation_sessions", "messages")
        )
        assert (conv["conversation_id"], conv["title"], conv["status"]) == (
            "cid",
            "the chat",
            "active",
        )
        assert (conv["metadata"], conv["is_placeholder"], conv["archived_by"]) == ({}, False, None)
        assert (session["session_id"], session["conversation_id"]) == ("sid", "cid")
        assert (session["status"], session["message_count"], session["total_tokens"]) == (
            "active",
            1,
            5,
        )
        assert (session["user_id"], session["end_reason"]) == (None, None)
        assert (msg["message_id"], msg["conversation_id"], msg["session_id"]) == (
            "mid",
            "cid",
            "sid",
        )
        assert (msg["content"], msg["version"], msg["deleted_at"]) == ("hi there", 1, None)
        assert [json.loads(r)["content"] for r in mine["message_versions"]] == ["hi there"]
        assert [json.loads(r)["filename"] for r in mine["files"]] == ["the.pdf"]
        assert [json.loads(r)["message_id"] for r in mine["message_files"]] == ["mid"]


TABLES = (
    "conversations",
    "conversation_sessions",
    "messages",
    "message_versions",
    "files",
    "message_files",
)
G = "globex"

# What globex's events name, and what reading globex's rows must show (a query of the
# superuser, `WHERE tenant_id = 'globex'`, with its arguments).
Build = Callable[[Tenant, UUID], list[Any]]
Check = Callable[[Tenant, UUID], tuple[str, list[Any], list[tuple[Any, ...]]]]


def _own_message(a: Tenant, gc: UUID) -> Any:
    """globex's own message under acme's message_id, which its edits, deletes and files
    then name (as for any tenant, they wait until their message has arrived)."""
    return f.message(gc, a.mid, tenant=G, content="globex original", at=at(3))


def _intruders() -> list[Any]:
    def case(name: str, build: Build, check: Check) -> Any:
        return pytest.param(build, check, id=name)

    return [
        case(
            "message-in-acme-conversation",
            lambda a, gc: [f.message(a.cid, tenant=G, content="globex was here", at=at(9))],
            lambda a, gc: (
                "SELECT c.is_placeholder, c.last_message_at, m.content, m.session_id "
                "FROM ingest.conversations c JOIN ingest.messages m "
                "USING (tenant_id, conversation_id) "
                "WHERE tenant_id = 'globex' AND conversation_id = $1",
                [a.cid],
                [(True, at(9), "globex was here", None)],  # acme's active session is not its
            ),
        ),
        case(
            "message-reusing-acme-message-id",
            lambda a, gc: [f.message(gc, a.mid, tenant=G, content="globex copy")],
            lambda a, gc: (
                "SELECT m.conversation_id, m.content, v.version, v.content "
                "FROM ingest.messages m JOIN ingest.message_versions v "
                "USING (tenant_id, message_id) WHERE tenant_id = 'globex' AND message_id = $1",
                [a.mid],
                [(gc, "globex copy", 1, "globex copy")],
            ),
        ),
        case(
            "message-naming-acme-session",
            lambda a, gc: [f.message(gc, tenant=G, session_id=a.sid, metadata={"tokens": 99})],
            lambda a, gc: (
                "SELECT conversation_id, started_at, message_count, total_tokens "
                "FROM ingest.conversation_sessions WHERE tenant_id = 'globex' AND session_id = $1",
                [a.sid],
                # A placeholder session, active: globex's next message in gc counts there too.
                [(gc, None, 2, 99)],
            ),
        ),
        case(
            "edit-of-acme-message",
            lambda a, gc: [
                _own_message(a, gc),
                f.edit(a.mid, "globex rewrote it", tenant=G, at=at(4)),
            ],
            lambda a, gc: (
                "SELECT m.content, m.version, array_agg(v.content ORDER BY v.version) "
                "FROM ingest.messages m JOIN ingest.message_versions v "
                "USING (tenant_id, message_id) WHERE tenant_id = 'globex' AND message_id = $1 "
                "GROUP BY m.content, m.version",
                [a.mid],
                [("globex rewrote it", 2, ["globex original", "globex rewrote it"])],
            ),
        ),
        case(
            "delete-of-acme-message",
            lambda a, gc: [
                _own_message(a, gc),
                f.delete(a.mid, tenant=G, at=at(4), deleted_by="globex-mod"),
            ],
            lambda a, gc: (
                "SELECT content, deleted_at, deleted_by FROM ingest.messages "
                "WHERE tenant_id = 'globex' AND message_id = $1",
                [a.mid],
                [("globex original", at(4), "globex-mod")],
            ),
        ),
        case(
            "conversation-created-with-acme-id",
            lambda a, gc: [f.conversation(a.cid, tenant=G, title="globex's own")],
            lambda a, gc: (
                "SELECT title, is_placeholder FROM ingest.conversations "
                "WHERE tenant_id = 'globex' AND conversation_id = $1",
                [a.cid],
                [("globex's own", False)],
            ),
        ),
        case(
            "update-of-acme-conversation",
            lambda a, gc: [
                f.conversation_update(a.cid, tenant=G, title="pwned", metadata={"x": 1})
            ],
            lambda a, gc: (
                "SELECT title, metadata::text, is_placeholder FROM ingest.conversations "
                "WHERE tenant_id = 'globex' AND conversation_id = $1",
                [a.cid],
                [("pwned", '{"x": 1}', True)],
            ),
        ),
        case(
            "archive-of-acme-conversation",
            lambda a, gc: [f.conversation_archive(a.cid, tenant=G, archived_by="globex")],
            lambda a, gc: (
                "SELECT status, archived_by, is_placeholder FROM ingest.conversations "
                "WHERE tenant_id = 'globex' AND conversation_id = $1",
                [a.cid],
                [("archived", "globex", True)],
            ),
        ),
        case(
            "session-started-in-acme-conversation",
            lambda a, gc: [f.session_start(uuid4(), a.cid, tenant=G, at=at(7))],
            lambda a, gc: (
                "SELECT s.status, s.started_at, c.is_placeholder "
                "FROM ingest.conversation_sessions s JOIN ingest.conversations c "
                "USING (tenant_id, conversation_id) "
                "WHERE tenant_id = 'globex' AND conversation_id = $1",
                [a.cid],
                [("active", at(7), True)],
            ),
        ),
        case(
            "session-started-reusing-acme-session-id",
            lambda a, gc: [f.session_start(a.sid, gc, tenant=G, user_id="globex-user")],
            lambda a, gc: (
                "SELECT conversation_id, user_id, message_count FROM ingest.conversation_sessions "
                "WHERE tenant_id = 'globex' AND session_id = $1",
                [a.sid],
                [(gc, "globex-user", 1)],  # globex's message in gc
            ),
        ),
        case(
            "session-ended-of-acme-session",
            lambda a, gc: [f.session_end(a.sid, a.cid, tenant=G, reason="globex done")],
            lambda a, gc: (
                "SELECT s.status, s.end_reason, s.started_at, c.is_placeholder "
                "FROM ingest.conversation_sessions s JOIN ingest.conversations c "
                "USING (tenant_id, conversation_id) "
                "WHERE tenant_id = 'globex' AND session_id = $1",
                [a.sid],
                [("ended", "globex done", None, True)],
            ),
        ),
        case(
            "file-linked-to-acme-message",
            lambda a, gc: [
                _own_message(a, gc),
                f.file(tenant=G, message_id=a.mid, filename="globex.pdf"),
            ],
            lambda a, gc: (
                "SELECT fl.filename, l.message_id FROM ingest.files fl "
                "JOIN ingest.message_files l USING (tenant_id, file_id) "
                "WHERE tenant_id = 'globex'",
                [],
                [("globex.pdf", a.mid)],
            ),
        ),
        case(
            "file-in-acme-conversation",
            lambda a, gc: [f.file(tenant=G, conversation_id=a.cid, filename="globex.pdf")],
            lambda a, gc: (
                "SELECT fl.filename, c.conversation_id, c.is_placeholder FROM ingest.files fl "
                "JOIN ingest.conversations c USING (tenant_id, conversation_id) "
                "WHERE tenant_id = 'globex'",
                [],
                [("globex.pdf", a.cid, True)],
            ),
        ),
        case(
            "file-reusing-acme-file-id",
            lambda a, gc: [f.file(a.fid, tenant=G, filename="globex.pdf")],
            lambda a, gc: (
                "SELECT filename, conversation_id FROM ingest.files "
                "WHERE tenant_id = 'globex' AND file_id = $1",
                [a.fid],
                [("globex.pdf", None)],
            ),
        ),
    ]


@pytest.mark.parametrize(("build", "check"), _intruders())
async def test_an_event_using_another_tenants_id_takes_effect_in_its_own_tenant(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    build: Build,
    check: Check,
) -> None:
    acme, control = Tenant("acme"), Tenant(CONTROL)
    gcid, g1 = uuid4(), uuid4()
    intruders = build(acme, gcid)
    for event in [*acme.events, *control.events]:
        await send_event(nc, event)
    # Another type between acme's last event and globex's: they are applied by different
    # statements (see test_same_id_in_one_run_* for one statement).
    initech = f.message(uuid4(), tenant="initech", content="initech says hi")
    await send_event(nc, initech)
    for event in intruders:
        await send_event(nc, event)
    globex = [
        f.conversation(gcid, tenant=G, title="globex chat"),
        f.message(gcid, g1, tenant=G, content="globex says hi"),
    ]
    for event in globex:
        await send_event(nc, event)

    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # all in the stream: one batch
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
        assert (worker.stats.dead, worker.stats.retried) == (0, 0)
    assert await dlq_depth(nc) == 0

    await acme.unchanged(db, control)
    sql, args, expected = check(acme, gcid)
    assert [tuple(r) for r in await db.fetch(sql, *args)] == expected
    stored = await db.fetchrow(
        "SELECT m.conversation_id, m.content, c.title FROM ingest.messages m "
        "JOIN ingest.conversations c USING (tenant_id, conversation_id) "
        "WHERE tenant_id = 'globex' AND message_id = $1",
        g1,
    )
    assert stored is not None
    assert tuple(stored) == (gcid, "globex says hi", "globex chat")
    assert (
        await db.fetchval("SELECT count(*) FROM ingest.messages WHERE tenant_id = 'initech'") == 1
    )
    everything = [*acme.events, *control.events, initech, *intruders, *globex]
    inbox = {tuple(r) for r in await db.fetch("SELECT event_id, tenant_id FROM ingest.inbox")}
    assert inbox == {(e.event_id, e.tenant_id) for e in everything}


async def test_one_conversation_id_in_two_tenants_is_two_conversations_to_their_readers(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid, mid = uuid4(), uuid4()
    await publish(
        nc,
        f.conversation(cid, tenant="acme", title="acme chat"),
        f.message(cid, mid, tenant="acme", content="acme says hi", at=at(1)),
        f.message(cid, mid, tenant="globex", content="globex says hi", at=at(2)),
        f.conversation(cid, tenant="globex", title="globex chat"),
        f.message(cid, tenant="globex", content="globex again", at=at(3), parent_message_id=mid),
    )
    await eventually(lambda: drained(nc))
    assert await dlq_depth(nc) == 0
    for tenant, title, contents in (
        ("acme", "acme chat", ["acme says hi"]),
        ("globex", "globex chat", ["globex says hi", "globex again"]),
    ):
        async with db.transaction():  # as anything reading on one tenant's behalf
            await db.execute("SET LOCAL ROLE engram_ingest_reader")
            await db.execute("SELECT set_config('engram.tenant_id', $1, true)", tenant)
            seen = await db.fetch(
                "SELECT c.tenant_id, c.title, c.last_message_at, m.content, p.content "
                "FROM ingest.conversations c "
                "JOIN ingest.messages m USING (tenant_id, conversation_id) "
                "LEFT JOIN ingest.messages p "
                "  ON p.tenant_id = m.tenant_id AND p.message_id = m.parent_message_id "
                "WHERE c.conversation_id = $1 ORDER BY m.created_at",
                cid,
            )
        last = at(1) if tenant == "acme" else at(3)
        parents = [None] * len(contents) if tenant == "acme" else [None, "globex says hi"]
        assert [tuple(r) for r in seen] == [
            (tenant, title, last, content, parent)
            for content, parent in zip(contents, parents, strict=True)
        ]


async def test_a_reply_names_a_parent_of_its_own_tenant(
    ingest: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    acme = Tenant("acme")
    await publish(nc, *acme.events)
    await eventually(lambda: drained(nc))
    gcid = uuid4()
    reply = f.message(gcid, tenant=G, content="re: question", parent_message_id=acme.mid)
    await publish(nc, f.conversation(gcid, tenant=G), reply)
    await eventually(lambda: drained(nc))
    parents = """SELECT r.content, p.tenant_id, p.content FROM ingest.messages r
                   LEFT JOIN ingest.messages p
                     ON p.tenant_id = r.tenant_id AND p.message_id = r.parent_message_id
                  WHERE r.tenant_id = 'globex'"""
    # Stored, answering a message globex has not sent (yet): acme's is not its parent.
    assert [tuple(r) for r in await db.fetch(parents)] == [("re: question", None, None)]
    await publish(nc, f.message(gcid, acme.mid, tenant=G, content="the question", at=at(-1)))
    await eventually(lambda: drained(nc))
    rows = await db.fetch(parents + " ORDER BY r.created_at")
    assert [tuple(r) for r in rows] == [
        ("the question", None, None),
        ("re: question", "globex", "the question"),
    ]
    assert await dlq_depth(nc) == 0
    assert (
        await db.fetchval(
            "SELECT content FROM ingest.messages WHERE tenant_id = 'acme' AND message_id = $1",
            acme.mid,
        )
        == "hi there"
    )


# --- the same id from two tenants, next to each other in one batch -------------------------
#
# Consecutive events of one type are applied by one statement (one `executemany`, or one
# set-based insert for new messages and edits): two tenants' events of one id in one
# statement must still be two rows, each with its own tenant's fields.


def _same_run_cases() -> list[Any]:
    x = uuid4()
    gx = uuid4()
    mid = uuid4()

    def case(
        acme_events: list[Any], intruder: Any, query: str, rows: dict[str, Any], name: str
    ) -> Any:
        return pytest.param(acme_events, intruder, query, rows, id=name)

    both_messages = [
        f.message(x, mid, tenant="acme", content="acme text"),
        f.message(gx, mid, tenant=G, content="globex text"),
    ]
    return [
        case(
            [f.conversation(x, tenant="acme", metadata={"a": 1})],
            f.conversation(
                x, tenant=G, title="globex secret", user_id="globex-user", metadata={"g": "secret"}
            ),
            "SELECT title, user_id, metadata::text FROM ingest.conversations "
            f"WHERE tenant_id = $1 AND conversation_id = '{x}'",
            {
                "acme": (None, None, '{"a": 1}'),
                G: ("globex secret", "globex-user", '{"g": "secret"}'),
            },
            "conversation-created",
        ),
        case(
            [f.conversation_update(x, tenant="acme", at=at(5), title="acme title")],
            f.conversation_update(
                x, tenant=G, at=at(6), title="globex secret", metadata={"g": "secret"}
            ),
            "SELECT title, metadata::text FROM ingest.conversations "
            f"WHERE tenant_id = $1 AND conversation_id = '{x}'",
            {"acme": ("acme title", "{}"), G: ("globex secret", '{"g": "secret"}')},
            "conversation-updated",
        ),
        case(
            [f.conversation_archive(x, tenant="acme")],
            f.conversation_archive(x, tenant=G, archived_by="globex-admin"),
            "SELECT status, archived_by FROM ingest.conversations "
            f"WHERE tenant_id = $1 AND conversation_id = '{x}'",
            {"acme": ("archived", None), G: ("archived", "globex-admin")},
            "conversation-archived",
        ),
        case(
            [
                f.conversation(x, tenant="acme"),
                f.conversation(gx, tenant=G),
                f.session_start(SID, x, tenant="acme"),
            ],
            f.session_start(SID, gx, tenant=G, user_id="globex-user", metadata={"g": "secret"}),
            "SELECT conversation_id, user_id, metadata::text FROM ingest.conversation_sessions "
            "WHERE tenant_id = $1",
            {"acme": (x, None, "{}"), G: (gx, "globex-user", '{"g": "secret"}')},
            "session-started",
        ),
        case(
            [
                f.conversation(x, tenant="acme"),
                f.conversation(gx, tenant=G),
                f.session_end(SID, x, tenant="acme"),
            ],
            f.session_end(SID, gx, tenant=G, reason="globex secret", agent_id="globex-bot"),
            "SELECT conversation_id, end_reason, agent_id FROM ingest.conversation_sessions "
            "WHERE tenant_id = $1",
            {"acme": (x, None, None), G: (gx, "globex secret", "globex-bot")},
            "session-ended",
        ),
        case(
            [f.file(FID, tenant="acme", filename="acme.pdf")],
            f.file(FID, tenant=G, filename="globex.pdf"),
            "SELECT filename FROM ingest.files WHERE tenant_id = $1",
            {"acme": ("acme.pdf",), G: ("globex.pdf",)},
            "file-uploaded",
        ),
        case(
            [f.message(x, mid, tenant="acme", content="acme question")],
            f.message(gx, tenant=G, content="re: acme", parent_message_id=mid),
            "SELECT r.content, p.content FROM ingest.messages r LEFT JOIN ingest.messages p "
            "  ON p.tenant_id = r.tenant_id AND p.message_id = r.parent_message_id "
            f"WHERE r.tenant_id = $1 AND r.conversation_id IN ('{x}', '{gx}')",
            {
                "acme": ("acme question", None),
                G: ("re: acme", None),
            },  # its parent has not arrived in globex
            "reply-to-a-message-of-the-run",
        ),
        case(
            both_messages[:1],
            both_messages[1],
            "SELECT m.conversation_id, m.content, v.content FROM ingest.messages m "
            "JOIN ingest.message_versions v USING (tenant_id, message_id) "
            f"WHERE tenant_id = $1 AND message_id = '{mid}'",
            {"acme": (x, "acme text", "acme text"), G: (gx, "globex text", "globex text")},
            "message-created",
        ),
        case(
            [*both_messages, f.edit(mid, "acme edit", tenant="acme", edited_by="acme-ed")],
            f.edit(mid, "globex edit", tenant=G, edited_by="globex-ed"),
            "SELECT m.content, m.version, v.edited_by FROM ingest.messages m "
            "JOIN ingest.message_versions v USING (tenant_id, message_id, version) "
            f"WHERE tenant_id = $1 AND message_id = '{mid}'",
            {"acme": ("acme edit", 2, "acme-ed"), G: ("globex edit", 2, "globex-ed")},
            "message-edited",
        ),
        case(
            [*both_messages, f.delete(mid, tenant="acme", deleted_by="acme-mod")],
            f.delete(mid, tenant=G, deleted_by="globex-mod"),
            "SELECT content, deleted_by FROM ingest.messages "
            f"WHERE tenant_id = $1 AND message_id = '{mid}'",
            {"acme": ("acme text", "acme-mod"), G: ("globex text", "globex-mod")},
            "message-deleted",
        ),
    ]


SID, FID = uuid4(), uuid4()


@pytest.mark.parametrize(("acme_events", "intruder", "query", "expected"), _same_run_cases())
async def test_same_id_in_one_run_from_another_tenant_is_a_row_of_its_own(
    run_ingest: RunIngest,
    nc: NatsClient,
    db: asyncpg.Connection,
    *,
    acme_events: list[Any],
    intruder: Any,
    query: str,
    expected: dict[str, tuple[Any, ...]],
) -> None:
    g1 = uuid4()
    for event in acme_events:
        await send_event(nc, event)
    await send_event(nc, intruder)  # right after acme's event of the same type
    await send_event(nc, f.message(uuid4(), g1, tenant=G, content="globex says hi"))
    async with run_ingest(fetch_linger_s=ONE_BATCH_S) as worker:  # one batch, as in production
        await eventually(lambda: drained(nc))
        assert worker.stats.batches == 1
        assert (worker.stats.dead, worker.stats.retried) == (0, 0)
    assert (
        await db.fetchval(
            "SELECT content FROM ingest.messages WHERE tenant_id = 'globex' AND message_id = $1",
            g1,
        )
        == "globex says hi"
    )
    for tenant, row in expected.items():  # each tenant's own row, nothing of the other's
        assert [tuple(r) for r in await db.fetch(query, tenant)] == [row], tenant
    assert await dlq_depth(nc) == 0
    inbox = {r[0] for r in await db.fetch("SELECT event_id FROM ingest.inbox")}
    assert intruder.event_id in inbox
