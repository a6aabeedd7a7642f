"""Issue 11 §3, as a property: creates, edits and deletes of a few messages, with skewed
and tied clocks, delivered in any order, with duplicates, in batches of any size, one or
two transactions at once (as two replicas), always end in the same versions (docs/ingest.md)
and every message shows its highest version.

It drives the real apply function of the worker (``apply_chat_events``) over the real
database, in one transaction per batch with the inbox, exactly as the pipeline does: an
event the apply says it cannot apply yet is released from the inbox and delivered again
later, a duplicate is claimed once, a transient failure sends the whole batch back, and
a batch that fails otherwise is replayed one event per transaction (none may fail alone,
which would dead-letter it)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.chat import ChatEvent
from services.ingest.handlers import apply_chat_events
from services.runtime.db import create_pool, scope_tenants
from services.runtime.errors import is_transient
from services.runtime.inbox import Inbox, InboxKey
from tests import factories as f
from tests.conftest import Env
from tests.connected.versions_check import histories, version_problems

pytestmark = pytest.mark.connected

INBOX = Inbox("ingest")
MS = timedelta(milliseconds=1)


@pytest.fixture
async def pool(env: Env) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(env.login("ingest"), max_size=2, worker=True)
    yield pool
    await pool.close()


# One message: when it was created, its edits (time, content type) and deletes (time,
# who), times in ms on a coarse grid so that ties are common and edits may carry a time
# before their message's (a producer clock behind).
EDIT = st.tuples(st.integers(-3, 6), st.sampled_from([None, None, "text", "structured"]))
DELETE = st.tuples(st.integers(-3, 6), st.sampled_from(["u-1", "u-2"]))
MESSAGE = st.tuples(st.integers(0, 3), st.lists(EDIT, max_size=5), st.lists(DELETE, max_size=2))


def build(tenants: Sequence[Sequence[Any]]) -> list[ChatEvent]:
    events: list[ChatEvent] = []
    for messages in tenants:
        tenant, cid = f"t-{uuid4().hex[:8]}", uuid4()
        for created, edits, deletes in messages:
            mid = uuid4()
            events.append(f.message(cid, mid, tenant=tenant, at=f.T0 + created * MS))
            for n, (at, kind) in enumerate(edits):
                events.append(
                    f.edit(mid, f"edit {n}", tenant=tenant, at=f.T0 + at * MS, content_type=kind)
                )
            for at, who in deletes:
                events.append(f.delete(mid, tenant=tenant, at=f.T0 + at * MS, deleted_by=who))
    return events


async def transaction(pool: asyncpg.Pool, batch: Sequence[ChatEvent]) -> set[Any]:
    """One batch as BatchProcessor._transaction runs it; the ids to deliver again."""
    unique: dict[InboxKey, ChatEvent] = {}
    for e in batch:
        # the first copy of each id, in delivery order
        unique.setdefault(InboxKey(e.tenant_id, e.event_id), e)
    async with pool.acquire() as conn, conn.transaction():
        await scope_tenants(conn, {e.tenant_id for e in batch})
        fresh_keys = await INBOX.claim(conn, list(unique), [e.type for e in unique.values()])
        fresh = [e for key, e in unique.items() if key in fresh_keys]
        retry = await apply_chat_events(conn, fresh) if fresh else {}
        if retry:
            await INBOX.release(conn, [k for k in fresh_keys if k.event_id in retry])
    return set(retry)


async def deliver(pool: asyncpg.Pool, batch: list[ChatEvent], queue: deque[ChatEvent]) -> None:
    try:
        again = await transaction(pool, batch)
    except Exception as exc:
        if is_transient(exc):
            queue.extend(batch)  # naked as a whole
        elif len(batch) > 1:  # replayed one event per transaction
            for event in batch:
                await deliver(pool, [event], queue)
        else:  # it would be dead-lettered as poison: none of these events is
            raise
        return
    queue.extend(e for e in batch if e.event_id in again)  # naked alone, delivered later


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tenants=st.lists(st.lists(MESSAGE, min_size=1, max_size=3), min_size=1, max_size=3),
    data=st.data(),
)
async def test_any_delivery_ends_in_the_same_versions(
    pool: asyncpg.Pool, db: asyncpg.Connection, tenants: list[list[Any]], data: st.DataObject
) -> None:
    events = build(tenants)
    delivery = data.draw(st.permutations(events), label="order")
    for i in data.draw(st.lists(st.integers(0, len(events) - 1), max_size=6), label="dups"):
        at = data.draw(st.integers(0, len(delivery)), label="dup at")
        delivery.insert(at, events[i])  # a redelivery, anywhere
    sizes = data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=6), label="sizes")
    parallel = data.draw(st.booleans(), label="two at once")

    queue = deque(delivery)
    for turn in range(10 * len(delivery) + 50):
        if not queue:
            break
        batches = []
        for k in range(2 if parallel else 1):
            size = sizes[(turn + k) % len(sizes)]
            batch = [queue.popleft() for _ in range(min(size, len(queue)))]
            if batch:
                batches.append(batch)
        await asyncio.gather(*(deliver(pool, b, queue) for b in batches))
    assert not queue, f"never applied: {[e.type for e in queue]}"

    assert await version_problems(db, histories(events)) == []
