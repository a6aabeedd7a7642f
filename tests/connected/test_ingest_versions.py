"""Issue 11 §3: a message's current content is its current version, however its edits
arrive. Three tenants publish interleaved, edits out of order, some before their message,
one producer's clock 10 ms behind, deletes among them and redeliveries; two replicas
each commit two batches at once. Every message must end with versions numbered by the
rule of docs/ingest.md and show the text of its highest version."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests import factories as f
from tests.connected.versions_check import histories, version_problems
from tests.helpers import drained, eventually, publish, publish_raw

pytestmark = pytest.mark.connected

RunIngest = Callable[..., AbstractAsyncContextManager[Worker]]
ROOT = Path(__file__).resolve().parents[2]
SKEW = timedelta(milliseconds=10)  # the clock of producer "behind"


def message_events(rng: random.Random, tenant: str, cid: Any, start: Any) -> list[Any]:
    """A message and three edits 5 ms apart by two producers, one of them 10 ms behind (so
    its edits may carry times before an earlier edit, or before the message itself)."""
    mid = uuid4()
    events: list[Any] = [f.message(cid, mid, tenant=tenant, content="v1", at=start)]
    for k in range(1, 4):
        behind = rng.random() < 0.5
        at = start + k * timedelta(milliseconds=5) - (SKEW if behind else timedelta(0))
        kind = rng.choice([None, None, "structured", "text"])
        events.append(
            f.edit(
                mid,
                f"edit {k}",
                tenant=tenant,
                at=at,
                content_type=kind,
                edited_by="behind" if behind else "on-time",
            )
        )
    if rng.random() < 0.25:  # a delete among the edits
        events.append(f.delete(mid, tenant=tenant, at=start + timedelta(milliseconds=7)))
    return events


async def test_interleaved_out_of_order_skewed_edits_show_the_highest_version(
    run_ingest: RunIngest, nc: NatsClient, db: asyncpg.Connection
) -> None:
    rng = random.Random(11)
    per_message: list[list[Any]] = []
    for tenant in ("acme", "globex", "initech"):
        cid = uuid4()
        for i in range(16):
            start = f.T0 + timedelta(seconds=i)
            per_message.append(message_events(rng, tenant, cid, start))
    for events in per_message:
        rest = events[1:]
        rng.shuffle(rest)  # edits out of order, and a third of them before their message
        cut = rng.randrange(len(rest) + 1) if rng.random() < 0.33 else 0
        events[:] = rest[:cut] + events[:1] + rest[cut:]
    stream: list[Any] = []
    while any(per_message):  # tenants and messages interleaved
        events = rng.choice([e for e in per_message if e])
        stream.append(events.pop(0))
    every = list(stream)
    expected = histories(every)
    assert len(expected) == 48

    async with (
        run_ingest(batch_size=20, max_deliver=30) as one,
        run_ingest(batch_size=20, max_deliver=30) as two,
    ):
        await publish(nc, *stream)
        for event in rng.sample(every, 20):  # redelivered past JetStream's de-duplication
            await publish_raw(
                nc, event.type, event.model_dump_json().encode(), msg_id=f"{event.event_id}-again"
            )
        await eventually(lambda: drained(nc), timeout=60)
        assert (one.stats.dead, two.stats.dead) == (0, 0)

    assert await version_problems(db, expected) == []
    edited = await db.fetchval(
        "SELECT count(*) FROM ingest.messages WHERE message_id = ANY($1) AND version = 4",
        list(expected),
    )
    assert edited == 48


async def test_migration_004_repairs_versions_stored_in_delivery_order(
    db: asyncpg.Connection,
) -> None:
    cid, mid, tenant = uuid4(), uuid4(), "acme"
    created = f.message(cid, mid, tenant=tenant, content="v1", at=f.T0)
    late = f.edit(mid, "older", tenant=tenant, at=f.T0 + timedelta(minutes=1))
    newest = f.edit(
        mid, "newest", tenant=tenant, at=f.T0 + timedelta(minutes=2), content_type="structured"
    )
    await db.execute(
        "INSERT INTO ingest.conversations (conversation_id, tenant_id, created_at)"
        " VALUES ($1, $2, $3)",
        cid,
        tenant,
        f.T0,
    )
    # As the code before 004 stored them: numbered in delivery order (the newer edit
    # arrived first), the message showing the newest by occurred_at, not version 3.
    await db.execute(
        "INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, role, content,"
        " content_type, version, created_at, edited_at)"
        " VALUES ($1, $2, $3, 'user', 'newest', 'structured', 3, $4, $5)",
        mid,
        tenant,
        cid,
        f.T0,
        newest.occurred_at,
    )
    for version, e, content, kind in (
        (1, created, "v1", "text"),
        (2, newest, "newest", "structured"),
        (3, late, "older", "text"),
    ):
        await db.execute(
            "INSERT INTO ingest.message_versions (message_id, version, tenant_id, content,"
            " content_type, event_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            mid,
            version,
            tenant,
            content,
            kind,
            e.event_id,
            e.occurred_at,
        )
    sql = (ROOT / "sql/ingest/004_version_order.sql").read_text()
    async with db.transaction():
        await db.execute("SET LOCAL search_path TO ingest")
        await db.execute(sql[sql.index("-- Repair") :])
    expected = histories([created, late, newest])
    assert await version_problems(db, expected) == []
