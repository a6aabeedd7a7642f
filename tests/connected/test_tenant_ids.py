"""Idempotency keys are per tenant: four tenants publish every event type a producer may
publish (contracts.registry.EVENTS, but the engram.* events engram's own services emit),
each step under the SAME event_id in every tenant (payload ids of their own), and each
tenant's events take effect in every service that consumes them: ingest (CHAT), memory
(MEMORY), the checkpointer (STATE and session ends), context (CONTEXT templates), the
embedder (KNOWLEDGE sources and documents), and the audit trail records them all.

The tenants publish as different producers would: with the documented
``Nats-Msg-Id: <tenant_id>:<event_id>``, with the bare event_id (a producer of before the
rule), and with no header at all; then every event again with no header (a retry JetStream
cannot drop), which each consumer's inbox must drop. The real workers run over the real
nats-server and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from faststream import TestApp
from nats.aio.client import Client as NatsClient

from contracts.envelope import Envelope
from contracts.knowledge import (
    DocumentUpserted,
    SourceRegistered,
    SourceRemoved,
    SourceUpdated,
)
from contracts.registry import EVENTS
from services.audit.app import create_app as audit_app
from services.checkpointer.app import create_app as checkpointer_app
from services.context.app import create_app as context_app
from services.embedder.app import create_app as embedder_app
from services.ingest.app import create_app as ingest_app
from services.memory.app import create_app as memory_app
from tests import factories as f
from tests.conftest import Env
from tests.connected import checkpointer_fixtures as cp
from tests.connected import context_fixtures as ctx
from tests.connected import memory_fixtures as mem
from tests.connected.audit_fixtures import audit_settings
from tests.connected.conftest import ingest_settings
from tests.connected.embedder_fixtures import embedder_settings
from tests.helpers import drained, eventually

pytestmark = pytest.mark.connected

# How each tenant's producer sends Nats-Msg-Id: the rule, the bare event_id, nothing.
HEADERS = {"acme": "bare", "globex": "documented", "initech": "none", "umbrella:eu": "documented"}
TENANTS = tuple(HEADERS)
USER, AGENT = cp.USER, cp.AGENT
CONSUMERS = (
    ("CHAT", "ingest"),
    ("CHAT", "memory"),
    ("CHAT", "checkpointer"),
    ("MEMORY", "memory"),
    ("STATE", "checkpointer"),
    ("CONTEXT", "context"),
    ("KNOWLEDGE", "embedder"),
    *((stream, "audit") for stream in ("CHAT", "MEMORY", "STATE", "CONTEXT", "KNOWLEDGE")),
)
WAIT_S = 60.0  # two cores shared with other test sessions


def headers_for(event: Envelope, mode: str) -> dict[str, str] | None:
    if mode == "documented":
        return event.headers()
    if mode == "bare":
        return {"Nats-Msg-Id": str(event.event_id)}
    return None


@dataclass(frozen=True)
class Ids:
    """One tenant's payload ids: its own, so only the event ids are shared."""

    conversation: uuid.UUID
    session: uuid.UUID
    kept: uuid.UUID  # a message that is edited
    dropped: uuid.UUID  # a message that is deleted
    file: uuid.UUID
    memory: uuid.UUID
    forgotten: uuid.UUID
    job: uuid.UUID
    checkpoint: uuid.UUID
    source: uuid.UUID  # a knowledge source with a document
    removed_source: uuid.UUID

    @classmethod
    def new(cls) -> Ids:
        return cls(*(uuid.uuid4() for _ in range(11)))


def state_events(t: str, ids: Ids) -> list[Envelope]:
    """Version 1 (a patch), a checkpoint of it, version 2, a restore of the checkpoint
    (version 3)."""
    key = {"tenant": t, "user": USER, "agent": AGENT}
    return [
        cp.patch(merge={"local": {"tenant": t}, "session": {"cart": [t]}}, **key),
        cp.checkpoint(ids.checkpoint, **key),
        cp.patch([cp.add("/local/later", t)], **key),
        cp.restore(checkpoint_id=ids.checkpoint, **key),
    ]


def chat_and_memory_events(t: str, ids: Ids) -> list[Envelope]:
    cid, sid = ids.conversation, ids.session
    kept = {"session_id": sid, "metadata": {"tokens": 3}}
    ended = {"user_id": USER, "agent_id": AGENT}  # empties the session partition of the state
    return [
        f.conversation(cid, tenant=t, title=f"first {t}"),
        f.session_start(sid, cid, tenant=t),
        f.message(cid, ids.kept, tenant=t, content=f"hello from {t}", **kept),
        f.message(cid, ids.dropped, tenant=t, content=f"oops from {t}", session_id=sid),
        f.edit(ids.kept, f"edited by {t}", tenant=t),
        f.delete(ids.dropped, tenant=t),
        f.file(ids.file, tenant=t, conversation_id=cid, message_id=ids.kept),
        f.conversation_update(cid, tenant=t, title=f"title of {t}"),
        f.session_end(sid, cid, tenant=t, **ended),
        f.conversation_archive(cid, tenant=t),
        mem.write(f"{t} prefers window seats", memory_id=ids.memory, tenant=t),
        mem.write(f"{t} said something to forget", memory_id=ids.forgotten, tenant=t),
        mem.forget(tenant=t, memory_ids=[ids.forgotten]),
        mem.consolidate(tenant=t, job_id=ids.job, steps=["decay"]),
        ctx.template_put("persona", f"You are {t}'s agent.", t),
        ctx.template_deleted("old", t),
        *knowledge_events(t, ids),
    ]


def knowledge_events(t: str, ids: Ids) -> list[Envelope]:
    env = {"tenant_id": t, "producer": "tests", "occurred_at": f.T0}
    later = {**env, "occurred_at": f.T0 + timedelta(minutes=1)}

    def source(sid: uuid.UUID, name: str) -> dict[str, Any]:
        return {"source_id": sid, "agent_id": AGENT, "type": "api", "name": name}

    return [
        SourceRegistered(event_id=uuid.uuid4(), payload=source(ids.source, "first"), **env),
        SourceUpdated(event_id=uuid.uuid4(), payload=source(ids.source, t), **later),
        SourceRegistered(event_id=uuid.uuid4(), payload=source(ids.removed_source, "x"), **env),
        SourceRemoved(event_id=uuid.uuid4(), payload={"source_id": ids.removed_source}, **later),
        DocumentUpserted(
            event_id=uuid.uuid4(),
            payload={"source_id": ids.source, "document_id": "faq", "text": f"{t} knows"},
            **later,
        ),
    ]


def same_event_ids(build: Any, ids: dict[str, Ids]) -> dict[str, list[Envelope]]:
    """Every tenant's events, step i of each under one event id."""
    events = {t: build(t, ids[t]) for t in TENANTS}
    shared = [uuid.uuid4() for _ in events[TENANTS[0]]]
    return {
        t: [e.model_copy(update={"event_id": eid}) for e, eid in zip(evs, shared, strict=True)]
        for t, evs in events.items()
    }


class Bus:
    """Publishes and remembers what JetStream stored, per tenant."""

    def __init__(self, nc: NatsClient) -> None:
        self.js = nc.jetstream()
        self.stored: Counter[str] = Counter()

    async def send(self, events: dict[str, list[Envelope]], mode: str | None = None) -> None:
        # Step by step, the tenants interleaved: their copies of one id arrive together.
        for step in zip(*events.values(), strict=True):
            for event in step:
                ack = await self.js.publish(
                    event.type,
                    event.model_dump_json().encode(),
                    headers=headers_for(event, mode or HEADERS[event.tenant_id]),
                )
                assert not ack.duplicate, (event.tenant_id, event.type, mode)
                self.stored[event.tenant_id] += 1


@pytest.fixture
async def workers(env: Env) -> AsyncIterator[None]:
    apps = (
        ingest_app(ingest_settings(env)),
        memory_app(mem.memory_settings(env)),
        checkpointer_app(cp.settings_for(env)),
        audit_app(audit_settings(env)),
        context_app(ctx.settings_for(env)),
        embedder_app(embedder_settings(env)),
    )
    async with AsyncExitStack() as stack:
        for app, _ in apps:
            await stack.enter_async_context(TestApp(app))
        yield


async def everything_acked(
    nc: NatsClient, consumers: Sequence[tuple[str, str]] = CONSUMERS
) -> bool:
    """Every consumer has had and acked every message of its filter (a filtered consumer's
    ack floor stops at its own last message, so ``drained`` does not fit)."""
    js = nc.jetstream()
    for stream, durable in consumers:
        info = await js.consumer_info(stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def states(db: asyncpg.Connection) -> dict[str, tuple[int, Any, Any]]:
    rows = await db.fetch(
        "SELECT tenant_id, version, local_state::text AS local, session_state::text AS session "
        "FROM checkpoint.agent_states WHERE user_id = $1 AND agent_id = $2",
        USER,
        AGENT,
    )
    return {
        r["tenant_id"]: (r["version"], json.loads(r["local"]), json.loads(r["session"]))
        for r in rows
    }


async def ingest_view(db: asyncpg.Connection, t: str, ids: Ids) -> dict[str, Any]:
    row = await db.fetchrow(
        """SELECT c.title, c.status, c.is_placeholder,
                  s.status AS session, s.message_count, s.total_tokens,
                  k.content, k.version, d.deleted_at IS NOT NULL AS deleted,
                  (SELECT count(*) FROM ingest.message_versions v
                    WHERE v.message_id = k.message_id) AS versions,
                  (SELECT count(*) FROM ingest.message_files m
                    WHERE m.message_id = k.message_id AND m.file_id = $5) AS linked
             FROM ingest.conversations c
             JOIN ingest.conversation_sessions s USING (tenant_id, conversation_id)
             JOIN ingest.messages k ON k.tenant_id = c.tenant_id AND k.message_id = $3
             JOIN ingest.messages d ON d.tenant_id = c.tenant_id AND d.message_id = $4
            WHERE c.tenant_id = $1 AND c.conversation_id = $2""",
        t,
        ids.conversation,
        ids.kept,
        ids.dropped,
        ids.file,
    )
    return dict(row) if row else {}


def ingest_done(t: str) -> dict[str, Any]:
    return {
        "title": f"title of {t}",
        "status": "archived",
        "is_placeholder": False,
        "session": "ended",
        "message_count": 2,
        "total_tokens": 3,
        "content": f"edited by {t}",
        "version": 2,
        "deleted": True,
        "versions": 2,
        "linked": 1,
    }


async def memory_view(db: asyncpg.Connection, t: str, ids: Ids) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT memory_id, status FROM memory.memories "
        "WHERE tenant_id = $1 AND memory_id = ANY($2)",
        t,
        [ids.memory, ids.forgotten],
    )
    job = await db.fetchval(
        "SELECT state FROM memory.jobs WHERE tenant_id = $1 AND job_id = $2", t, ids.job
    )
    return {"memories": {r["memory_id"]: r["status"] for r in rows}, "job": job}


async def audited(db: asyncpg.Connection) -> list[tuple[str, uuid.UUID, str]]:
    rows = await db.fetch(
        "SELECT tenant_id, event_id, type FROM audit.events WHERE producer = 'tests' "
        "ORDER BY stream, stream_seq"
    )
    return [(r["tenant_id"], r["event_id"], r["type"]) for r in rows]


def producer_types() -> set[str]:
    """Every event type but those engram's services emit for each other (engram.*)."""
    kinds = {e.model_fields["type"].default for e in EVENTS}
    return {k for k in kinds if not k.startswith("engram.")}


async def test_every_event_type_under_one_event_id_in_four_tenants_takes_effect_in_each(
    workers: None, nc: NatsClient, db: asyncpg.Connection
) -> None:
    ids = {t: Ids.new() for t in TENANTS}
    state = same_event_ids(state_events, ids)
    rest = same_event_ids(chat_and_memory_events, ids)
    sent = {t: state[t] + rest[t] for t in TENANTS}
    assert {e.type for e in sent["acme"]} == producer_types()  # every one a producer may send
    bus = Bus(nc)

    # STATE first: the session end below must find each tenant's state at version 3.
    await bus.send(state)
    await eventually(
        lambda: states(db),
        lambda s: {t: s.get(t, (0,))[0] for t in TENANTS} == dict.fromkeys(TENANTS, 3),
        timeout=WAIT_S,
    )
    await bus.send(rest)
    await eventually(lambda: everything_acked(nc), timeout=WAIT_S)
    # Every event again, with no header: stored again, dropped by each inbox.
    await bus.send({t: sent[t] for t in TENANTS}, mode="none")
    await eventually(lambda: everything_acked(nc), timeout=WAIT_S)

    # ingest: each tenant's conversation, session, messages, edit, delete and file.
    for t in TENANTS:
        assert await ingest_view(db, t, ids[t]) == ingest_done(t), t
    # checkpointer: versions 1-3 from STATE, then the session end (4) emptied the session.
    final = await states(db)
    for t in TENANTS:
        assert final[t] == (4, {"tenant": t}, {}), t
    # memory: a write each, one forgotten, a consolidation job done.
    for t in TENANTS:
        view = await eventually(
            lambda t=t: memory_view(db, t, ids[t]), lambda v: v["job"] == "done", timeout=WAIT_S
        )
        assert view == {
            "memories": {ids[t].memory: "active", ids[t].forgotten: "forgotten"},
            "job": "done",
        }, t
    # context: each tenant's template, and the tombstone of the one it deleted.
    for t in TENANTS:
        rows = await db.fetch(
            "SELECT name, segments->0->>'text' AS text, deleted_at IS NOT NULL AS deleted "
            "FROM context.templates WHERE tenant_id = $1 ORDER BY name",
            t,
        )
        assert [tuple(r) for r in rows] == [
            ("old", None, True),
            ("persona", f"You are {t}'s agent.", False),
        ], t
    # embedder: each tenant's source (named after it, one document), the other removed.
    for t in TENANTS:
        rows = await db.fetch(
            "SELECT source_id, name, document_count, removed_at IS NOT NULL AS removed "
            "FROM embedder.knowledge_sources WHERE tenant_id = $1 ORDER BY removed",
            t,
        )
        assert [tuple(r) for r in rows] == [
            (ids[t].source, t, 1, False),
            (ids[t].removed_source, "x", 0, True),
        ], t
    # audit: every copy JetStream stored, under its own tenant, both rounds.
    trail = await eventually(
        lambda: audited(db), lambda rows: len(rows) == sum(bus.stored.values()), timeout=WAIT_S
    )
    assert Counter(t for t, _, _ in trail) == bus.stored
    for t in TENANTS:
        assert Counter((eid, kind) for tt, eid, kind in trail if tt == t) == Counter(
            (e.event_id, e.type) for e in sent[t] * 2
        ), t


async def test_a_stale_patch_under_a_shared_event_id_is_a_conflict_of_each_tenant(
    env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    tenants = ("acme", "globex")
    first, stale = uuid.uuid4(), uuid.uuid4()
    events = [cp.patch([cp.add("/local/a", 1)], tenant=t, event_id=first) for t in tenants] + [
        cp.patch([cp.add("/local/b", 2)], expected=0, tenant=t, event_id=stale) for t in tenants
    ]
    js = nc.jetstream()
    for event in events:
        await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())
    async with TestApp(checkpointer_app(cp.settings_for(env))[0]):
        await eventually(lambda: everything_acked(nc, [("STATE", "checkpointer")]), timeout=WAIT_S)
    assert {t: v[0] for t, v in (await states(db)).items()} == dict.fromkeys(tenants, 1)
    conflicts = await db.fetch("SELECT tenant_id, event_id FROM checkpoint.conflicts")
    assert sorted(tuple(c) for c in conflicts) == [(t, stale) for t in tenants]


async def test_an_old_producer_reusing_a_bare_id_in_another_tenant_is_told_it_was_dropped(
    env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    """Two tenants of a producer that still sends the bare event_id: JetStream's window
    keys on the header alone, so it drops the second, and says so in the publish ack (it
    is not silent to the producer). Sent again with the documented header, it is stored
    and applied; the first tenant's event is not applied twice."""
    js = nc.jetstream()
    shared = uuid.uuid4()
    first, second = (
        f.conversation(uuid.uuid4(), tenant=t, title=t).model_copy(update={"event_id": shared})
        for t in ("acme", "globex")
    )
    bare = {"Nats-Msg-Id": str(shared)}
    assert not (
        await js.publish(first.type, first.model_dump_json().encode(), headers=bare)
    ).duplicate
    assert (
        await js.publish(second.type, second.model_dump_json().encode(), headers=bare)
    ).duplicate
    for event in (first, second):
        ack = await js.publish(
            event.type, event.model_dump_json().encode(), headers=event.headers()
        )
        assert not ack.duplicate
    async with TestApp(ingest_app(ingest_settings(env))[0]):
        await eventually(lambda: drained(nc, "CHAT", "ingest"), timeout=WAIT_S)
    rows = await db.fetch("SELECT tenant_id, title FROM ingest.conversations ORDER BY tenant_id")
    assert [tuple(r) for r in rows] == [("acme", "acme"), ("globex", "globex")]
    inbox = await db.fetch("SELECT tenant_id, event_id FROM ingest.inbox ORDER BY tenant_id")
    assert [tuple(r) for r in inbox] == [("acme", shared), ("globex", shared)]
