"""Consolidation jobs with the real model, NATS and PostgreSQL: merge, abstract and
summarize on planted sets; decay and expiry at fixed clocks; one job per agent at a time
across replicas; the same job id twice; a job that fails midway and runs again."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.memory_jobs import MemoryConsolidated, Step
from services.memory import runner
from services.memory.logic import decayed
from services.memory.runner import JobRunner
from services.runtime.worker import Worker
from tests.connected.embedder_fixtures import Running
from tests.connected.memory_fixtures import (
    T0,
    active,
    consolidate,
    job_done,
    with_vectors,
    write,
)
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]
RunMemory = Callable[..., AbstractAsyncContextManager[Worker]]

WINDOW = [
    "The user prefers window seats on flights.",
    "The user prefers a window seat when flying.",
    "When flying, the user prefers window seats.",
]
VEGGIE = [
    "The user asked for vegetarian restaurants in Lisbon for Friday dinner.",
    "Friday evening: the user hoped to find a vegetarian spot in Lisbon.",
    "The user looked for meat-free dinner options in Lisbon this Friday.",
    "The user requested a table at a vegetarian restaurant in Lisbon for Friday night.",
]
OTHER = [
    "The user booked Hotel Alfama in Lisbon for three nights.",
    "The user's daughter is allergic to peanuts.",
    "The user rented an electric car in Porto for the weekend.",
]


def planted(tenant: str = "acme") -> list[Any]:
    return [
        write(WINDOW[0], "semantic", tenant=tenant, importance=0.6, user_id="u-1"),
        write(WINDOW[1], "semantic", tenant=tenant, importance=0.5, user_id="u-1"),
        write(WINDOW[2], "semantic", tenant=tenant, importance=0.2, user_id="u-1"),
        *[
            write(t, "episodic", tenant=tenant, at=T0 + timedelta(hours=i), importance=0.4)
            for i, t in enumerate(VEGGIE)
        ],
        *[write(t, "episodic", tenant=tenant) for t in OTHER],
    ]


async def test_merge_makes_one_memory_of_near_duplicates_and_keeps_the_sources(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    events = planted()
    await publish(nc, *events)
    await with_vectors(db, len(events))
    await db.execute("UPDATE memory.memories SET access_count = 2 WHERE text = ANY($1)", WINDOW)
    # a dry run reports and changes nothing
    dry = consolidate(steps=["merge"], dry_run=True)
    await publish(nc, dry)
    report = json.loads((await job_done(db, dry.payload.job_id))["report"])
    assert report[0]["step"] == "merge" and report[0]["created"] == 1
    assert report[0]["superseded"] == 3
    assert await db.fetchval("SELECT count(*) FROM memory.consolidations") == 0

    summaries = await nc.subscribe("engram.memory.consolidated")
    job = consolidate(steps=["merge"])
    await publish(nc, job)
    await job_done(db, job.payload.job_id)
    merged = await db.fetchrow("SELECT * FROM memory.memories WHERE origin = 'merge'")
    assert merged["text"] == WINDOW[0] and merged["status"] == "active"
    assert merged["access_count"] == 6 and merged["user_id"] == "u-1"
    assert merged["importance"] == pytest.approx(1 - 0.4 * 0.5 * 0.8, abs=1e-6)
    sources = await db.fetch(
        "SELECT * FROM memory.memories WHERE text = ANY($1) AND origin = 'write'", WINDOW
    )
    assert {s["status"] for s in sources} == {"superseded"}
    assert {s["superseded_by"] for s in sources} == {merged["memory_id"]}
    links = await db.fetch(
        "SELECT target_id FROM memory.memory_links WHERE memory_id = $1 "
        "AND relation = 'merged_from'",
        merged["memory_id"],
    )
    assert {r[0] for r in links} == {s["memory_id"] for s in sources}
    row = await db.fetchrow("SELECT * FROM memory.consolidations WHERE step = 'merge'")
    assert set(row["source_ids"]) == {s["memory_id"] for s in sources}
    assert row["result_id"] == merged["memory_id"] and row["tokens_saved"] > 0
    # nothing else was merged: every episode is still active
    assert len(await active(db)) == len(events) - 3 + 1
    # The dry run's own summary leaves through the outbox too, and may arrive first.
    summary = MemoryConsolidated.model_validate_json((await summaries.next_msg(10)).data).payload
    if summary.job_id == dry.payload.job_id:
        assert summary.dry_run
        summary = MemoryConsolidated.model_validate_json(
            (await summaries.next_msg(10)).data
        ).payload
    assert summary.job_id == job.payload.job_id and not summary.dry_run
    assert summary.active_before == 10 and summary.active_after == 8
    assert summary.steps[0].step is Step.merge and summary.steps[0].created == 1


async def test_abstract_and_summarize_turn_similar_episodes_into_new_memories(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    events = planted()
    await publish(nc, *events)
    await with_vectors(db, len(events))
    job = consolidate(steps=["abstract", "summarize"])
    await publish(nc, job)
    await job_done(db, job.payload.job_id)
    semantic = await db.fetchrow("SELECT * FROM memory.memories WHERE origin = 'abstract'")
    summary = await db.fetchrow("SELECT * FROM memory.memories WHERE origin = 'summarize'")
    assert semantic["memory_type"] == "semantic" and summary["memory_type"] == "episodic"
    concept = json.loads(semantic["content"])["concept"]
    assert "vegetarian" in concept or "lisbon" in concept
    content = json.loads(summary["content"])
    assert content["temporal"]["occurred_at"].startswith("2026-11-01T09:00")
    assert content["temporal"]["ended_at"].startswith("2026-11-01T12:00")
    kept = [v for v in VEGGIE if v in summary["text"]]  # the 3 most central, in time order
    assert len(kept) == 3 and summary["text"] == " ".join(kept)
    veggie = await db.fetch("SELECT * FROM memory.memories WHERE text = ANY($1)", VEGGIE)
    assert {v["status"] for v in veggie} == {"superseded"}
    assert {v["superseded_by"] for v in veggie} == {summary["memory_id"]}
    derived = await db.fetch(
        "SELECT target_id FROM memory.memory_links WHERE memory_id = $1 "
        "AND relation = 'derived_from'",
        semantic["memory_id"],
    )
    assert {r[0] for r in derived} == {v["memory_id"] for v in veggie}
    # the unrelated episodes and the window facts are untouched
    assert (
        await db.fetchval(
            "SELECT count(*) FROM memory.memories WHERE status = 'active' AND origin = 'write'"
        )
        == 6
    )


async def test_decay_and_expiry_at_fixed_clocks(
    embedder: Running, run_memory: RunMemory, nc: NatsClient, db: asyncpg.Connection
) -> None:
    plain = write("plain", decay_rate=0.1, importance=0.8)
    used = write("used often", decay_rate=0.1, importance=0.8)
    dated = write("until tomorrow", "episodic", expires_at=T0 + timedelta(days=1))
    old_working = write("old item", "working")
    recent = [
        write(f"item {i}", "working", at=T0 + timedelta(days=1, hours=12 + i)) for i in range(3)
    ]
    async with run_memory(working_capacity=2, working_ttl_days=1.0):
        await publish(nc, plain, used, dated, old_working, *recent)
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM memory.memories"), lambda n: n == 7
        )
        await db.execute(
            "UPDATE memory.memories SET access_count = 3, last_accessed_at = $1 "
            "WHERE text = 'used often'",
            T0 + timedelta(days=5),
        )
        first = consolidate(at=T0 + timedelta(days=2), steps=["expire"])
        await publish(nc, first)
        await job_done(db, first.payload.job_id)
        gone = await db.fetch("SELECT * FROM memory.memories WHERE status = 'forgotten'")
        assert {g["memory_id"] for g in gone} == {
            dated.payload.memory_id,
            old_working.payload.memory_id,
            recent[0].payload.memory_id,
        }
        assert {g["forget_reason"] for g in gone} == {"expired"}
        assert all(g["text"] is None for g in gone)

        for days in (10, 20):  # two steps compose like one
            job = consolidate(at=T0 + timedelta(days=days), steps=["decay"])
            await publish(nc, job)
            await job_done(db, job.payload.job_id)
        rows = {r["text"]: r for r in await db.fetch("SELECT * FROM memory.memories")}
        assert rows["plain"]["importance"] == pytest.approx(0.8 * 0.9**20, rel=1e-4)
        slowed = 0.1 / (1 + math.log(4))
        assert rows["used often"]["importance"] == pytest.approx(0.8 * (1 - slowed) ** 15, rel=1e-4)
        assert rows["used often"]["importance"] == pytest.approx(
            decayed(
                0.8,
                decay_rate=0.1,
                access_count=3,
                decayed_at=T0,
                last_accessed_at=T0 + timedelta(days=5),
                now=T0 + timedelta(days=20),
            ),
            rel=1e-4,
        )


async def test_one_job_per_agent_at_a_time_across_replicas_and_job_ids_are_idempotent(
    embedder: Running, run_memory: RunMemory, nc: NatsClient, db: asyncpg.Connection
) -> None:
    async with run_memory() as one, run_memory() as two:
        events = planted()
        await publish(nc, *events)
        await with_vectors(db, len(events))
        a, b = consolidate(), consolidate()
        again = consolidate(job_id=a.payload.job_id)  # a scheduler's retry: new event id
        await publish(nc, a, b, again)
        await job_done(db, a.payload.job_id)
        await job_done(db, b.payload.job_id)
        assert await db.fetchval("SELECT count(*) FROM memory.jobs") == 2
        runners = [one.component(JobRunner), two.component(JobRunner)]  # each job ran once
        await eventually(lambda: asyncio.sleep(0, sum(r.done for r in runners)), lambda n: n == 2)
    # the work was done once: one merge, one abstraction, one summary
    assert (
        await db.fetchval(
            "SELECT count(*) FROM memory.consolidations "
            "WHERE step IN ('merge', 'abstract', 'summarize')"
        )
        == 3
    )
    origins = await db.fetch(
        "SELECT origin, count(*) FROM memory.memories "
        "WHERE status = 'active' GROUP BY origin ORDER BY origin"
    )
    assert [(r[0], r[1]) for r in origins] == [
        ("abstract", 1),
        ("merge", 1),
        ("summarize", 1),
        ("write", 3),
    ]


async def test_a_job_that_fails_midway_runs_again_to_the_same_result(
    memory: Worker, nc: NatsClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.STEPS[Step.summarize]
    failed: list[str] = []

    async def summarize_then_crash(job: Any) -> Any:
        report = await real(job)  # its writes are in the open transaction...
        if job.tenant == "crashy" and not failed:
            failed.append(job.tenant)
            raise RuntimeError("worker died")  # ...and roll back with it
        return report

    monkeypatch.setitem(runner.STEPS, Step.summarize, summarize_then_crash)
    clean, crashy = planted("clean"), planted("crashy")
    await publish(nc, *clean, *crashy)
    await with_vectors(db, len(clean) + len(crashy))
    clock = T0 + timedelta(days=30)
    jobs_ = [consolidate(tenant="clean", at=clock), consolidate(tenant="crashy", at=clock)]
    await publish(nc, *jobs_)
    for job in jobs_:
        await job_done(db, job.payload.job_id, within=60)
    assert failed == ["crashy"]
    row = await db.fetchrow(
        "SELECT attempts, last_error FROM memory.jobs WHERE tenant_id = 'crashy'"
    )
    assert row["attempts"] == 2 and "worker died" in row["last_error"]

    async def outcome(tenant: str) -> list[tuple[Any, ...]]:
        rows = await db.fetch(
            """SELECT text, memory_type, status, origin, importance, access_count
                 FROM memory.memories WHERE tenant_id = $1 ORDER BY text, origin""",
            tenant,
        )
        return [tuple(r) for r in rows]

    assert await outcome("crashy") == await outcome("clean")
    counts = await db.fetch(
        "SELECT tenant_id, step, count(*) FROM memory.consolidations GROUP BY 1, 2 ORDER BY 2, 1"
    )
    assert [(r[1], r[2]) for r in counts if r[0] == "clean"] == [
        (r[1], r[2]) for r in counts if r[0] == "crashy"
    ]
