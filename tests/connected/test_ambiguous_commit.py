"""An ambiguous COMMIT applies nothing twice (issue 13, failure matrix).

The ingest worker (and the audit writer, the same way), logged in as its own role, reaches
PostgreSQL through a proxy that reads the wire protocol (tests/proxy.py: ``CommitCut``).
For several of the worker's COMMITs the proxy lets the COMMIT reach the server, waits for
the server's answer and closes the connection instead of passing it on: the transaction
is committed, and the worker only sees its connection die. It must treat that as a
failure (nak, deliver again) and the inbox must absorb the second delivery.

What is checked, against what the published events say must be stored: every event has
one inbox row, messages, versions, deleted flags, conversations and the sessions'
message_count / total_tokens / status are exact (audit: each message recorded once, every
chain verifies), the DLQ is empty. And that the cuts were real ambiguous commits: the
server answered COMMIT to each, the inbox rows written by the cut transactions (found by
their transaction id, looked up while each was still open) are there, and the worker met
exactly those events again as duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.telemetry import Stats
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.audit_fixtures import RunAudit, verify
from tests.connected.chat_workload import Workload, assert_stored, chat_workload, publish_all
from tests.helpers import dlq_depth, drained, eventually
from tests.proxy import CommitCut, through

pytestmark = pytest.mark.connected

N_EVENTS = 400
SEED = 20261206
BATCH_SIZE = 10  # at least N_EVENTS / BATCH_SIZE = 40 COMMITs, so every armed cut happens
# The 2nd, 6th, 10th... COMMIT: spread out, so that a batch delivered again after a cut is
# rarely cut once more; each cut costs its events one delivery, hence the wide max_deliver.
CUT_COMMITS = range(2, 40, 4)
RunWorker = Callable[..., AbstractAsyncContextManager[Worker]]


@dataclass
class Outcome:
    proxy: CommitCut
    stats: Stats
    committed_by_cuts: list[int]  # inbox rows each cut transaction wrote (0: none was new)
    redelivered: int
    seconds: float


async def consume_with_cut_commits(
    env: Env, nc: NatsClient, db: asyncpg.Connection, service: str, run_worker: RunWorker
) -> tuple[Workload, Outcome]:
    """Publish the workload, run ``service``'s worker through a ``CommitCut`` until it has
    acked every event, and check that the cuts were ambiguous commits."""
    w = chat_workload(N_EVENTS, SEED)
    assert len(w.events) == N_EVENTS and w.edit_events and w.deleted
    witness = await asyncpg.connect(env.database_url)  # the proxy's hook; db is the test's
    open_xids: list[str | None] = []

    async def before_commit(pid: int) -> None:
        xid = await witness.fetchval(
            "SELECT backend_xid::text FROM pg_stat_activity WHERE pid = $1", pid
        )
        open_xids.append(xid)

    url = urlsplit(env.login(service))
    proxy = CommitCut(url.hostname or "127.0.0.1", url.port or 5432, before_commit)
    port = await proxy.start()
    proxy.arm(CUT_COMMITS)
    try:
        await publish_all(nc.jetstream(), w.events)
        started = time.monotonic()
        async with run_worker(
            database_url=through(env.login(service), port),
            batch_size=BATCH_SIZE,
            max_deliver=20,
        ) as worker:
            await eventually(lambda: drained(nc, "CHAT", service), timeout=30, interval=0.1)
            seconds = time.monotonic() - started
            info = await nc.jetstream().consumer_info("CHAT", service)
    finally:
        await proxy.stop()
        await witness.close()

    # Each armed COMMIT was cut after the server had committed it...
    assert len(proxy.cuts) == len(CUT_COMMITS), proxy.cuts
    assert [cut.tag for cut in proxy.cuts] == ["COMMIT"] * len(CUT_COMMITS)
    # ...and the inbox rows its transaction wrote are there. A cut transaction that only
    # met duplicates wrote nothing, so it had no xid.
    written = {
        r["xid"]: r["n"]
        for r in await db.fetch(
            f"SELECT xmin::text AS xid, count(*) AS n FROM {service}.inbox "
            "WHERE xmin::text = ANY($1::text[]) GROUP BY 1",
            [xid for xid in open_xids if xid is not None],
        )
    }
    committed_by_cuts = [written.get(xid, 0) if xid else 0 for xid in open_xids]
    assert sum(committed_by_cuts) > 0
    # The worker never learnt of those events, so each came back and was a duplicate; the
    # rest it applied itself, once.
    stats = worker.stats
    assert stats.duplicates == sum(committed_by_cuts)
    assert stats.applied == N_EVENTS - sum(committed_by_cuts)
    assert stats.retried >= sum(committed_by_cuts)
    assert stats.dead == 0
    assert await dlq_depth(nc) == 0
    redelivered = info.delivered.consumer_seq - N_EVENTS
    return w, Outcome(proxy, stats, committed_by_cuts, redelivered, seconds)


def figures(service: str, w: Workload, out: Outcome) -> str:
    return (
        f"\n{service}: {N_EVENTS} events ({len(w.created_events)} messages, "
        f"{len(w.edit_events)} edits, {len(w.deleted)} deletes, {len(w.sessions)} sessions); "
        f"{out.proxy.commits} COMMITs, {len(out.proxy.cuts)} cut after the server committed "
        f"them ({sum(out.committed_by_cuts)} events, per cut {out.committed_by_cuts}); "
        f"worker: {out.stats.retried} retried, {out.stats.duplicates} duplicates, "
        f"{out.stats.applied} applied; {out.redelivered} redeliveries; 0 lost, 0 duplicated, "
        f"0 dead-lettered; all acked after {out.seconds:.1f}s"
    )


async def test_ingest_applies_every_event_once_through_ambiguous_commits(
    env: Env, nc: NatsClient, db: asyncpg.Connection, run_ingest: RunWorker
) -> None:
    w, out = await consume_with_cut_commits(env, nc, db, "ingest", run_ingest)
    await assert_stored(db, w)
    print(figures("ingest", w, out))


async def test_audit_records_every_event_once_through_ambiguous_commits(
    env: Env, nc: NatsClient, db: asyncpg.Connection, run_audit: RunAudit
) -> None:
    w, out = await consume_with_cut_commits(env, nc, db, "audit", run_audit)
    rows = await db.fetchval("SELECT count(*) FROM audit.events")
    distinct = await db.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT stream, stream_seq FROM audit.events) AS s"
    )
    ids = await db.fetchval("SELECT count(DISTINCT event_id) FROM audit.events")
    assert rows == distinct == ids == N_EVENTS, (rows, distinct, ids)
    result = await verify(env)
    assert result.ok, result.breaks
    print(figures("audit", w, out))
