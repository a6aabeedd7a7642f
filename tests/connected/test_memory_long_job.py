"""Memory work that lasts longer than three ack waits runs once and is delivered once.

A consolidation job does not run inside the batch that delivers its trigger: the
``memory.consolidate`` event only queues a job row, its message is acked at that COMMIT,
and a runner works the job under a lease and a per-agent advisory lock
(services/memory/runner.py). So two things keep long memory work from running twice, and
each has its test here, with the real memory worker (ack wait 2 s), NATS and PostgreSQL:

1. A job made slow the honest way, by a summarizer model that answers slowly (an
   OpenAI-compatible endpoint of the test, 2 s per call, as test_memory_llm.py), lasting
   more than 3x the ack wait *and* more than its lease, with two workers: the trigger is
   acked once, at once; the other worker's takeovers after the lease ran out are refused
   by the advisory lock; every call reached the model once; the job's memories and
   consolidation rows are those of one run.
2. A batch held in its transaction for more than 3x the ack wait (its INSERT waits on a
   lock of the test, as behind a slow database) is kept alive by in-progress acks
   (``_keep_alive`` in services/runtime/pipeline.py, every ack_wait / 3): JetStream
   delivers none of its messages again.

Deliveries are read from JetStream (consumer info) and from the wire: the test listens as
the NATS admin on the consumers' ack subjects (``AckTally``), which carry the delivery
count each ack answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.memory.runner import JobRunner
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running
from tests.connected.fake_llm import FakeCompletions, serving
from tests.connected.memory_fixtures import T0, consolidate, job_done, with_vectors, write
from tests.connected.test_memory_consolidation import VEGGIE, RunMemory, planted
from tests.connected.worker_process import AckTally
from tests.helpers import eventually, publish, send_event

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]

ACK_WAIT_S = 2.0  # not less: a loaded 2-core machine stalls a worker for a second at times
LLM_DELAY_S = 2.0  # per call: two or three clusters, two steps that call it: 8 s or more
LEASE_S = 3.0  # shorter than one step: the other worker tries to take the job over
# Two more clusters of similar episodes, beside test_memory_consolidation's VEGGIE.
TOKYO = [
    "The user plans a trip to Tokyo in April to see the cherry blossoms.",
    "In April the user wants to travel to Tokyo for the cherry blossom season.",
    "The user asked about visiting Tokyo while the cherry trees bloom this April.",
]
BEAGLE = [
    "The user needs someone to walk their beagle Max while they work late on Tuesday.",
    "On Tuesday evening the user looked for a dog walker for Max, their beagle.",
    "The user asked for help finding a walker for the beagle Max this Tuesday night.",
]


class SlowCompletions(FakeCompletions):
    """A slow model server: each call takes ``LLM_DELAY_S`` and answers a summary derived
    from its request (so the test can tell which memory came from which call)."""

    bodies: ClassVar[list[str]] = []  # the user message of every call, in arrival order

    def answer(self, body: dict[str, Any]) -> str | None:
        listed = body["messages"][1]["content"]
        SlowCompletions.bodies.append(listed)
        time.sleep(LLM_DELAY_S)
        return summary_of(listed)


def summary_of(listed: str) -> str:
    lines = listed.splitlines()
    return f"Model summary of {len(lines)} memories, first: {lines[0].removeprefix('- ')}"


@contextmanager
def slow_model() -> Iterator[str]:
    SlowCompletions.bodies = []
    with serving(SlowCompletions) as url:
        yield url


def clustered() -> list[Any]:
    """test_memory_consolidation's planted set plus two more clusters of episodes."""
    return [
        *planted(),
        *[
            write(t, "episodic", at=T0 + timedelta(days=3, hours=i), importance=0.3)
            for i, t in enumerate(TOKYO)
        ],
        *[
            write(t, "episodic", at=T0 + timedelta(days=5, hours=i), importance=0.3)
            for i, t in enumerate(BEAGLE)
        ],
    ]


async def assert_each_delivered_once(js: JetStreamContext, tallies: dict[str, AckTally]) -> str:
    """Every message the memory consumer of each stream got was delivered once and acked
    once (JetStream's count and the wire's agree); returns the figures."""
    figures = []
    for stream, tally in tallies.items():
        info = await js.consumer_info(stream, "memory")
        assert info.config.ack_wait == pytest.approx(ACK_WAIT_S)
        delivered = info.delivered.consumer_seq
        assert info.num_ack_pending == info.num_redelivered == info.num_pending == 0, info
        assert delivered == len(tally.acks), (stream, delivered, dict(tally.kinds))
        assert set(tally.deliveries.values()) <= {1}, f"{stream}: delivered again"
        assert set(tally.acks.values()) <= {1}, f"{stream}: acked twice"
        assert tally.kinds["nak"] == tally.kinds["term"] == 0, dict(tally.kinds)
        figures.append(f"{stream}: {delivered} delivered, sent {dict(tally.kinds)}")
    return "; ".join(figures)


async def listen(nc: NatsClient, *streams: str) -> dict[str, AckTally]:
    tallies = {stream: AckTally() for stream in streams}
    for stream, tally in tallies.items():
        await tally.listen(nc, stream, "memory")
    return tallies


async def test_a_job_longer_than_3x_the_ack_wait_and_its_lease_runs_once(
    embedder: Running, run_memory: RunMemory, nc: NatsClient, db: asyncpg.Connection
) -> None:
    js = nc.jetstream()
    tallies = await listen(nc, "MEMORY", "ENGRAM")
    settings = {
        "ack_wait_s": ACK_WAIT_S,
        "job_lease_s": LEASE_S,
        "llm_model": "slow",
    }
    with slow_model() as url:
        async with (
            run_memory(llm_url=url, **settings) as first,
            run_memory(llm_url=url, **settings) as second,
        ):
            events = clustered()
            await publish(nc, *events)
            await with_vectors(db, len(events))
            job = consolidate()
            published = time.monotonic()
            trigger_seq = await send_event(nc, job)
            row = await job_done(db, job.payload.job_id, within=60)
            finished = time.monotonic()
            # Quiet for two ack waits and two leases: nothing comes back, nothing reruns.
            await asyncio.sleep(2 * max(ACK_WAIT_S, LEASE_S))
            runs = first.component(JobRunner).done + second.component(JobRunner).done
        calls = list(SlowCompletions.bodies)
    report = {r["step"]: r for r in json.loads(row["report"])}
    wire = await assert_each_delivered_once(js, tallies)
    trigger_acked_s = tallies["MEMORY"].acked_at[trigger_seq] - published
    print(
        f"\njob ran {row['duration_ms'] / 1000:.1f}s (ack wait {ACK_WAIT_S}s, lease {LEASE_S}s), "
        f"done {finished - published:.1f}s after its trigger, which was acked after "
        f"{trigger_acked_s:.2f}s; claims {row['attempts']} (takeovers refused: "
        f"{row['attempts'] - 1}); runs {runs}; model calls {len(calls)}; {wire}"
    )

    # Long: more than three ack waits, and more than its lease.
    assert row["duration_ms"] / 1000 > max(3 * ACK_WAIT_S, LEASE_S)
    assert trigger_acked_s < row["duration_ms"] / 1000, "the trigger waited for the job"
    # The other worker tried to take it over once the lease ran out, and was refused.
    assert row["attempts"] >= 2 and runs == 1
    assert await db.fetchval("SELECT count(*) FROM memory.jobs") == 1
    # Each cluster found (the planted ones that the clustering joins: two or three), two
    # steps calling the model for each: every call made once, by one run.
    clusters = {c: 2 for c in calls}
    assert Counter(calls) == clusters and len(clusters) >= 2
    firsts = {b.splitlines()[0].removeprefix("- ") for b in clusters}
    assert firsts <= {VEGGIE[0], TOKYO[0], BEAGLE[0]} and len(firsts) == len(clusters)
    replies = {summary_of(b) for b in clusters}
    summaries = await db.fetch("SELECT text FROM memory.memories WHERE origin = 'summarize'")
    assert {r["text"] for r in summaries} == replies and len(summaries) == len(clusters)
    abstracts = await db.fetch("SELECT text FROM memory.memories WHERE origin = 'abstract'")
    assert len(abstracts) == len(clusters)
    assert {r["text"].split(": ", 1)[1] for r in abstracts} == replies
    # One consolidation row per memory a step created: none written twice.
    rows = await db.fetch(
        "SELECT step, count(*) AS n, count(DISTINCT result_id) AS distinct_results "
        "FROM memory.consolidations GROUP BY step"
    )
    by_step = {r["step"]: (r["n"], r["distinct_results"]) for r in rows}
    for step in ("merge", "abstract", "summarize"):
        created = report[step]["created"]
        assert by_step.get(step, (0, 0)) == (created, created), (step, by_step, report)
    announced = await js.stream_info("ENGRAM", subjects_filter="engram.memory.consolidated")
    assert announced.state.subjects == {"engram.memory.consolidated": 1}
    assert (await js.stream_info("DLQ")).state.messages == 0


async def test_a_batch_held_longer_than_3x_the_ack_wait_is_kept_alive_not_redelivered(
    env: Env, run_memory: RunMemory, nc: NatsClient, db: asyncpg.Connection
) -> None:
    js = nc.jetstream()
    tallies = await listen(nc, "MEMORY")
    writes = [write(f"note {i}: the user likes tea number {i}", "semantic") for i in range(20)]
    job = consolidate(steps=["decay"])
    async with run_memory(ack_wait_s=ACK_WAIT_S):
        blocker = await asyncpg.connect(env.database_url)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE memory.jobs IN EXCLUSIVE MODE")
        try:
            await publish(nc, *writes, job)
            await eventually(
                lambda: db.fetchval(
                    """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                        AND usename = 'engram_memory' AND query LIKE '%memory.jobs%'"""
                ),
                lambda n: n >= 1,
            )
            held_from = time.monotonic()
            held: list[int] = []
            while time.monotonic() - held_from < 3.5 * ACK_WAIT_S:
                info = await js.consumer_info("MEMORY", "memory")
                assert info.delivered.consumer_seq == len(writes) + 1, "delivered again"
                held.append(info.num_ack_pending)
                await asyncio.sleep(0.1)
            held_s = time.monotonic() - held_from
        finally:
            await tx.rollback()
            await blocker.close()
        await job_done(db, job.payload.job_id)
        await asyncio.sleep(2 * ACK_WAIT_S)  # anything unacked would be back by now
    tally = tallies["MEMORY"]
    wire = await assert_each_delivered_once(js, {"MEMORY": tally})
    kept_alive = {seq: n for seq, n in tally.progress.items() if n}
    print(
        f"\nbatch held {held_s:.1f}s in its transaction (ack wait {ACK_WAIT_S}s) with "
        f"{min(held)}..{max(held)} messages unacked; in-progress acks: "
        f"{sum(kept_alive.values())} for {len(kept_alive)} messages; {wire}"
    )
    assert held_s > 3 * ACK_WAIT_S and min(held) >= 1
    assert len(tally.acks) == len(writes) + 1
    # Each message of the held batch was kept alive (+WPI) several times over the hold.
    assert kept_alive and min(kept_alive.values()) >= 3
    assert await db.fetchval("SELECT count(*) FROM memory.memories") == len(writes)
    assert await db.fetchval("SELECT count(*) FROM memory.inbox") == len(writes) + 1
    assert (await js.stream_info("DLQ")).state.messages == 0
