"""What the failure benches share (bench/outage.py, bench/chaos.py): an upstream chat
producer that publishes with ``Nats-Msg-Id`` and retries like one, the ``Expected`` record
of what JetStream stored, the workers as ``engram run`` processes, the observation of their
acks and consumers, the dead letters, and the check of the ingest tables against
``Expected``.

Imported after the bench has put the repository (or its code snapshot) on ``sys.path``;
``services`` is imported inside functions only, like bench/_servers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import chat
from contracts.envelope import Envelope

# --- the producer ------------------------------------------------------------------------


@dataclass
class Expected:
    """What was published (acknowledged by JetStream, not a duplicate)."""

    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    # (tenant, session_id) -> [messages, tokens]
    sessions: dict[tuple[str, uuid.UUID], list[int]] = field(default_factory=dict)
    ended: set[tuple[str, uuid.UUID]] = field(default_factory=set)
    publish_retries: int = 0
    conversations: set[uuid.UUID] = field(default_factory=set)
    # message_id -> (tenant, role, content now); edits and deletes applied
    texts: dict[uuid.UUID, tuple[str, str, str]] = field(default_factory=dict)
    created_events: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # message -> event
    edit_events: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # event -> message
    edits: Counter[uuid.UUID] = field(default_factory=Counter)  # message -> edits
    deleted: set[uuid.UUID] = field(default_factory=set)
    # (tenant, session) -> its messages not deleted (what a session summary is made of)
    session_messages: dict[tuple[str, uuid.UUID], set[uuid.UUID]] = field(default_factory=dict)
    message_session: dict[uuid.UUID, tuple[str, uuid.UUID]] = field(default_factory=dict)


@dataclass
class Conversation:
    tenant: str
    conversation_id: uuid.UUID
    session_id: uuid.UUID
    left: int  # messages still to send in the session
    sent: int = 0
    parent: uuid.UUID | None = None
    live: list[uuid.UUID] = field(default_factory=list)  # messages not deleted


TEXT = (
    "the hotel near the river has a late check-in and breakfast from seven; could you book "
    "two nights, compare prices, and send me the itinerary? Café, naïve, 東京, Zürich — fine. "
    "```python\nprint('ok')\n```"
)
WORDS = TEXT.split(" ")

# (rng, role, tenant) -> a message's text
TextSource = Callable[[random.Random, chat.Role, str], str]


def word_salad(rng: random.Random, role: chat.Role, tenant: str) -> str:
    """bench/outage.py's texts: short user turns, longer assistant turns, from WORDS."""
    words = rng.randint(3, 12) if role is chat.Role.user else rng.randint(10, 120)
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def publish_once(js: JetStreamContext, event: Envelope, expected: Expected) -> bool:
    """Publish with ``Nats-Msg-Id``, retrying a timed-out publish as an upstream producer
    would; False when JetStream says it stored the event already (a duplicate)."""
    data = event.model_dump_json().encode()
    for attempt in range(20):
        try:
            ack = await js.publish(event.type, data, headers=event.headers(), timeout=5)
            break
        except NatsTimeout:
            # Same Nats-Msg-Id: a retry of a publish that was stored is a duplicate.
            expected.publish_retries += 1
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
    else:
        raise RuntimeError(f"could not publish {event.type} {event.event_id}")
    if ack.duplicate:
        return False
    expected.events += 1
    expected.by_type[event.type] += 1
    return True


class Producer:
    """Chat traffic over a few tenants: each conversation opens with its creation and a
    session start, sends user/assistant turns with token counts in that session (with
    ``edit_share`` / ``delete_share`` of the turns an edit / delete of a recent message
    instead), and ends the session; a new conversation replaces it."""

    def __init__(
        self,
        nc: NatsClient,
        tenants: int,
        active: int,
        seed: int,
        *,
        texts: TextSource = word_salad,
        edit_share: float = 0.0,
        delete_share: float = 0.0,
        producer: str = "bench-outage",
    ) -> None:
        self.js = nc.jetstream()
        self.rng = random.Random(seed)
        self.tenants = [f"tenant-{i}" for i in range(tenants)]
        self.active: list[Conversation] = []
        self.queue: list[chat.ChatEnvelope] = []
        self.want_active = active
        self.expected = Expected()
        self.texts, self.edit_share, self.delete_share = texts, edit_share, delete_share
        self.producer = producer

    def _envelope(self, tenant: str) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4(),
            "tenant_id": tenant,
            "producer": self.producer,
            "occurred_at": datetime.now(UTC),
        }

    def _open(self) -> None:
        c = Conversation(
            tenant=self.rng.choice(self.tenants),
            conversation_id=uuid.uuid4(),
            session_id=uuid.uuid4(),
            left=self.rng.randint(4, 40),
        )
        self.active.append(c)
        user = f"u-{self.rng.randint(1, 500)}"
        self.queue.append(
            chat.ConversationCreated(
                **self._envelope(c.tenant),
                payload=chat.ConversationCreatedPayload(
                    conversation_id=c.conversation_id,
                    title=" ".join(self.rng.sample(WORDS, 4)),
                    user_id=user,
                    agent_id="travel-bot",
                ),
            )
        )
        self.queue.append(
            chat.SessionStarted(
                **self._envelope(c.tenant),
                payload=chat.SessionStartedPayload(
                    session_id=c.session_id,
                    conversation_id=c.conversation_id,
                    user_id=user,
                    agent_id="travel-bot",
                    metadata={"client": self.rng.choice(["ios", "web", "android"])},
                ),
            )
        )

    def _end(self, c: Conversation, reason: str) -> chat.SessionEnded:
        self.active.remove(c)
        return chat.SessionEnded(
            **self._envelope(c.tenant),
            payload=chat.SessionEndedPayload(
                session_id=c.session_id, conversation_id=c.conversation_id, reason=reason
            ),
        )

    def _message(self, c: Conversation) -> chat.MessageCreated:
        role = chat.Role.user if c.sent % 2 == 0 else chat.Role.assistant
        content = self.texts(self.rng, role, c.tenant)
        meta = chat.MessageMetadata(tokens=self.rng.randint(1, 2_000))
        if role is chat.Role.assistant:
            meta = chat.MessageMetadata(
                tokens=meta.tokens, model="gpt-4.1", latency_ms=round(self.rng.uniform(80, 3000))
            )
        mid = uuid.uuid4()
        event = chat.MessageCreated(
            **self._envelope(c.tenant),
            payload=chat.MessageCreatedPayload(
                message_id=mid,
                conversation_id=c.conversation_id,
                session_id=c.session_id,
                parent_message_id=c.parent,
                role=role,
                content=content,
                metadata=meta,
            ),
        )
        c.parent, c.sent, c.left = mid, c.sent + 1, c.left - 1
        c.live.append(mid)
        return event

    def _edit(self, c: Conversation) -> chat.MessageEdited:
        mid = self.rng.choice(c.live[-10:])  # a recent message, sometimes edited twice
        return chat.MessageEdited(
            **self._envelope(c.tenant),
            payload=chat.MessageEditedPayload(
                message_id=mid,
                content=self.texts(self.rng, chat.Role.user, c.tenant),
                edited_by="u-edit",
                reason=self.rng.choice([None, "typo"]),
            ),
        )

    def _delete(self, c: Conversation) -> chat.MessageDeleted:
        mid = c.live.pop(self.rng.randrange(len(c.live)))
        return chat.MessageDeleted(
            **self._envelope(c.tenant),
            payload=chat.MessageDeletedPayload(message_id=mid, deleted_by="u-del"),
        )

    def next_event(self) -> chat.ChatEnvelope:
        while not self.queue:
            if len(self.active) < self.want_active:
                self._open()
                continue
            c = self.rng.choice(self.active)
            roll = self.rng.random()
            if c.left <= 0:
                self.queue.append(self._end(c, "done"))
            elif roll < self.edit_share and c.live:
                self.queue.append(self._edit(c))
            elif roll < self.edit_share + self.delete_share and len(c.live) > 2:
                self.queue.append(self._delete(c))
            else:
                self.queue.append(self._message(c))
        return self.queue.pop(0)

    def closing(self) -> list[chat.ChatEnvelope]:
        """The events that end every open session (after the queued ones)."""
        pending, self.queue = self.queue, []
        return [*pending, *(self._end(c, "bench over") for c in list(self.active))]

    async def publish(self, event: chat.ChatEnvelope) -> None:
        if await publish_once(self.js, event, self.expected):
            record(self.expected, event)


def record(x: Expected, event: chat.ChatEnvelope) -> None:
    """What a stored chat event means for the ingest tables (and the others)."""
    if isinstance(event, chat.ConversationCreated):
        x.conversations.add(event.payload.conversation_id)
    elif isinstance(event, chat.SessionStarted):
        key = (event.tenant_id, event.payload.session_id)
        x.sessions.setdefault(key, [0, 0])
        x.session_messages.setdefault(key, set())
    elif isinstance(event, chat.MessageCreated):
        p = event.payload
        x.messages += 1
        assert p.session_id is not None
        key = (event.tenant_id, p.session_id)
        counters = x.sessions[key]
        counters[0] += 1
        counters[1] += p.metadata.tokens or 0
        x.texts[p.message_id] = (event.tenant_id, p.role.value, p.content)
        x.created_events[p.message_id] = event.event_id
        x.session_messages.setdefault(key, set()).add(p.message_id)
        x.message_session[p.message_id] = key
    elif isinstance(event, chat.MessageEdited):
        mid = event.payload.message_id
        tenant, role, _ = x.texts[mid]
        x.texts[mid] = (tenant, role, event.payload.content)
        x.edits[mid] += 1
        x.edit_events[event.event_id] = mid
    elif isinstance(event, chat.MessageDeleted):
        mid = event.payload.message_id
        x.deleted.add(mid)
        x.session_messages[x.message_session[mid]].discard(mid)
    elif isinstance(event, chat.SessionEnded):
        x.ended.add((event.tenant_id, event.payload.session_id))


# --- the workers ---------------------------------------------------------------------------


def start_worker(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``engram run <service>`` in a session of its own (so a ``kill -9`` of its group ends
    it and nothing else), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "engram"), "run", service],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def read_log(path: Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """What a worker said: its errors, and the lines about the database (or ``keys``)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    keys = tuple(keys) or ("holding the batch", "is back after", "batch failed", "Error:")
    said = [line for line in lines if any(k in line for k in keys)]
    return {
        "error_lines": sum(1 for line in lines if " ERROR " in line),
        "held_batches": sum(1 for line in lines if "holding the batch" in line),
        "batches_failed": sum(1 for line in lines if "batch failed" in line),
        "outage_lines": said[:40],
    }


# --- observing the workers ---------------------------------------------------------------


class Acks:
    """The workers' acks, seen on ``$JS.ACK.>`` as the admin: the delivery count of each
    message when it was acked (or nak'd, terminated, kept in progress), and when each
    consumer last acked."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.kinds: Counter[str] = Counter()
        self.delivered_hist: Counter[int] = Counter()
        # 'stream/consumer' -> stream seq -> the delivery counts it was acked at
        self.acked: dict[str, dict[int, list[int]]] = {}
        self.events: list[dict[str, Any]] = []  # naks, terminations, acks after a redelivery
        self.last_ack: dict[str, float] = {}  # consumer -> monotonic time of its last ack

    async def on_msg(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or with
        # <domain>.<account hash> after ACK and a random token at the end.
        if len(tokens) == 9:
            stream, consumer, delivered, sseq = tokens[2], tokens[3], tokens[4], tokens[5]
        elif len(tokens) >= 11:
            stream, consumer, delivered, sseq = tokens[4], tokens[5], tokens[6], tokens[7]
        else:
            return
        body = msg.data.split(b" ", 1)[0].decode(errors="replace") or "+ACK"
        self.kinds[f"{consumer}:{body}"] += 1
        key, n, seq = f"{stream}/{consumer}", int(delivered), int(sseq)
        now = time.monotonic()
        at = round(now - self.t0, 1)
        if body in ("+ACK", "+NXT"):
            self.last_ack[consumer] = now
            self.acked.setdefault(key, {}).setdefault(seq, []).append(n)
            self.delivered_hist[n] += 1
            if n > 1 and len(self.events) < 500:
                self.events.append({"at_s": at, "what": body, "on": key, "seq": seq, "n": n})
        elif body != "+WPI" and len(self.events) < 500:
            self.events.append({"at_s": at, "what": body, "on": key, "seq": seq, "n": n})

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, seqs in sorted(self.acked.items()):
            out[key] = {
                "messages_acked": len(seqs),
                "max_deliveries": max((max(v) for v in seqs.values()), default=0),
                "delivered_more_than_once": sum(1 for v in seqs.values() if max(v) > 1),
                "acked_more_than_once": sum(1 for v in seqs.values() if len(v) > 1),
            }
        return out


async def consumers(
    nc: NatsClient, wanted: Sequence[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Consumer info by 'stream/durable' of ``wanted`` (default: ingest on CHAT and audit on
    every stream); those that do not exist (yet) are left out."""
    from services.runtime.bus import CHAT, STREAMS

    js = nc.jetstream()
    if wanted is None:
        wanted = [(CHAT.name, "ingest"), *((s.name, "audit") for s in STREAMS)]
    out: dict[str, Any] = {}
    for stream, durable in wanted:
        with contextlib.suppress(NotFoundError):
            out[f"{stream}/{durable}"] = await js.consumer_info(stream, durable)
    return out


def caught_up(
    infos: dict[str, Any], required: Sequence[str] = ("CHAT/ingest", "CHAT/audit")
) -> bool:
    """Every consumer in ``infos`` has nothing pending or unacked, and ``required`` exist."""
    return all(r in infos for r in required) and all(
        i.num_pending == 0 and i.num_ack_pending == 0 for i in infos.values()
    )


async def dead_letters(nc: NatsClient) -> list[dict[str, str]]:
    """The headers of every message of the DLQ stream."""
    js = nc.jetstream()
    depth = (await js.stream_info("DLQ")).state.messages
    if not depth:
        return []
    sub = await js.pull_subscribe(
        "dlq.>", stream="DLQ", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[dict[str, str]] = []
    while len(found) < depth:
        try:
            msgs = await sub.fetch(100, timeout=5)
        except NatsTimeout:
            break
        for m in msgs:
            found.append({"subject": m.subject, **dict(m.headers or {})})
            await m.ack()
    await sub.unsubscribe()
    return found


# --- the ingest tables against what was published ------------------------------------------


async def check_ingest(x: Expected, db: asyncpg.Connection) -> dict[str, Any]:
    """Messages, versions (one per edit, matched by event id), deleted flags, conversations
    and every session's message_count / total_tokens / status, against ``x``; read as the
    superuser (past the tenant wall). ``lost`` / ``duplicated`` count what is missing and
    what is stored more than once."""
    rows = await db.fetch(
        "SELECT tenant_id, session_id, message_count, total_tokens, status "
        "FROM ingest.conversation_sessions"
    )
    stored = {(r["tenant_id"], r["session_id"]): r for r in rows}
    wrong: list[dict[str, Any]] = []
    over = 0
    for key, (count, tokens) in x.sessions.items():
        r = stored.get(key)
        got = (r["message_count"], r["total_tokens"]) if r else None
        ended_ok = r is not None and (r["status"] == "ended") == (key in x.ended)
        if got != (count, tokens) or not ended_ok:
            over += bool(got and (got[0] > count or got[1] > tokens))
            wrong.append(
                {
                    "tenant": key[0],
                    "session": str(key[1]),
                    "expected": [count, tokens],
                    "stored": list(got) if got else None,
                    "status": r["status"] if r else None,
                }
            )
    messages = await db.fetch(
        "SELECT message_id, version, deleted_at IS NOT NULL AS deleted FROM ingest.messages"
    )
    ids = {r["message_id"] for r in messages}
    missing = [m for m in x.created_events if m not in ids]
    bad_version = [
        str(r["message_id"])
        for r in messages
        if r["message_id"] in x.created_events and r["version"] != 1 + x.edits[r["message_id"]]
    ]
    bad_deleted = {r["message_id"] for r in messages if r["deleted"]} ^ x.deleted
    versions = await db.fetch(
        "SELECT event_id, count(*) AS n FROM ingest.message_versions WHERE version > 1 "
        "GROUP BY event_id"
    )
    edit_rows = {r["event_id"]: int(r["n"]) for r in versions}
    edits_lost = [e for e in x.edit_events if e not in edit_rows]
    edits_twice = [str(e) for e, n in edit_rows.items() if n > 1]
    conversations = int(await db.fetchval("SELECT count(*) FROM ingest.conversations"))
    expected_conversations = x.by_type.get("chat.conversation.created", 0)
    result: dict[str, Any] = {
        "rows_ingest_messages": len(messages),
        "rows_ingest_conversations": conversations,
        "conversations_expected": expected_conversations,
        "sessions_expected": len(x.sessions),
        "sessions_stored": len(rows),
        "sessions_wrong": len(wrong),
        "sessions_wrong_detail": wrong[:50],
        "sessions_unexpected": len(set(stored) - set(x.sessions)),
        "tokens_expected": sum(t for _, t in x.sessions.values()),
        "tokens_stored": sum(int(r["total_tokens"]) for r in rows),
        "messages_missing": [str(m) for m in missing[:50]],
        "messages_wrong_version": bad_version[:50],
        "messages_wrong_deleted": [str(m) for m in list(bad_deleted)[:50]],
        "edits_expected": len(x.edit_events),
        "edits_lost": [str(e) for e in edits_lost[:50]],
        "edits_stored_twice": edits_twice[:50],
    }
    result["lost"] = len(missing) + len(edits_lost)
    result["duplicated"] = len(edits_twice) + over + max(0, len(messages) - x.messages)
    result["ok"] = bool(
        len(messages) == x.messages
        and not missing
        and not bad_version
        and not bad_deleted
        and not edits_lost
        and not edits_twice
        and conversations == expected_conversations
        and not wrong
        and not result["sessions_unexpected"]
    )
    return result
