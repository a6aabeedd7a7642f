"""Crash test of the ingest worker: ``kill -9`` it four times while it consumes 10,000
CHAT events, restart it each time, and check that nothing was lost or stored twice.

The worker runs as a real process (`engram run ingest`), exactly as in production,
talking to NATS through a small TCP proxy of the test. Two kills are blind: they land
anywhere (mid-transaction, which PostgreSQL rolls back, or between batches). Two land
exactly after a COMMIT whose acks the proxy held back, so JetStream delivers that whole
committed batch again and only the inbox stands between it and duplicate rows. A killed
worker's messages come back only after the ack wait, later than the restart takes, so the
new worker sees the stream reordered (an edit before the message it edits, a session's
end before its last messages) and must absorb that too.

What is checked, against what the published events say must be stored: messages,
message_versions (the original plus exactly one row per edit, matched by event id),
versions and deleted flags per message, conversations, sessions with their exact
message_count / total_tokens / status, one inbox row per event, and an empty DLQ.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts.envelope import Envelope
from tests import factories as f
from tests.conftest import Env
from tests.connected.worker_process import WorkerProcess, unacked, wait_for

pytestmark = pytest.mark.connected

N_EVENTS = 10_000
# When to kill: the fraction of the expected messages stored, and where. "anywhere" is a
# blind kill -9 (mid-transaction, between batches...); "after-commit" lands right after a
# COMMIT whose acks never reached JetStream, so its whole batch is delivered again. 0.46
# comes with the first commit after the restart that follows the 0.45 kill: that kill hits
# a worker still recovering.
KILLS = ((0.20, "anywhere"), (0.45, "after-commit"), (0.46, "anywhere"), (0.70, "after-commit"))
SEED = 20261101
ACK_WAIT_S = 2.0
WORKER_ENV = {
    "INGEST_BATCH_SIZE": "200",  # small batches, so a kill lands mid-stream
    # A killed worker's messages come back after 2 s: soon, but later than a restart
    # takes (about 1 s), so the new worker first gets newer events.
    "INGEST_ACK_WAIT_S": str(ACK_WAIT_S),
    "INGEST_RETRY_BASE_S": "0.2",  # an edit that arrives before its message: nak 0.2 s...
    "INGEST_RETRY_MAX_S": "2",
    "INGEST_MAX_DELIVER": "20",  # ...and plenty of deliveries before the DLQ
    "INGEST_FETCH_WAIT_S": "0.5",
    "INGEST_DRAIN_TIMEOUT_S": "5",
}


# --- the workload --------------------------------------------------------------------


@dataclass
class SessionExpect:
    conversation_id: UUID
    message_count: int = 0
    total_tokens: int = 0
    ended: bool = False


@dataclass
class Workload:
    """The published events, and what the database must hold once they are all applied."""

    events: list[Envelope] = field(default_factory=list)
    conversations: set[UUID] = field(default_factory=set)
    sessions: dict[UUID, SessionExpect] = field(default_factory=dict)
    created_events: dict[UUID, UUID] = field(default_factory=dict)  # message_id -> event_id
    edit_events: dict[UUID, UUID] = field(default_factory=dict)  # event_id -> message_id
    edits: Counter[UUID] = field(default_factory=Counter)  # message_id -> number of edits
    deleted: set[UUID] = field(default_factory=set)


@dataclass
class _Conversation:
    cid: UUID
    tenant: str
    user: str
    agent: str
    sessions_left: int
    session: UUID | None = None
    left_in_session: int = 0
    live: list[UUID] = field(default_factory=list)  # messages not deleted: may be edited
    last: UUID | None = None


class _Builder:
    """A realistic, deterministic mix of CHAT events from interleaved conversations.

    Each conversation is created, then has one to three sessions; a session is started,
    carries a run of user/assistant (and some tool/system) messages with an occasional
    edit or delete of an earlier message of the conversation, and is ended. A dozen or
    more conversations run at once (their events interleave), and the stream stops at
    exactly ``n_events``, leaving the last sessions open, as a live system would.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.w = Workload()
        self.clock = f.T0
        self.active: list[_Conversation] = []

    def build(self, n_events: int) -> Workload:
        while len(self.w.events) < n_events:
            self.clock += timedelta(milliseconds=self.rng.randint(5, 400))
            if len(self.active) < 12 or (len(self.active) < 25 and self.rng.random() < 0.02):
                self.new_conversation()
                continue
            conv = self.rng.choice(self.active)
            roll = self.rng.random()
            if conv.session is None:
                self.start_session(conv)
            elif conv.left_in_session <= 0:
                self.end_session(conv)
            elif roll < 0.05 and conv.live:
                self.edit(conv)
            elif roll < 0.07 and len(conv.live) > 3:
                self.delete(conv)
            else:
                self.message(conv)
        return self.w

    def new_conversation(self) -> None:
        rng = self.rng
        conv = _Conversation(
            cid=uuid4(),
            tenant=rng.choice(("acme", "globex", "initech")),
            user=f"u-{rng.randint(1, 400)}",
            agent=rng.choice(("travel-bot", "coder", "support")),
            sessions_left=rng.randint(1, 3),
        )
        self.active.append(conv)
        self.w.conversations.add(conv.cid)
        self.w.events.append(
            f.conversation(
                conv.cid,
                tenant=conv.tenant,
                at=self.clock,
                title=f"chat {len(self.w.conversations)}",
                user_id=conv.user,
                agent_id=conv.agent,
                metadata={"channel": rng.choice(("web", "ios", "slack"))},
            )
        )

    def start_session(self, conv: _Conversation) -> None:
        conv.session, conv.left_in_session = uuid4(), self.rng.randint(15, 90)
        self.w.sessions[conv.session] = SessionExpect(conv.cid)
        self.w.events.append(
            f.session_start(
                conv.session,
                conv.cid,
                tenant=conv.tenant,
                at=self.clock,
                user_id=conv.user,
                agent_id=conv.agent,
                metadata={"client": "web"},
            )
        )

    def end_session(self, conv: _Conversation) -> None:
        assert conv.session is not None
        self.w.sessions[conv.session].ended = True
        self.w.events.append(
            f.session_end(
                conv.session,
                conv.cid,
                tenant=conv.tenant,
                at=self.clock,
                user_id=conv.user,
                agent_id=conv.agent,
                reason=self.rng.choice(("timeout", "user_left")),
            )
        )
        conv.session, conv.sessions_left = None, conv.sessions_left - 1
        if conv.sessions_left <= 0:
            self.active.remove(conv)

    def edit(self, conv: _Conversation) -> None:
        mid = self.rng.choice(conv.live[-20:])  # a recent message, sometimes edited twice
        self.w.edits[mid] += 1
        event = f.edit(
            mid,
            f"edit {self.w.edits[mid]}: {self.rng.random():.6f}",
            tenant=conv.tenant,
            at=self.clock,
            edited_by=conv.user,
            reason=self.rng.choice((None, "typo", "clarify")),
        )
        self.w.edit_events[event.event_id] = mid
        self.w.events.append(event)

    def delete(self, conv: _Conversation) -> None:
        mid = conv.live.pop(self.rng.randrange(len(conv.live) - 1))
        self.w.deleted.add(mid)
        self.w.events.append(
            f.delete(
                mid, tenant=conv.tenant, at=self.clock, deleted_by=conv.user, reason="user request"
            )
        )

    def message(self, conv: _Conversation) -> None:
        assert conv.session is not None
        rng = self.rng
        role = rng.choices(("user", "assistant", "tool", "system"), (45, 45, 7, 3))[0]
        tokens = None if role == "system" else rng.randint(1, 200 if role == "user" else 900)
        mid = uuid4()
        event = f.message(
            conv.cid,
            mid,
            tenant=conv.tenant,
            at=self.clock,
            role=role,
            content=f"{role} says {rng.random():.8f} " * rng.randint(1, 6),
            session_id=conv.session,
            parent_message_id=None if role == "user" else conv.last,
            metadata={"tokens": tokens, "model": "gpt-4.1" if role == "assistant" else None},
            sender_user_id=conv.user if role == "user" else None,
            sender_agent_id=conv.agent if role in ("assistant", "tool") else None,
        )
        session = self.w.sessions[conv.session]
        session.message_count += 1
        session.total_tokens += tokens or 0
        self.w.created_events[mid] = event.event_id
        self.w.events.append(event)
        conv.live.append(mid)
        conv.last = mid
        conv.left_in_session -= 1


def chat_workload(n_events: int, seed: int) -> Workload:
    return _Builder(seed).build(n_events)


async def publish_all(js: JetStreamContext, events: list[Envelope]) -> None:
    """Publish asynchronously (acks awaited together), with Nats-Msg-Id = event_id."""
    futures = [
        await js.publish_async(e.type, e.model_dump_json().encode(), headers=e.headers())
        for e in events
    ]
    acks = await asyncio.gather(*futures)
    assert not any(ack.duplicate for ack in acks)
    assert (await js.stream_info("CHAT")).state.messages == len(events)


class NatsProxy:
    """A TCP proxy between the worker and nats-server, to kill at one exact point.

    ``hold()`` stops forwarding what the worker sends (acks, pull requests) while what the
    server sends still flows: the batch in hand is processed and committed, but its acks
    never reach JetStream. ``drop()`` then cuts the worker's connections, throwing the
    held bytes away, the way a crash between COMMIT and the acks would. ``release()``
    without a drop only delays the bytes, so the protocol stream stays intact.
    """

    def __init__(self, upstream_url: str) -> None:
        host, port = upstream_url.removeprefix("nats://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def drop(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w, held=True)),
            asyncio.create_task(self._pump(server_r, client_w, held=False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
            self._links.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        while data := await reader.read(65_536):
            if held:
                await self._flowing.wait()
            writer.write(data)
            await writer.drain()


async def kill_after_commit(
    worker: WorkerProcess, proxy: NatsProxy, stored: Callable[[], Awaitable[int]]
) -> int:
    """Hold the worker's outgoing NATS traffic, wait for its next COMMIT, then kill -9 it
    and cut its connection: that batch is committed, and none of its acks arrived."""
    for _ in range(20):
        proxy.hold()
        before = await stored()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            worker.check_alive()
            now = await stored()
            if now > before:
                worker.kill()
                await proxy.drop()
                proxy.release()
                return now
            await asyncio.sleep(0.005)
        # It was between batches and its next pull request is held: let it through, retry.
        proxy.release()
        await asyncio.sleep(0.05)
    raise AssertionError("the worker committed nothing while its acks were held")


async def kill_and_restart(
    worker: WorkerProcess, proxy: NatsProxy, stored: Callable[[], Awaitable[int]], n_messages: int
) -> list[tuple[str, int]]:
    """Start the worker, then kill -9 and restart it at each of ``KILLS``."""
    kills: list[tuple[str, int]] = []
    jitter = random.Random()  # where a blind kill lands varies from run to run
    worker.start()
    for fraction, where in KILLS:
        # At least one commit by the restarted worker, so that each kill hits a live one.
        threshold = max(int(n_messages * fraction), kills[-1][1] + 1 if kills else 0)
        seen = await wait_for(
            stored,
            threshold.__le__,
            worker=worker,
            within_s=40,
            what=f"{threshold} messages before kill {len(kills) + 1}",
        )
        if where == "after-commit":
            seen = await kill_after_commit(worker, proxy, stored)
        else:
            await asyncio.sleep(jitter.uniform(0, 0.05))
            worker.kill()
        kills.append((where, seen))
        worker.start()
    return kills


# --- what must be stored ---------------------------------------------------------------


async def assert_inbox(db: asyncpg.Connection, w: Workload) -> None:
    rows = await db.fetch("SELECT event_id FROM ingest.inbox")
    assert len(rows) == len(w.events)
    assert {r["event_id"] for r in rows} == {e.event_id for e in w.events}


async def assert_messages(db: asyncpg.Connection, w: Workload) -> None:
    rows = await db.fetch(
        "SELECT message_id, version, deleted_at IS NOT NULL AS deleted FROM ingest.messages"
    )
    assert len(rows) == len(w.created_events), "lost or duplicated messages"
    assert {r["message_id"] for r in rows} == set(w.created_events)
    wrong = {
        r["message_id"]: r["version"] for r in rows if r["version"] != 1 + w.edits[r["message_id"]]
    }
    assert not wrong, f"{len(wrong)} messages with a wrong version, e.g. {wrong.popitem()}"
    assert {r["message_id"] for r in rows if r["deleted"]} == w.deleted


async def assert_versions(db: asyncpg.Connection, w: Workload) -> None:
    rows = await db.fetch("SELECT message_id, version, event_id FROM ingest.message_versions")
    assert len(rows) == len(w.created_events) + len(w.edit_events)
    originals = {r["message_id"]: r["event_id"] for r in rows if r["version"] == 1}
    assert originals == w.created_events
    edits = Counter(r["event_id"] for r in rows if r["version"] > 1)
    assert set(edits) == set(w.edit_events), "lost edits"
    assert max(edits.values()) == 1, "an edit stored twice"
    assert all(w.edit_events[r["event_id"]] == r["message_id"] for r in rows if r["version"] > 1)


async def assert_conversations_and_sessions(db: asyncpg.Connection, w: Workload) -> None:
    conversations = await db.fetch(
        "SELECT conversation_id, is_placeholder FROM ingest.conversations"
    )
    assert len(conversations) == len(w.conversations)
    assert {r["conversation_id"] for r in conversations} == w.conversations
    assert not any(r["is_placeholder"] for r in conversations)

    rows = {
        r["session_id"]: r
        for r in await db.fetch(
            "SELECT session_id, conversation_id, message_count, total_tokens, status, "
            "started_at IS NOT NULL AS started FROM ingest.conversation_sessions"
        )
    }
    assert set(rows) == set(w.sessions)
    wrong = {}
    for sid, expect in w.sessions.items():
        row = rows[sid]
        got = (
            row["conversation_id"],
            row["message_count"],
            row["total_tokens"],
            row["status"],
            row["started"],
        )
        want = (
            expect.conversation_id,
            expect.message_count,
            expect.total_tokens,
            "ended" if expect.ended else "active",
            True,
        )
        if got != want:
            wrong[sid] = (got, want)
    assert not wrong, f"{len(wrong)} sessions wrong (got, want), e.g. {wrong.popitem()}"


# --- the test ------------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_while_consuming_loses_and_duplicates_nothing(
    env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    started = time.monotonic()
    w = chat_workload(N_EVENTS, SEED)
    n_messages = len(w.created_events)
    assert len(w.events) == N_EVENTS
    assert n_messages > 8_000 and len(w.edit_events) > 300 and len(w.deleted) > 100
    assert sum(s.ended for s in w.sessions.values()) > 50

    js = nc.jetstream(publish_async_max_pending=2_000)
    await publish_all(js, w.events)
    published_s = time.monotonic() - started

    async def stored() -> int:
        return int(await db.fetchval("SELECT count(*) FROM ingest.messages"))

    proxy = NatsProxy(env.servers.stack.nats.url)  # host and port only
    await proxy.start()
    # Through the proxy, as the ingest's own NATS user.
    through = proxy.url.replace("nats://", env.nats_login("ingest").split("@")[0] + "@")
    logins = {"NATS_URL": through, "DATABASE_URL": env.login("ingest")}
    worker = WorkerProcess("ingest", logins | WORKER_ENV, tmp_path / "ingest-worker.log")
    try:
        kills = await kill_and_restart(worker, proxy, stored, n_messages)
        await wait_for(
            lambda: unacked(js, "ingest"),
            (0, 0).__eq__,
            worker=worker,
            within_s=60,
            what="no pending and no ack-pending messages",
            interval_s=0.1,
        )
        consumed_s = time.monotonic() - started

        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.ack_wait == pytest.approx(ACK_WAIT_S)
        redelivered = info.delivered.consumer_seq - N_EVENTS
        assert redelivered > 0, "no redelivery at all: the kills hit no in-flight work"

        # Every message is acked (after COMMIT) or dead-lettered: compare with the events.
        dlq = (await js.stream_info("DLQ")).state.messages
        assert dlq == 0, f"{dlq} events dead-lettered"
        await assert_inbox(db, w)
        await assert_messages(db, w)
        await assert_versions(db, w)
        await assert_conversations_and_sessions(db, w)

        # Quiet: nothing more is applied later (no late duplicate), and the worker lives.
        versions = await db.fetchval("SELECT count(*) FROM ingest.message_versions")
        await asyncio.sleep(0.5)
        assert await stored() == n_messages
        assert await db.fetchval("SELECT count(*) FROM ingest.message_versions") == versions
        worker.check_alive()
        print(
            f"\npublished {N_EVENTS} events ({n_messages} messages, {len(w.edit_events)} "
            f"edits, {len(w.deleted)} deletes, {len(w.sessions)} sessions, "
            f"{len(w.conversations)} conversations) in {published_s:.1f}s; killed at "
            f"{kills} stored messages; {redelivered} redeliveries; all applied exactly "
            f"once after {consumed_s:.1f}s"
        )
    except BaseException:
        print(f"\n--- worker output ({worker.log_path}) ---\n{worker.log_tail()}")
        raise
    finally:
        worker.kill()
        await proxy.close()
