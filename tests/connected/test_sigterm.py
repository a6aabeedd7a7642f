"""SIGTERM while batches are in flight: the real `engram run ingest` (four times) and
`engram run audit` (once) are stopped as a supervisor stops them, and restarted, while
they work through a backlog of 3,000 CHAT events.

What the documentation promises (docs/operations.md, "Shutdown" and "Exit codes"): the
worker stops pulling, commits and acks the batches it holds, and exits 0 within its drain
timeout. Each stop is checked for that: exit code 0, the time it took, FastStream's
"shut down gracefully" line in the log, no "drain timed out", and, from JetStream's own
view, nothing left unacknowledged once the process is gone. One of the ingest stops lands
inside a transaction for certain: a lock of the test holds the worker's INSERT while the
signal arrives, and is released a second later, during the drain.

What the worker said about each message is read off the wire: the test listens (as the
NATS admin) on the consumers' ack subjects, so it sees every ``+ACK``, ``-NAK`` and
``+WPI`` and the delivery count each one carries. In the end every event must be applied
exactly once (the ingest's rows, versions and session counters, one audit row per stream
message and intact hash chains), nothing dead-lettered, and the deliveries are counted.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.conftest import Env
from tests.connected.audit_fixtures import recorded, verify
from tests.connected.chat_workload import assert_stored, chat_workload, publish_all
from tests.connected.worker_process import AckTally, WorkerProcess, unacked, wait_for

pytestmark = pytest.mark.connected

N_EVENTS = 3_000
SEED = 20261206
DRAIN_TIMEOUT_S = 10.0
# docs/operations.md: a shutdown is cut short after the drain timeout + 5 s.
GRACE_S = DRAIN_TIMEOUT_S + 5.0
COMMON_ENV = {
    "BATCH_SIZE": "50",  # small batches: several are in flight at any moment
    "ACK_WAIT_S": "4",  # anything a stop leaves unacked comes back within the test
    "FETCH_WAIT_S": "0.5",
    "DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
    "RETRY_BASE_S": "0.2",
    "RETRY_MAX_S": "2",
    "MAX_DELIVER": "20",
}
# Where the ingest stops land: the fraction of the messages stored, and how. "blind": as
# soon as JetStream shows messages delivered and not yet acked; "in-transaction": the
# worker's INSERT is blocked on a lock of the test when the signal arrives.
INGEST_STOPS = ((0.15, "blind"), (0.35, "in-transaction"), (0.55, "blind"), (0.75, "blind"))
AUDIT_STOP_AT = 0.4  # of the events recorded
HOLD_LOCK_S = 1.0  # how long into the drain the in-transaction stop's lock is kept


@dataclass
class Stop:
    """One SIGTERM and what came of it."""

    service: str
    how: str
    done_at_signal: int  # rows applied when the signal was sent
    unacked_at_signal: int  # JetStream's num_ack_pending just before it
    exit_code: int | None = None
    seconds: float = 0.0
    done_after: int = 0
    unacked_after: int = -1  # num_ack_pending once the process is gone
    during_drain: Counter[str] = field(default_factory=Counter)  # acks, naks... sent

    def line(self) -> str:
        return (
            f"{self.service} {self.how}: {self.unacked_at_signal} unacked at SIGTERM, "
            f"exit {self.exit_code} after {self.seconds:.2f}s, drain sent "
            f"{dict(self.during_drain)}, {self.done_after - self.done_at_signal} more rows "
            f"committed, {self.unacked_after} left unacked"
        )


def worker_process(env: Env, service: str, log_path: Path) -> WorkerProcess:
    """`engram run <service>` as its own database role and NATS user, with COMMON_ENV."""
    logins = {"NATS_URL": env.nats_login(service), "DATABASE_URL": env.login(service)}
    settings = {f"{service.upper()}_{k}": v for k, v in COMMON_ENV.items()}
    return WorkerProcess(service, logins | settings, log_path)


@dataclass
class Side:
    """One worker under test: its process, what it sent JetStream, and its rows applied."""

    worker: WorkerProcess
    tally: AckTally
    done: Callable[[], Awaitable[int]]

    @property
    def name(self) -> str:
        return self.worker.service


async def until(
    probe: Callable[[], Awaitable[bool]], side: Side, within_s: float, what: str
) -> None:
    """Poll ``probe``; fail at once should the worker exit by itself."""
    what = f"{side.name}: {what}"
    await wait_for(probe, bool, worker=side.worker, within_s=within_s, what=what, interval_s=0.005)


async def reach(side: Side, rows: int) -> None:
    async def enough() -> bool:
        return await side.done() >= rows

    await until(enough, side, 60, f"{rows} rows")


async def stop_and_restart(
    side: Side,
    js: JetStreamContext,
    how: str,
    unlock: Callable[[], Awaitable[None]] | None = None,
) -> Stop:
    """SIGTERM the worker while JetStream shows messages delivered to it and unacked (with
    ``unlock``: while its transaction waits on the test's lock, released during the
    drain), check that the stop was graceful, and start it again."""

    async def consumer_and_rows() -> tuple[int, int, int]:
        # Says, should no batch be seen in flight, whether the backlog was gone (0, 0, all
        # rows) or the worker stood still before it (pending > 0).
        pending, ack_pending = await unacked(js, side.name)
        return pending, ack_pending, await side.done()

    await wait_for(
        consumer_and_rows,
        lambda seen: seen[1] > 0,
        worker=side.worker,
        within_s=30,
        what=f"{side.name}: a batch in flight (pending, ack pending, rows)",
        interval_s=0.005,
    )
    stop = Stop(side.name, how, await side.done(), (await unacked(js, side.name))[1])
    before = side.tally.snapshot()
    terminating = asyncio.create_task(side.worker.terminate(GRACE_S + 10))
    if unlock is not None:
        await asyncio.sleep(HOLD_LOCK_S)
        assert not terminating.done(), "the worker exited without waiting for its transaction"
        await unlock()
    stop.exit_code, stop.seconds = await terminating
    stop.done_after = await side.done()
    stop.unacked_after = (await unacked(js, side.name))[1]
    stop.during_drain = side.tally.snapshot() - before
    log = side.worker.this_run_log()
    assert stop.exit_code == 0, f"{stop.line()}\n{log[-5000:]}"
    assert stop.seconds < GRACE_S, stop.line()
    assert "FastStream app shut down gracefully." in log, log[-5000:]
    assert "drain timed out" not in log and "CRITICAL" not in log, log[-5000:]
    side.worker.start()
    return stop


async def lock_messages(env: Env, db: asyncpg.Connection) -> Callable[[], Awaitable[None]]:
    """Block the ingest's INSERT INTO ingest.messages behind a lock of the test, until one
    of its transactions waits on it; returns the release."""
    blocker = await asyncpg.connect(env.database_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE ingest.messages IN EXCLUSIVE MODE")
    deadline = time.monotonic() + 20
    while not await db.fetchval(
        """SELECT count(*) FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND usename = 'engram_ingest'"""
    ):
        assert time.monotonic() < deadline, "no ingest transaction waits on the lock"
        await asyncio.sleep(0.01)

    async def release() -> None:
        await tx.rollback()
        await blocker.close()

    return release


async def stop_four_and_one(
    ingest: Side, audit: Side, n: int, *, env: Env, js: JetStreamContext, db: asyncpg.Connection
) -> list[Stop]:
    """The ingest's stops at ``INGEST_STOPS`` of its ``n`` messages; the audit writer's
    after the first of them (started then), while the ingest carries on."""
    stops: list[Stop] = []
    jitter = random.Random()  # where a blind stop lands varies from run to run
    for fraction, how in INGEST_STOPS:
        await reach(ingest, int(n * fraction))
        unlock = await lock_messages(env, db) if how == "in-transaction" else None
        await asyncio.sleep(jitter.uniform(0, 0.02))
        stops.append(await stop_and_restart(ingest, js, how, unlock))
        if len(stops) == 1:
            # Started only now: run beside the ingest from the start, the audit writer
            # recorded all 3,000 events before this stop was done (CI, 2026-12-06).
            audit.worker.start()
            await reach(audit, int(N_EVENTS * AUDIT_STOP_AT))
            stops.append(await stop_and_restart(audit, js, "blind"))
    return stops


async def figures(js: JetStreamContext, side: Side) -> tuple[int, str]:
    """The consumer's deliveries, and a line saying what was delivered and sent."""
    info = await js.consumer_info("CHAT", side.name)
    delivered = info.delivered.consumer_seq
    tally = side.tally
    again = sorted(seq for seq, n in tally.deliveries.items() if n > 1)
    return delivered, (
        f"{side.name}: {delivered} deliveries for {N_EVENTS} events ({delivered - N_EVENTS} "
        f"redelivered; stream seqs delivered twice or more: {again[:10]}); sent "
        f"{dict(tally.kinds)}; messages acked twice: {sum(n > 1 for n in tally.acks.values())}"
    )


@pytest.mark.slow
async def test_sigterm_mid_batch_drains_and_applies_every_event_once(
    env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    started = time.monotonic()
    w = chat_workload(N_EVENTS, SEED)
    n_messages = len(w.created_events)
    js = nc.jetstream(publish_async_max_pending=2_000)

    async def stored() -> int:
        return int(await db.fetchval("SELECT count(*) FROM ingest.messages"))

    async def audited() -> int:
        return await recorded(db)

    ingest = Side(worker_process(env, "ingest", tmp_path / "ingest.log"), AckTally(), stored)
    audit = Side(worker_process(env, "audit", tmp_path / "audit.log"), AckTally(), audited)
    for side in (ingest, audit):
        await side.tally.listen(nc, "CHAT", side.name)
    await publish_all(js, w.events)
    try:
        ingest.worker.start()
        stops = await stop_four_and_one(ingest, audit, n_messages, env=env, js=js, db=db)
        for side in (ingest, audit):

            async def settled(name: str = side.name) -> bool:
                return await unacked(js, name) == (0, 0)

            await until(settled, side, 60, "nothing pending")
        consumed_s = time.monotonic() - started

        dlq = (await js.stream_info("DLQ")).state.messages
        assert dlq == 0, f"{dlq} events dead-lettered"
        await assert_stored(db, w)
        assert await audited() == N_EVENTS
        distinct = "SELECT count(DISTINCT (stream, stream_seq)) FROM audit.events"
        assert await db.fetchval(distinct) == N_EVENTS
        chains = await verify(env)
        assert chains.ok, chains.breaks

        delivered = {side.name: await figures(js, side) for side in (ingest, audit)}
        print(
            f"\n{N_EVENTS} events ({n_messages} messages): each applied once by both workers "
            f"in {consumed_s:.1f}s, 0 dead-lettered; stops:\n  "
            + "\n  ".join([*(s.line() for s in stops), *(d[1] for d in delivered.values())])
        )
        for stop in stops:
            # What the worker held at the signal was committed and acked by the drain:
            # nothing nak'd, nothing left for the ack wait to send again.
            assert stop.unacked_after == 0, stop.line()
            assert stop.during_drain["nak"] == 0 and stop.during_drain["ack"] > 0, stop.line()
        in_tx = next(s for s in stops if s.how == "in-transaction")
        assert in_tx.done_after > in_tx.done_at_signal, in_tx.line()
        for side in (ingest, audit):
            assert delivered[side.name][0] == N_EVENTS, f"{side.name}: messages redelivered"
            assert len(side.tally.acks) == N_EVENTS and set(side.tally.acks.values()) == {1}
            assert side.tally.kinds["nak"] == 0 and side.tally.kinds["term"] == 0
    except BaseException:
        for side in (ingest, audit):
            print(f"\n--- {side.name} output ---\n{side.worker.log_path.read_text()[-8000:]}")
        raise
    finally:
        ingest.worker.kill()
        audit.worker.kill()
