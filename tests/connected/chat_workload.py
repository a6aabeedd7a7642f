"""A realistic, deterministic CHAT workload for the failure tests (conversations,
sessions, messages, edits, deletes, interleaved), what it must leave stored, and the
checks that it did: every event applied exactly once, whatever the test did to the
workers and servers on the way."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
from nats.js import JetStreamContext

from contracts.envelope import Envelope
from tests import factories as f

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


async def assert_stored(db: asyncpg.Connection, w: Workload) -> None:
    """Every event of ``w`` applied exactly once: inbox, messages, versions,
    conversations and sessions."""
    await assert_inbox(db, w)
    await assert_messages(db, w)
    await assert_versions(db, w)
    await assert_conversations_and_sessions(db, w)
