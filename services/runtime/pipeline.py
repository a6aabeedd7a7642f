"""One batch of messages, from bytes to acks, with the same rules for every service:

1. Validate first: a message that breaks its contract goes to the DLQ and is terminated.
2. Claim the batch's event ids in the service's inbox and apply the new ones, in one
   transaction; duplicates are acked with no effect. Ack only after COMMIT.
3. A transient failure naks the batch with a growing delay; an event the service cannot
   apply yet (its target has not arrived) is naked alone; after ``max_deliver`` either goes
   to the DLQ as exhausted.
4. An event that makes the transaction fail is isolated: the batch is replayed one event
   per transaction, so the poison one is dead-lettered and the others commit.

The naks and dead letters are ``settle.py``'s; a database that does not answer is waited
out by ``outage.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from uuid import UUID

import asyncpg
from nats.aio.msg import Msg

from services.runtime.db import Connection, scope_tenants
from services.runtime.decoding import contract_decoder as contract_decoder  # noqa: PLC0414
from services.runtime.dlq import DeadKind, DeadLetters
from services.runtime.errors import InvalidEvent, describe, is_transient
from services.runtime.inbox import Inbox, InboxKey
from services.runtime.outage import DatabaseOutage
from services.runtime.settle import Settler
from services.runtime.telemetry import Stats
from services.runtime.tracing import causing
from services.runtime.tracing_events import BatchTrace, EventSpans

log = logging.getLogger("engram.pipeline")


class Event(Protocol):
    """What the pipeline needs of a decoded message: an id for the inbox, its type, and
    the tenant whose rows it may touch."""

    @property
    def event_id(self) -> UUID: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def type(self) -> str: ...


E = TypeVar("E", bound=Event)
# Reads one message (subject, bytes, headers, stream metadata) as an event; raises
# InvalidEvent when it cannot.
Decoder = Callable[[Msg], E]
# Applies new events inside the open transaction; returns {event_id: reason} for those it
# could not apply yet. It must leave no effect of those (they are delivered again).
ApplyBatch = Callable[[Connection, Sequence[E]], Awaitable[Mapping[UUID, str]]]


def one_tenant_per_id(items: Sequence[Item[E]]) -> list[Sequence[Item[E]]]:
    """The batch cut, in stream order, where an event id comes again under another tenant:
    an apply (and the {event_id: reason} it returns) then never sees one id twice. Rare, so
    the common batch is returned whole."""
    parts: list[Sequence[Item[E]]] = []
    start, tenants = 0, dict[UUID, str]()
    for i, item in enumerate(items):
        event = item.event
        if tenants.setdefault(event.event_id, event.tenant_id) != event.tenant_id:
            parts.append(items[start:i])
            start, tenants = i, {event.event_id: event.tenant_id}
    parts.append(items[start:])
    return parts


@dataclass(frozen=True)
class Item(Generic[E]):
    msg: Msg
    event: E


@dataclass
class Prepared(Generic[E]):
    """A decoded batch waiting for its transaction."""

    msgs: Sequence[Msg]
    items: list[Item[E]]
    started: float
    keepalive: asyncio.Task[None]
    dead_lettering: asyncio.Task[None] | None = None  # the invalid ones, sent meanwhile
    trace: BatchTrace | None = None  # its spans, when the worker traces


@dataclass(frozen=True)
class RetryPolicy:
    max_deliver: int
    base_s: float
    max_s: float
    keepalive_s: float
    probe_max_s: float  # an outage's probes back off to this, not to max_s: resume soon


class BatchProcessor(Generic[E]):
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        inbox: Inbox,
        decode: Decoder[E],
        apply: ApplyBatch[E],
        dead_letters: DeadLetters,
        policy: RetryPolicy,
        stats: Stats,
        spans: EventSpans | None = None,
    ) -> None:
        self._pool = pool
        self._inbox = inbox
        self._decode = decode
        self._apply = apply
        self._policy = policy
        self.stats = stats
        self._spans = spans
        self._settle = Settler(
            dead_letters,
            stats,
            spans,
            max_deliver=policy.max_deliver,
            base_s=policy.base_s,
            max_s=policy.max_s,
        )
        self._outage = DatabaseOutage(pool, stats, base_s=policy.base_s, max_s=policy.probe_max_s)

    async def process(self, msgs: Sequence[Msg]) -> None:
        await self.commit(await self.prepare(msgs))

    async def prepare(self, msgs: Sequence[Msg]) -> Prepared[E]:
        """Decode and dead-letter what is invalid. Needs no database, so the consumer runs
        it for the next batch while the previous batch's transaction is in flight."""
        batch: Prepared[E] = Prepared(
            msgs, [], time.perf_counter(), asyncio.create_task(self._keep_alive(msgs))
        )
        invalid: list[tuple[Msg, str]] = []
        for msg in msgs:
            try:
                batch.items.append(Item(msg, self._decode(msg)))
            except InvalidEvent as err:
                invalid.append((msg, str(err)))
        if self._spans is not None:
            batch.trace = self._spans.start(batch.items, invalid)
        if invalid:
            # Beside the batch's transaction, not before it: each dead letter is a DLQ
            # publish and two lookups, and the pull loop would wait for them.
            batch.dead_lettering = asyncio.create_task(self._settle.dead_all(invalid))
        return batch

    async def commit(self, batch: Prepared[E]) -> None:
        started = time.perf_counter()
        try:
            if batch.items:
                await self._commit(batch.items)
        finally:
            if batch.dead_lettering is not None:
                await batch.dead_lettering
            batch.keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch.keepalive
            if self._spans is not None and batch.trace is not None:
                self._spans.end(batch.trace)
        done = time.perf_counter()
        self.stats.batch_done(len(batch.msgs), done - batch.started, done - started)

    async def _commit(self, items: Sequence[Item[E]]) -> None:
        if len(parts := one_tenant_per_id(items)) > 1:
            for part in parts:
                await self._commit(part)
            return
        try:
            retry, fresh = await self._transaction(items)
        except Exception as exc:
            # A lone event's failure is its own only if the database still answers: a
            # connection that dies mid-statement (a restart) can surface as an error no
            # rule calls transient, and must not dead-letter a valid event as poison.
            if (is_transient(exc) or len(items) == 1) and await self._outage.wait_out(exc):
                # The database was unreachable and is back: the same batch again, with no
                # delivery spent on an outage, however long it lasted.
                await self._commit(items)
                return
            if is_transient(exc):
                log.warning("transient failure on %d events: %s", len(items), describe(exc))
                for item in items:
                    await self._settle.retry(item.msg, describe(exc))
            elif len(items) == 1:
                log.error("poison event %s: %s", items[0].event.event_id, describe(exc))
                await self._settle.dead(items[0].msg, DeadKind.poison, describe(exc))
            else:
                for item in items:
                    await self._commit([item])
            return
        await self._answer(items, retry, fresh)

    async def _answer(
        self, items: Sequence[Item[E]], retry: Mapping[UUID, str], fresh: set[InboxKey]
    ) -> None:
        """After the commit: ack the applied events and the duplicates, retry the others."""
        # Only while a message has a span open: a batch not sampled pays nothing per event
        # here (a message of the next batch that opens one meanwhile is not one of these).
        spans = self._spans if self._spans is not None and self._spans.recording else None
        new: set[tuple[str, UUID]] = set(fresh) if spans is not None else set()
        for item in items:
            reason = retry.get(item.event.event_id)
            if reason is None:
                await item.msg.ack()
                if spans is not None:
                    spans.acked(item, new)
            else:
                await self._settle.retry(item.msg, reason)
        duplicates = len(items) - len(fresh)
        self.stats.duplicates += duplicates
        self.stats.applied += len(items) - duplicates - len(retry)

    async def _transaction(
        self, items: Sequence[Item[E]]
    ) -> tuple[Mapping[UUID, str], set[InboxKey]]:
        unique: dict[InboxKey, E] = {}
        # The inbox keeps each event's span (its first copy's: the one applied) only while
        # one has a span: not in a batch not sampled, the common case.
        spans = self._spans if self._spans is not None and self._spans.recording else None
        traced: list[str | None] = []  # in the order of ``unique``
        for item in items:
            key = InboxKey(item.event.tenant_id, item.event.event_id)
            if spans is None:
                unique.setdefault(key, item.event)
            elif key not in unique:
                unique[key] = item.event
                traced.append(spans.traceparent(item.msg))
        async with self._pool.acquire() as conn, conn.transaction():
            # Row-level security admits the rows of exactly the tenants of this validated
            # batch (docs/security.md); the worker's policy fails closed without it.
            await scope_tenants(conn, {e.tenant_id for e in unique.values()})
            fresh_keys = await self._inbox.claim(
                conn,
                list(unique),
                [e.type for e in unique.values()],
                None if spans is None else traced,
            )
            fresh = [e for key, e in unique.items() if key in fresh_keys]
            # With tracing, an event a handler announces names its cause's span.
            # Without tracing: no causes, but an announcement knows it is not a job's.
            with self._spans.causes(items) if self._spans else causing({}):
                retry = await self._apply(conn, fresh) if fresh else {}
            if retry:
                await self._inbox.release(conn, [k for k in fresh_keys if k.event_id in retry])
        return retry, fresh_keys

    async def _keep_alive(self, msgs: Sequence[Msg]) -> None:
        # A long batch (a slow database, a big model batch) must not pass the ack wait.
        while True:
            await asyncio.sleep(self._policy.keepalive_s)
            for msg in msgs:
                if not msg._ackd:
                    await msg.in_progress()
