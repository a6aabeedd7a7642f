"""Where each durable consumer of a worker stands, remembered in the service's own schema.

JetStream keeps a consumer's position (its ack floor: every message up to that stream
sequence is acknowledged) only as long as the consumer exists. One deleted by hand, or
lost with a server's storage, would be re-created delivering the stream's whole history:
the inbox makes valid events no-ops, but every invalid message of the last week would be
dead-lettered again. So the ``ConsumerPositions`` component polls each consumer's ack
floor (one JetStream API call per consumer every ``POSITION_EVERY_S``, and once more at
shutdown) into ``consumer_positions`` (sql/runtime/005), and a consumer found missing is
re-created from there (``durable.py``). What the poll has not seen yet, at most a few
seconds' worth, is replayed: the inbox and ``dead_letters_sent`` (``dlq_once.py``) make
that replay change nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.runtime.bus import ConsumerSpec
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import quote_ident
from services.runtime.loop import Loop

log = logging.getLogger("engram.positions")

POSITION_EVERY_S = 5.0
PRUNE_EVERY_S = 3600.0
# Records of dead letters are kept this much longer than the streams keep messages.
PRUNE_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Position:
    """A consumer's ack floor in one incarnation of its stream (``stream_created``)."""

    ack_floor: int
    stream_created: datetime


class PositionStore:
    """The ``consumer_positions`` table of one service schema."""

    def __init__(self, schema: str) -> None:
        s = quote_ident(schema)
        self._load = (
            f"SELECT ack_floor, stream_created FROM {s}.consumer_positions "
            "WHERE stream = $1 AND durable = $2"
        )
        self._save = f"SELECT {s}.save_consumer_position($1, $2, $3, $4)"
        self._prune = f"SELECT {s}.prune_dead_letters_sent($1::interval)"

    async def load(self, pool: asyncpg.Pool, spec: ConsumerSpec) -> Position | None:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(self._load, spec.stream.name, spec.durable)
        return None if row is None else Position(row["ack_floor"], row["stream_created"])

    async def save(self, pool: asyncpg.Pool, spec: ConsumerSpec, position: Position) -> None:
        async with pool.acquire() as conn:
            await conn.execute(
                self._save,
                spec.stream.name,
                spec.durable,
                position.ack_floor,
                position.stream_created,
            )

    async def prune(self, pool: asyncpg.Pool, older_than: timedelta) -> int:
        async with pool.acquire() as conn:
            return int(await conn.fetchval(self._prune, older_than))


async def read_position(js: JetStreamContext, spec: ConsumerSpec) -> Position | None:
    """The consumer's position now, from the server; None when it does not exist."""
    # The stream first: a stream re-created between the two calls then pairs a newer
    # consumer with an older creation time, which reads as "unknown", never as a floor of
    # the wrong incarnation.
    try:
        stream = await js.stream_info(spec.stream.name)
        info = await js.consumer_info(spec.stream.name, spec.durable)
    except NotFoundError:
        return None
    if stream.created is None:  # every server since 2.2 sends it
        return None
    floor = (info.ack_floor.stream_seq if info.ack_floor else None) or 0
    return Position(floor, stream.created)


class ConsumerPositions:
    """A component: keeps ``consumer_positions`` up to date for the consumers it tracks,
    and answers where a missing one should start again."""

    name = "consumer-positions"

    def __init__(self, schema: str, *, every_s: float = POSITION_EVERY_S) -> None:
        self.store = PositionStore(schema)
        self.loop = Loop(self.name, self._step, every_s=every_s, final_step=True)
        self._specs: dict[tuple[str, str], ConsumerSpec] = {}
        self._seen: dict[tuple[str, str], Position] = {}  # last polled (saved or not)
        self._saved: dict[tuple[str, str], Position] = {}
        self._pool: asyncpg.Pool | None = None
        self._js: JetStreamContext | None = None
        self._pruned_at: float | None = None  # time.monotonic() of the last prune
        self.saves = 0

    async def start(self, ctx: WorkerContext) -> None:
        self._pool, self._js = ctx.pool, ctx.js
        await self.loop.start(ctx)

    async def stop(self) -> None:
        await self.loop.stop()  # its final step records where the drained consumers stand

    def health(self) -> Health:
        return self.loop.health()

    def track(self, spec: ConsumerSpec) -> None:
        self._specs[(spec.stream.name, spec.durable)] = spec
        self.loop.wake()

    async def last_acked(self, spec: ConsumerSpec, stream_created: datetime) -> int | None:
        """The highest ack floor known for ``spec`` in this incarnation of its stream:
        the table's (another replica may have saved a newer one) or this replica's last
        poll. None: never recorded (a fresh database). Raises when the table cannot be
        read: the caller must not take that for "never recorded"."""
        saved = await self.store.load(self._db(), spec)
        seen = self._seen.get((spec.stream.name, spec.durable))
        floors = [p.ack_floor for p in (saved, seen) if p and p.stream_created == stream_created]
        if saved is not None and saved.stream_created != stream_created:
            log.warning(
                "the saved position of %s on %s belongs to an earlier stream of that name "
                "(created %s, this one %s); not used",
                spec.durable,
                spec.stream.name,
                saved.stream_created.isoformat(),
                stream_created.isoformat(),
            )
        return max(floors) if floors else None

    async def record(self) -> None:
        """Poll and save every tracked consumer's position now (tools and tests)."""
        await self._step()

    async def _step(self) -> bool:
        if self._js is None:
            raise NotStarted("the consumer positions")
        pool = self._db()
        for key, spec in list(self._specs.items()):
            position = await read_position(self._js, spec)
            if position is None:  # missing: its consumer re-creates it from what was saved
                continue
            self._seen[key] = position
            if self._saved.get(key) != position:
                await self.store.save(pool, spec, position)
                self._saved[key] = position
                self.saves += 1
        due = self._pruned_at is None or time.monotonic() - self._pruned_at > PRUNE_EVERY_S
        if self._specs and due:
            longest = max(s.stream.max_age_s for s in self._specs.values())
            dropped = await self.store.prune(pool, timedelta(seconds=longest) + PRUNE_MARGIN)
            self._pruned_at = time.monotonic()
            if dropped:
                log.info("forgot %d dead letters older than the streams' messages", dropped)
        return False

    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted("the consumer positions")
        return self._pool
