#!/usr/bin/env python
"""LangGraph checkpointer benchmark: EngramSaver beside LangGraph's AsyncPostgresSaver.

    .venv/bin/pip install -e '.[bench,dev]'   # langgraph-checkpoint-postgres, langgraph
    PYTHONPATH=.:client .venv/bin/python bench/langgraph.py [--threads 50] [--steps 1000]

A chat agent as LangGraph saves it: per step, the node's write (``aput_writes``: the new
message) and the next checkpoint (``aput``) whose ``messages`` channel holds the whole
conversation, grown by one langchain message (~300 bytes of text, human and AI turns in
turn), plus a small ``step`` channel. ``--threads`` conversations run at once, each step
after the last, the same sequence on both savers, one after the other, on the same
embedded PostgreSQL (in a temporary folder): EngramSaver through `engram run
checkpointer` (a separate process, default settings) over NATS as the ``producer`` user;
AsyncPostgresSaver on a psycopg pool of 8 in its own database.

Figures: checkpoints/s (steps of all threads / wall time), bytes stored (the saver's
tables after VACUUM, growth from empty), and ``aget_tuple`` latency (p50/p99) over
``--reads`` reads, half the head of a thread (a graph resuming), half a random past
checkpoint (time travel); every read is checked against what was written.
Writes bench/results/langgraph.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and this file would be imported
# as the `langgraph` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
for path in (ROOT, ROOT / "client"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
warnings.filterwarnings("ignore")

import asyncpg  # noqa: E402
import nats  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint  # noqa: E402
from langgraph.checkpoint.base.id import uuid6  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._figures import CpuMeter, loadavg, pct, write_report  # noqa: E402
from bench._servers import admin_url, fresh_database, fresh_streams, worker_login  # noqa: E402
from services.catalog import SERVICES, migrate  # noqa: E402
from services.runtime.embedded import DevStack  # noqa: E402
from services.runtime.nats_auth import PRODUCER, inbox_prefix  # noqa: E402

console = Console()
TENANT = "bench"
WORDS = "the agent plans a trip to the river with a budget and asks the user which hotel"


def message(rng: random.Random, step: int) -> BaseMessage:
    text = " ".join(rng.choice(WORDS.split()) for _ in range(55))
    return (HumanMessage if step % 2 == 0 else AIMessage)(content=text, id=f"m-{step}")


def checkpoint(messages: list[BaseMessage], step: int, versions: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        v=4,
        id=str(uuid6(clock_seq=step)),
        ts="2026-12-06T00:00:00+00:00",
        channel_values={"messages": list(messages), "step": step},
        channel_versions=dict(versions),
        versions_seen={"agent": dict(versions)},
        updated_channels=["messages", "step"],
    )


async def drive(
    saver: BaseCheckpointSaver[Any], threads: int, steps: int, seed: int
) -> tuple[float, dict[str, list[str]]]:
    """Every thread's steps; the checkpoint ids of each thread, oldest first."""
    ids: dict[str, list[str]] = {}

    async def one(t: int) -> None:
        rng = random.Random(seed + t)
        thread, messages, versions = f"thread-{t}", [], {}  # type: ignore[var-annotated]
        parent: str | None = None
        ids[thread] = []
        for step in range(steps):
            msg = message(rng, step)
            config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
            if parent is not None:
                config["configurable"]["checkpoint_id"] = parent
                await saver.aput_writes(config, [("messages", [msg])], f"task-{step}")  # type: ignore[arg-type]
            messages.append(msg)
            new = {c: saver.get_next_version(versions.get(c), None) for c in ("messages", "step")}
            versions.update(new)
            cp = checkpoint(messages, step, versions)
            stored = await saver.aput(config, cp, {"source": "loop", "step": step}, new)  # type: ignore[arg-type]
            parent = stored["configurable"]["checkpoint_id"]
            ids[thread].append(parent)

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in range(threads)))
    return time.perf_counter() - started, ids


async def reads(
    saver: BaseCheckpointSaver[Any], ids: dict[str, list[str]], n: int, seed: int
) -> list[float]:
    rng, latencies = random.Random(seed), []
    threads = sorted(ids)
    for i in range(n):
        thread = rng.choice(threads)
        pick = len(ids[thread]) - 1 if i % 2 == 0 else rng.randrange(len(ids[thread]))
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if i % 2:
            config["configurable"]["checkpoint_id"] = ids[thread][pick]
        t = time.perf_counter()
        got = await saver.aget_tuple(config)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t) * 1000)
        assert got is not None, (thread, pick)
        assert len(got.checkpoint["channel_values"]["messages"]) == pick + 1, (thread, pick)
    return latencies


async def table_bytes(url: str, schema: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Each table's bytes (heap, TOAST and indexes) after VACUUM."""
    conn = await asyncpg.connect(url)
    try:
        sizes = {}
        for table in tables:
            await conn.execute(f'VACUUM "{schema}"."{table}"')
            sizes[table] = int(
                await conn.fetchval(f"SELECT pg_total_relation_size('{schema}.{table}')")
            )
        return sizes
    finally:
        await conn.close()


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in after}


ENGRAM_TABLES = ("lg_checkpoints", "lg_blobs", "lg_writes")
STOCK_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


async def run_engram(
    users: dict[str, str], admin: str, pids: dict[str, int], args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    from engram_client.errors import EngramError
    from engram_client.langgraph import EngramSaver

    url = await fresh_database(admin, "bench_lg_engram")
    bus = await nats.connect(users["admin"])  # the worker starts once the streams exist
    try:
        await fresh_streams(bus.jetstream())
    finally:
        await bus.close()
    await migrate(url, ["checkpointer"])
    env = {"NATS_URL": users["checkpointer"], "DATABASE_URL": worker_login(url, "checkpointer")}
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [sys.executable, "-c", "from services.catalog import main; main()", "run",
         "checkpointer", "--log-level", "WARNING"],
        cwd=ROOT, env={**__import__("os").environ, **env},
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )  # fmt: skip
    try:
        empty = await table_bytes(url, "checkpoint", ENGRAM_TABLES)
        console.print("engram: migrated, worker starting")
        async with EngramSaver.connect(
            users[PRODUCER],
            tenant_id=TENANT,
            nats_options={"inbox_prefix": inbox_prefix(PRODUCER)},
        ) as saver:
            deadline = time.monotonic() + 120
            while True:  # the worker answers once it has started
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the checkpointer did not start: see {log}")
                try:
                    await saver.aget_tuple({"configurable": {"thread_id": "probe"}})
                    break
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError, EngramError):
                    await asyncio.sleep(0.2)
            console.print("engram: worker answers; writing")
            meter = CpuMeter(pids, {"worker": worker})
            meter.start()
            elapsed, ids = await drive(saver, args.threads, args.steps, args.seed)
            cpu = meter.stop(args.threads * args.steps)
            latencies = await reads(saver, ids, args.reads, args.seed)
        stored = growth(empty, await table_bytes(url, "checkpoint", ENGRAM_TABLES))
    finally:
        worker.terminate()
        worker.wait(30)
    return summary(elapsed, latencies, stored, cpu, args)


async def run_stock(admin: str, pids: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    url = await fresh_database(admin, "bench_lg_stock")
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(url, max_size=8, kwargs=kwargs, open=False) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        empty = await table_bytes(url, "public", STOCK_TABLES)
        meter = CpuMeter(pids, {})
        meter.start()
        elapsed, ids = await drive(saver, args.threads, args.steps, args.seed)
        cpu = meter.stop(args.threads * args.steps)
        latencies = await reads(saver, ids, args.reads, args.seed)
    stored = growth(empty, await table_bytes(url, "public", STOCK_TABLES))
    return summary(elapsed, latencies, stored, cpu, args)


def summary(
    elapsed: float,
    latencies: list[float],
    stored: dict[str, int],
    cpu: dict[str, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``cpu``: the write phase's CPU per checkpoint of each process group, and the
    machine's load (other sessions' cores), to read throughput on a shared machine."""
    return {
        "checkpoints_per_s": args.threads * args.steps / elapsed,
        "seconds": elapsed,
        "bytes_stored": sum(stored.values()),
        "bytes_by_table": stored,
        "get_p50_ms": pct(latencies, 0.5),
        "get_p99_ms": pct(latencies, 0.99),
        "cpu": {k: round(v, 3) for k, v in cpu.items()},
        "loadavg": loadavg(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="engram-langgraph-bench-"))
    stack = DevStack(folder, SERVICES)
    env = stack.start()
    console.print(f"servers up in {folder}")
    users = {user: stack.nats_url(user) for user in stack.passwords}
    try:
        admin = admin_url(env["DATABASE_URL"])
        assert stack.nats.process is not None
        pidfile = stack.postgres.pgdata / "postmaster.pid"
        pids = {"postgres": int(pidfile.read_text().split()[0]), "nats": stack.nats.process.pid}
        engram = await run_engram(users, admin, pids, args, folder / "checkpointer.log")
        console.print("engram", engram)
        stock = await run_stock(admin, pids, args)
        console.print("AsyncPostgresSaver", stock)
    finally:
        stack.stop()
        if not args.data_dir:
            shutil.rmtree(folder, ignore_errors=True)
    return {"engram": engram, "stock": stock}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[1])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/langgraph.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    e, s = result["engram"], result["stock"]
    ratios = {
        "checkpoints_per_s": e["checkpoints_per_s"] / s["checkpoints_per_s"],
        "bytes_stored": e["bytes_stored"] / s["bytes_stored"],
        "get_p99": e["get_p99_ms"] / s["get_p99_ms"],
    }
    goals = {"checkpoints_per_s": ">= 2.0", "bytes_stored": "<= 0.25", "get_p99": "<= 1.0"}
    for key, ratio in ratios.items():
        console.print(f"{key}: engram / stock = {ratio:.2f} (goal {goals[key]})")
    write_report(
        args.out,
        {
            "params": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},
            **result,
            "ratios": ratios,
            "goals": goals,
        },
    )


if __name__ == "__main__":
    main()
