"""Per-state publish order with several replicas: the ordering gate and the parking lot.

Replicas share one durable pull consumer on STATE, so two messages of one state can be
in flight at two replicas at once, and the later one could commit first; row locks alone
serialize them but do not order them. After a batch has locked its states' rows, the gate
asks JetStream for the consumer's ack floor and looks at every message between the floor
and the batch (not in the batch): their states are read once with JetStream direct get
and remembered by stream sequence (messages are immutable). An earlier message of the
same state is *done* when it is applied (its event id is in the inbox) or, once the ack
floor has passed it, dead-lettered; parked messages are never done.

A message with an earlier message of its state not done is *parked*: stored in
``checkpoint.parked`` with what it waits for, in the batch's transaction, and then acked
like any applied message (no nak, no redelivery delay, no delivery count used up).
Whoever next holds the state's row lock (the batch applying the predecessor, a later
batch, or the periodic sweep for predecessors that were dead-lettered) applies parked
messages, in stream order, as soon as everything they wait for is done. Because the
decision is made under the row lock, a predecessor committed elsewhere is always seen.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.checkpointer import repo
from services.checkpointer.repo import Key
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import Connection
from services.runtime.inbox import InboxKey

if TYPE_CHECKING:
    from services.checkpointer.writer import Delivered

_REMEMBER = 200_000
_CONCURRENT_GETS = 64


class Ref(NamedTuple):
    """One message: its stream sequence and event id."""

    seq: int
    event_id: UUID


Known = tuple[Key | None, UUID | None]  # a message's state and event id, if readable


def key_of(data: bytes) -> Known:
    """The state a raw STATE message is about, or (None, None) if it cannot be read (an
    invalid message is dead-lettered and never applied, so it blocks nothing)."""
    try:
        body = orjson.loads(data)
        payload = body["payload"]
        key = (str(body["tenant_id"]), str(payload["user_id"]), str(payload["agent_id"]))
        return key, UUID(str(body["event_id"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, None


@dataclass(frozen=True)
class Candidate:
    """A message that may apply now: new in this batch, or parked earlier."""

    seq: int
    event_id: UUID
    key: Key
    waits_for: tuple[Ref, ...] = ()
    parked: bool = False
    event: Delivered | None = None  # the decoded message (new) or None (parked: its row)

    def delivered(self) -> Delivered:
        """The decoded message of a new candidate (a parked one is read from its row)."""
        assert self.event is not None, f"message {self.seq} is parked: read it from its row"
        return self.event


def plan(
    candidates: Sequence[Candidate], done: set[int]
) -> tuple[list[Candidate], list[Candidate]]:
    """Pure: which candidates apply now (in stream order) and which wait (parked, with
    what they still wait for). A candidate waits while an earlier message of its state is
    not done, including an earlier candidate that waits."""
    ready: list[Candidate] = []
    waiting: list[Candidate] = []
    blocked: dict[Key, list[Ref]] = {}
    done = set(done)
    for c in sorted(candidates, key=lambda c: c.seq):
        pending = [ref for ref in c.waits_for if ref.seq not in done and ref.seq < c.seq]
        pending += blocked.get(c.key, [])
        if pending:
            waiting.append(replace(c, waits_for=tuple(sorted(set(pending)))))
            blocked.setdefault(c.key, []).append(Ref(c.seq, c.event_id))
        else:
            ready.append(c)
            done.add(c.seq)
    return ready, waiting


class OrderingGate:
    """A component: it reads the consumer's ack floor and earlier messages through the
    worker's JetStream connection, which it is given at start (before the consumers)."""

    name = "ordering-gate"

    def __init__(self, stream: str, durable: str) -> None:
        self._stream = stream
        self._durable = durable
        self._jetstream: JetStreamContext | None = None
        self._known: OrderedDict[int, Known] = OrderedDict()
        self.parked = 0  # messages this replica parked

    async def start(self, ctx: WorkerContext) -> None:
        self._jetstream = ctx.js

    async def stop(self) -> None:
        self._jetstream = None

    def health(self) -> Health:
        if self._jetstream is None:
            return Health(self.name, False, "not started")
        return Health(self.name, True, f"{self.parked} parked")

    def _js(self) -> JetStreamContext:
        if self._jetstream is None:
            raise NotStarted("the ordering gate")
        return self._jetstream

    def _remember(self, seq: int, known: Known) -> None:
        self._known[seq] = known
        self._known.move_to_end(seq)
        while len(self._known) > _REMEMBER:
            self._known.popitem(last=False)

    async def floor(self) -> int:
        info = await self._js().consumer_info(self._stream, self._durable)
        return info.ack_floor.stream_seq if info.ack_floor else 0

    async def earlier(self, candidates: Sequence[Candidate], floor: int) -> list[Candidate]:
        """The new candidates, each with the earlier messages of its state in flight."""
        for c in candidates:
            self._remember(c.seq, (c.key, c.event_id))
        mine = {c.seq for c in candidates}
        gap = [seq for seq in range(floor + 1, max(mine, default=0)) if seq not in mine]
        await self._learn([seq for seq in gap if seq not in self._known])
        by_key: dict[Key, list[Ref]] = {}
        for seq in gap:
            key, event_id = self._known.get(seq, (None, None))
            if key is not None and event_id is not None:
                by_key.setdefault(key, []).append(Ref(seq, event_id))
        return [
            replace(c, waits_for=tuple(r for r in by_key.get(c.key, ()) if r.seq < c.seq))
            for c in candidates
        ]

    async def _learn(self, seqs: list[int]) -> None:
        js = self._js()
        for start in range(0, len(seqs), _CONCURRENT_GETS):
            chunk = seqs[start : start + _CONCURRENT_GETS]
            found = await asyncio.gather(*(self._read(js, seq) for seq in chunk))
            for seq, known in zip(chunk, found, strict=True):
                self._remember(seq, known)

    async def _read(self, js: JetStreamContext, seq: int) -> Known:
        try:
            msg = await js.get_msg(self._stream, seq=seq, direct=True)
        except NotFoundError:  # deleted (max age) or never a message
            return None, None
        return key_of(msg.data or b"")


async def done_among(
    conn: Connection, candidates: Sequence[Candidate], floor: int, parked: set[int]
) -> set[int]:
    """Sequences the ``candidates`` wait for that are done: applied (in the candidate's
    tenant: event ids are per tenant), or passed by the ack floor, and not parked."""
    refs = {(c.key[0], ref) for c in candidates for ref in c.waits_for}
    applied = await repo.applied_events(conn, [InboxKey(t, ref.event_id) for t, ref in refs])
    return {
        ref.seq
        for t, ref in refs
        if ref.seq not in parked and (InboxKey(t, ref.event_id) in applied or ref.seq <= floor)
    }
