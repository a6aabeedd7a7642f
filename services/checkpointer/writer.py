"""Applies a batch of STATE events (and session ends) inside the batch's transaction.

Per batch: lock the states' rows in key order (no deadlock between replicas), decide with
the ordering gate what applies now and what is parked (ordering.py), take each current
document from the in-memory cache when its version and hash equal the row's (else from
the row), apply the events in stream order (one version per patch or restore), then write
transitions, snapshots, conflicts, outbox rows and the new current rows with a few
set-based statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from uuid import UUID

import asyncpg

from contracts.chat import SessionEnded
from contracts.state import PARTITIONS, STATE_EVENT, StateEvent
from services.checkpointer import repo, repo_parked
from services.checkpointer.cache import Cached, StateCache
from services.checkpointer.changes import Changes
from services.checkpointer.ordering import Candidate, OrderingGate, Ref, done_among, plan
from services.checkpointer.patch import PatchRejected
from services.checkpointer.rows import Batch, Working, dead_letter
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.versions import canonical, empty_state, loads, state_hash
from services.runtime.db import Connection
from services.runtime.outbox import Outbox

EMPTY_CANONICAL = canonical(empty_state())
EMPTY_HASH = state_hash(EMPTY_CANONICAL)


class Job(NamedTuple):
    """One event to apply to one state."""

    key: repo.Key
    event: StateEvent | SessionEnded
    parked: asyncpg.Record | None = None  # the parked row it comes from: we dead-letter it


@dataclass(frozen=True)
class Delivered:
    """A decoded STATE event with its stream sequence and bytes (for the ordering gate)."""

    event: StateEvent
    seq: int
    data: bytes = b""

    @property
    def event_id(self) -> UUID:
        return self.event.event_id

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def tenant_id(self) -> str:
        return self.event.tenant_id

    @property
    def key(self) -> repo.Key:
        return (self.event.tenant_id, self.event.payload.user_id, self.event.payload.agent_id)


@dataclass
class StateWriter:
    settings: CheckpointerSettings
    outbox: Outbox  # conflicts and dead letters of parked messages, published after commit
    gate: OrderingGate | None = None
    cache: StateCache = field(init=False)
    changes: Changes = field(init=False)

    def __post_init__(self) -> None:
        self.cache = StateCache(self.settings.cache_states)
        self.changes = Changes(self.settings)

    async def apply_state(self, conn: Connection, items: Sequence[Delivered]) -> Mapping[UUID, str]:
        heads = await self._lock(conn, sorted({i.key for i in items}), create=True)
        await self._ordered(
            conn, heads, [Candidate(i.seq, i.event_id, i.key, event=i) for i in items]
        )
        return {}

    async def sweep(self, conn: Connection, limit: int = 100) -> int:
        """Apply parked messages whose predecessors are done (liveness when a predecessor
        was dead-lettered and no later message of its state arrives)."""
        keys = sorted(await repo_parked.parked_keys(conn, limit))
        if keys:
            await self._ordered(conn, await self._lock(conn, keys, create=False), [])
        return len(keys)

    async def apply_session_ends(
        self, conn: Connection, events: Sequence[SessionEnded]
    ) -> Mapping[UUID, str]:
        """chat.session.ended empties the session partition of that user + agent (of every
        agent of the user when the event names none)."""
        exact = sorted(
            {
                (e.tenant_id, e.payload.user_id, e.payload.agent_id)
                for e in events
                if e.payload.user_id and e.payload.agent_id
            }
        )
        heads = list((await self._lock(conn, exact, create=False)).values()) if exact else []
        for tenant, user in sorted(
            {
                (e.tenant_id, e.payload.user_id)
                for e in events
                if e.payload.user_id and not e.payload.agent_id
            }
        ):
            heads.extend(await repo.lock_user_states(conn, tenant, user))
        jobs = [
            Job(h.key, e)
            for e in events
            for h in heads
            if h.key[:2] == (e.tenant_id, e.payload.user_id)
            and e.payload.agent_id in (None, h.key[2])
        ]
        if jobs:
            await self._run(conn, heads, jobs)
        return {}

    async def _lock(
        self, conn: Connection, keys: Sequence[repo.Key], *, create: bool
    ) -> dict[repo.Key, repo.Head]:
        return await repo.lock_states(conn, keys, EMPTY_HASH, len(EMPTY_CANONICAL), create=create)

    async def _ordered(
        self, conn: Connection, heads: dict[repo.Key, repo.Head], new: list[Candidate]
    ) -> None:
        if self.gate is None:
            await self._run(
                conn,
                list(heads.values()),
                [Job(c.key, c.delivered().event) for c in sorted(new, key=lambda c: c.seq)],
            )
            return
        floor = await self.gate.floor()
        new = await self.gate.earlier(new, floor)
        state_key = {h.state_id: h.key for h in heads.values()}
        rows = {r["stream_seq"]: r for r in await repo_parked.parked_for(conn, list(state_key))}
        parked = [
            Candidate(seq, r["event_id"], state_key[r["state_id"]], _waits(r), parked=True)
            for seq, r in rows.items()
        ]
        done = await done_among(conn, [*new, *parked], floor, set(rows))
        ready, waiting = plan([*new, *parked], done)
        jobs = [
            Job(c.key, c.delivered().event)
            if not c.parked
            else Job(c.key, STATE_EVENT.validate_json(rows[c.seq]["data"]), rows[c.seq])
            for c in ready
        ]
        await self._run(conn, list(heads.values()), jobs)
        await repo_parked.unpark(conn, [c.seq for c in ready if c.parked])
        heads_by_key = {h.key: h for h in heads.values()}
        await repo_parked.park(
            conn,
            [
                repo_parked.ParkedRow(
                    stream_seq=c.seq,
                    state_id=heads_by_key[c.key].state_id,
                    tenant_id=c.key[0],
                    event_id=c.event_id,
                    waits_seq=[r.seq for r in c.waits_for],
                    waits_id=[r.event_id for r in c.waits_for],
                    data=c.delivered().data,
                )
                for c in waiting
                if not c.parked
            ],
        )
        await repo_parked.still_parked(
            conn,
            [
                repo_parked.StillParked(
                    c.seq, [r.seq for r in c.waits_for], [r.event_id for r in c.waits_for]
                )
                for c in waiting
                if c.parked
            ],
        )
        self.gate.parked += sum(1 for c in waiting if not c.parked)

    async def _run(self, conn: Connection, heads: list[repo.Head], jobs: Sequence[Job]) -> None:
        keys = [h.key for h in heads]
        try:
            now = await repo.clock(conn)
            work = await self._load(conn, heads)
            batch = Batch(self.outbox)
            for key, event, parked in jobs:
                try:
                    await self.changes.apply(conn, work[key], event, batch, now)
                except PatchRejected as err:
                    if parked is None:
                        raise  # the runtime dead-letters it (and replays the rest)
                    # Parked: acked long ago, so it is dead-lettered from here.
                    batch.outgoing.append(
                        dead_letter(
                            event.type,
                            bytes(parked["data"]),
                            parked["stream_seq"],
                            f"PatchRejected: {err}",
                        )
                    )
            await batch.flush(conn)
            await repo.update_states(conn, [w.update_row() for w in work.values() if w.changed])
        except BaseException:
            self.cache.forget(keys)  # the documents may be ahead of the rolled-back rows
            raise
        for w in work.values():
            self.cache.put(w.head.key, Cached(w.head.version, w.head.state_hash, w.doc))

    async def _load(self, conn: Connection, heads: list[repo.Head]) -> dict[repo.Key, Working]:
        work: dict[repo.Key, Working] = {}
        missing: list[repo.Head] = []
        for head in heads:
            doc = self.cache.take(head.key, head.version, head.state_hash)
            if doc is not None:
                work[head.key] = Working(head, doc)
            else:
                missing.append(head)
        if missing:
            stored = await repo.load_partitions(conn, [h.state_id for h in missing])
            for head in missing:
                parts = stored[head.state_id]
                doc = {name: loads(text) for name, text in zip(PARTITIONS, parts, strict=True)}
                work[head.key] = Working(head, doc)
        return work


def _waits(row: asyncpg.Record) -> tuple[Ref, ...]:
    """What a parked row waits for."""
    return tuple(Ref(s, i) for s, i in zip(row["waits_seq"], row["waits_id"], strict=True))
