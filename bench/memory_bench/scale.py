"""Scale: consolidation of one agent's 10k / 100k memories, every step, beside the floor."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats
import numpy as np
import psutil

from bench._figures import loadavg
from bench._servers import stop_process
from bench.memory_bench.generate import Memory, memory_set
from bench.memory_bench.settings import SCALE_MIX, console
from bench.memory_bench.stack import (
    TEMPLATE,
    Bench,
    CpuMeter,
    consolidate_event,
    db_conn,
    finish_seed,
    publish,
    seed,
    wait_jobs,
)
from bench.memory_bench.vectors import VectorCache


@dataclass
class ScaleData:
    size: int
    memories: list[Memory]
    vectors: np.ndarray
    seed_db: str
    index_build_s: float = 0.0


def scale_set(size: int, seed_: int) -> list[Memory]:
    n_dup = size // 10
    return memory_set(size - n_dup, n_dup, SCALE_MIX, seed=seed_)


async def scale_data(bench: Bench, cache: VectorCache, size: int, seed_: int) -> ScaleData:
    """The memories of one agent (and 5 of a warm-up agent) in a seeded database that each
    run clones."""
    t = time.perf_counter()
    memories = scale_set(size, seed_)
    console.log(
        f"{size:,} memories generated in {time.perf_counter() - t:.1f}s: "
        f"{dict(Counter(m.memory_type for m in memories))}, "
        f"{len({m.user_id for m in memories if m.user_id}):,} users, "
        f"{sum(1 for m in memories if m.duplicate_of is not None):,} planted paraphrases"
    )
    vectors = cache.vectors([m.text for m in memories])
    name = f"bench_mem_seed_{size}"
    db = await bench.clone(TEMPLATE, name)
    conn = await db_conn(bench.url(db))
    try:
        t = time.perf_counter()
        await seed(conn, f"agent-{size}", memories, vectors, seed_=seed_ + 1)
        await seed(conn, "warmup", memories[:5], vectors[:5], seed_=seed_ + 2)
        copy_s = time.perf_counter() - t
        built = await finish_seed(conn)
        console.log(
            f"seeded {size:,} rows in {copy_s:.1f}s (COPY); HNSW index built in {built:.1f}s"
        )
    finally:
        await conn.close()
    return ScaleData(size, memories, vectors, db, built)


def neighbour_floor(data: ScaleData) -> dict[str, float]:
    """The exact neighbour computation alone, as the job runs it: per merged type, the
    type's vectors at min(merge_threshold, cluster_threshold)."""
    from services.memory.clusters import neighbours
    from services.memory.settings import MemorySettings
    from services.memory.steps import MERGED_TYPES

    s = MemorySettings()
    t = min(s.merge_threshold, s.cluster_threshold)
    out = {}
    for memory_type in MERGED_TYPES:
        idx = [i for i, m in enumerate(data.memories) if m.memory_type == memory_type]
        started = time.perf_counter()
        neighbours(np.ascontiguousarray(data.vectors[idx]), t)
        out[memory_type] = time.perf_counter() - started
    out["total"] = sum(out.values())
    return out


async def consolidation_run(bench: Bench, data: ScaleData, run: int) -> dict[str, Any]:
    db = await bench.clone(data.seed_db)
    await bench.fresh_streams()
    label = f"scale-{data.size}-run{run}-memory-worker"
    log = bench.logs / f"{label}.log"
    worker = bench.start_worker("memory", db, label)
    conn = await db_conn(bench.url(db))
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream()
    agent = f"agent-{data.size}"
    try:
        warm = consolidate_event("warmup", ["merge"], None)  # the worker is up and running jobs
        await publish(js, warm)
        await wait_jobs(conn, [warm.payload.job_id], worker, log, within=300)
        await conn.execute("CHECKPOINT")
        before = await conn.fetchval(
            "SELECT count(*) FROM memory.memories WHERE agent_id = $1 AND status = 'active'", agent
        )
        event = consolidate_event(agent, None, None)  # every step, the default threshold
        step_at: dict[str, float] = {}
        rss = [0]
        proc = psutil.Process(worker.pid)

        def on_poll(rows: list[asyncpg.Record]) -> None:
            for r in rows:
                for s in r["steps_done"]:
                    step_at.setdefault(s, time.perf_counter() - started)
            with contextlib.suppress(psutil.Error):
                rss[0] = max(rss[0], proc.memory_info().rss)

        meter = CpuMeter(bench.pids, {"worker": worker})
        load0 = loadavg()
        started = time.perf_counter()
        await publish(js, event)
        (job,) = await wait_jobs(
            conn, [event.payload.job_id], worker, log, within=3600, interval=0.2, on_poll=on_poll
        )
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        report = job["report"]
        report = json.loads(report) if isinstance(report, str) else report
        after = await conn.fetchval(
            "SELECT count(*) FROM memory.memories WHERE agent_id = $1 AND status = 'active'", agent
        )
        records = await conn.fetch(
            """SELECT step, count(*) AS n, sum(cardinality(source_ids)) AS sources
                 FROM memory.consolidations WHERE job_id = $1 GROUP BY step""",
            event.payload.job_id,
        )
    finally:
        await nc.close()
        stop_process(worker)
        await conn.close()
        await bench.drop(db)
    order = [s for s in ("expire", "merge", "abstract", "summarize", "decay") if s in step_at]
    prev, step_s = 0.0, {}
    for s in order:
        step_s[s] = round(step_at[s] - prev, 2)
        prev = step_at[s]
    return {
        "seconds": elapsed,
        "duration_ms": job["duration_ms"],
        "attempts": job["attempts"],
        "active_before": before,
        "active_after": after,
        "steps": report,
        "step_seconds": step_s,
        "consolidations": {r["step"]: {"rows": r["n"], "sources": r["sources"]} for r in records},
        "worker_peak_rss_mb": round(rss[0] / 2**20),
        "cpu": cpu,
        "loadavg_at_start": load0,
    }


async def scale(
    bench: Bench, cache: VectorCache, args: argparse.Namespace, sizes: Sequence[int]
) -> tuple[dict[str, Any], dict[int, ScaleData]]:
    out: dict[str, Any] = {}
    datas = {}
    for size in sizes:
        data = await scale_data(bench, cache, size, args.seed + size)
        datas[size] = data
        runs = args.runs if size <= 20_000 or args.runs_100k is None else args.runs_100k
        per_run = []
        for run in range(runs):
            floor = neighbour_floor(data)
            console.log(
                f"{size:,}: neighbours alone (floor) {floor['total']:.1f}s "
                f"{ {k: round(v, 1) for k, v in floor.items()} }"
            )
            r = await consolidation_run(bench, data, run)
            r["floor"] = floor
            r["ratio"] = r["seconds"] / floor["total"]
            per_run.append(r)
            console.log(
                f"{size:,} run {run + 1}/{runs}: publish -> done {r['seconds']:.1f}s "
                f"(job {r['duration_ms'] / 1000:.1f}s; {r['ratio']:.1f}x the floor); "
                f"steps {r['step_seconds']}; active {r['active_before']:,} -> "
                f"{r['active_after']:,}; peak RSS {r['worker_peak_rss_mb']} MB; "
                f"{r['cpu']}"
            )
        out[str(size)] = {
            "runs": per_run,
            "median": {
                "seconds": statistics.median(r["seconds"] for r in per_run),
                "floor_s": statistics.median(r["floor"]["total"] for r in per_run),
                "ratio": statistics.median(r["ratio"] for r in per_run),
                "step_seconds": {
                    s: statistics.median(r["step_seconds"].get(s, 0.0) for r in per_run)
                    for s in per_run[0]["step_seconds"]
                },
            },
            "index_build_s": data.index_build_s,
            "types": dict(Counter(m.memory_type for m in data.memories)),
            "planted": sum(1 for m in data.memories if m.duplicate_of is not None),
            "users": len({m.user_id for m in data.memories if m.user_id}),
        }
    return out, datas
