#!/usr/bin/env python
"""Checkpointer benchmark: engram's checkpointer beside LangGraph's PostgresSaver.

    .venv/bin/pip install -e ./client -e '.[bench]'  # langgraph-checkpoint-postgres, psycopg
    .venv/bin/python bench/checkpointer.py [--versions 1000] [--runs 3] [--data-dir DIR]

Starts the embedded nats-server and PostgreSQL (services.runtime.embedded.DevStack, in a
temporary folder removed afterwards, unless --data-dir), builds one sequence of states
once: a 50 KB agent state (four partitions of 25 objects) and 999 steps that each change
three leaves (a counter, a status, a tag appended). Per run, on fresh databases and
streams, both store the same sequence:

  engram     `engram run checkpointer` (a separate process, default settings); the agent
             publishes every step as an RFC 6902 `state.patch` (JetStream-acked, i.e.
             durable) and goes on; writes/s = versions / (first publish -> last version
             committed). Reads: `query.state.get` with `at_version` over NATS.
  langgraph  PostgresSaver.put per step (what a graph does after each super-step), with
             the four partitions as four channels so only changed channels are written;
             reads: get_tuple at that version's checkpoint id.

Both read the same 200 random versions, and every read is checked against the reference.
Bytes stored: how much each side's history tables grew from freshly created to after the
run (heap, TOAST, indexes, free-space and visibility maps; VACUUM before both
measurements), so fixed per-table overhead does not count; the absolute sizes are
printed beside it. Not history: the runtime's inbox (idempotency, pruned after the
streams' max age), the checkpointer's transient queues (outbox, parked) and migration
bookkeeping on either side.
Prints each run, then medians of the runs against the goals; writes
bench/results/checkpointer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import asyncpg  # noqa: E402
import nats  # noqa: E402
import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench._figures import pct  # noqa: E402
from bench._servers import admin_url, fresh_database, fresh_streams, worker_login  # noqa: E402
from contracts.state import StatePatch, StatePatchPayload  # noqa: E402
from contracts.state_queries import STATE_GET_REPLY, StateGetReply  # noqa: E402
from services.catalog import SERVICES, migrate  # noqa: E402
from services.checkpointer.patch import apply_patch  # noqa: E402
from services.checkpointer.versions import canonical  # noqa: E402
from services.runtime.bus_setup import connect  # noqa: E402
from services.runtime.embedded import DevStack  # noqa: E402

PARTS = ("local", "shared", "session", "persistent")
WORDS = [
    "agent",
    "tool",
    "plan",
    "hotel",
    "river",
    "trip",
    "budget",
    "user",
    "search",
    "result",
    "memory",
    "step",
    "note",
    "price",
    "city",
    "date",
    "room",
    "guest",
    "flight",
    "seat",
    "meal",
    "window",
    "quiet",
    "view",
    "late",
    "early",
]
GOAL_WRITES, GOAL_STORAGE, GOAL_P99_MS = 2.0, 0.10, 20.0
TENANT, USER, AGENT = "bench", "u-1", "travel-bot"
console = Console()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build(versions: int, seed: int = 7) -> tuple[list[list[dict[str, Any]]], list[bytes]]:
    """RFC 6902 patches, one per version, and the canonical state after each."""
    rng = random.Random(seed)
    initial = {
        p: {
            f"k{i:02}": {
                "title": text(rng, 37),
                "notes": text(rng, 37),
                "count": 0,
                "status": "new",
                "tags": [rng.choice(WORDS)],
            }
            for i in range(25)
        }
        for p in PARTS
    }
    patches = [[{"op": "add", "path": f"/{p}", "value": initial[p]} for p in PARTS]]
    for step in range(1, versions):
        ops = []
        for _ in range(3):
            path = f"/{rng.choice(PARTS)}/k{rng.randrange(25):02}"
            ops.append(
                rng.choice(
                    [
                        {"op": "replace", "path": f"{path}/count", "value": step},
                        {"op": "replace", "path": f"{path}/status", "value": rng.choice(WORDS)},
                        {"op": "add", "path": f"{path}/tags/-", "value": rng.choice(WORDS)},
                    ]
                )
            )
        patches.append(ops)
    doc: dict[str, Any] = {p: {} for p in PARTS}
    states = []
    for ops in patches:
        doc, _ = apply_patch(doc, ops)
        states.append(canonical(doc))
    return patches, states


# Bookkeeping that is not state history: the runtime's idempotency inbox (pruned after
# the streams' max age) and outbox, the checkpointer's parking lot (both empty at rest)
# and the migration tables of either side. Both totals are reported.
BOOKKEEPING = {"inbox", "schema_migrations", "checkpoint_migrations", "event_outbox", "parked"}


async def table_bytes(url: str, schema: str) -> dict[str, int]:
    """Bytes per table (heap, TOAST and indexes) after VACUUM."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                schema,
            )
        ]
        for table in tables:
            await conn.execute(f'VACUUM "{schema}"."{table}"')
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        return {r[0]: int(r[1]) for r in rows}
    finally:
        await conn.close()


def sizes(tables: dict[str, int], empty: dict[str, int]) -> dict[str, Any]:
    """``bytes``: what the versions cost, i.e. growth of the history tables from their
    freshly created (empty) size; totals as they stand are reported beside it."""
    history = sum(v for k, v in tables.items() if k not in BOOKKEEPING)
    history_empty = sum(v for k, v in empty.items() if k not in BOOKKEEPING)
    return {
        "bytes": history - history_empty,
        "bytes_history_total": history,
        "bytes_all_tables": sum(tables.values()),
        "tables": tables,
    }


async def run_engram(
    nats_users: dict[str, str],
    url: str,
    *,
    patches: list[list[dict[str, Any]]],
    states: list[bytes],
    sample: list[int],
    settings: dict[str, str],
) -> dict[str, float]:
    # The bus is set up by the admin; the agent publishes and asks as the producer (the
    # upstream user); the worker runs as its own NATS user and database login.
    admin = await nats.connect(nats_users["admin"])
    try:
        await fresh_streams(admin.jetstream())
    finally:
        await admin.close()
    nc = await connect(nats_users["producer"])
    js = nc.jetstream()
    env = {
        **os.environ,
        "NATS_URL": nats_users["checkpointer"],
        "DATABASE_URL": worker_login(url, "checkpointer"),
        **settings,
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [
            sys.executable,
            "-c",
            "from services.catalog import main; main()",
            "run",
            "checkpointer",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    empty = await table_bytes(url, "checkpoint")
    db = await asyncpg.connect(url)
    try:
        probe = orjson.dumps({"tenant_id": TENANT, "user_id": USER, "agent_id": AGENT})
        while True:
            try:
                await nc.request("query.state.get", probe, timeout=1)
                break
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.1)
        bodies = [
            StatePatch(
                event_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                tenant_id=TENANT,
                producer="bench",
                payload=StatePatchPayload(user_id=USER, agent_id=AGENT, patch=ops),
            )
            for ops in patches
        ]  # type: ignore[arg-type]
        data = [(e.model_dump_json(by_alias=True).encode(), e.headers()) for e in bodies]
        started = time.perf_counter()
        for i in range(0, len(data), 200):
            await asyncio.gather(
                *(js.publish("state.patch", d, headers=h) for d, h in data[i : i + 200])
            )
        sql = "SELECT max(version) FROM checkpoint.agent_states"
        while (await db.fetchval(sql) or 0) < len(patches):  # noqa: ASYNC110 - polling the db
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        batches = await db.fetchval("SELECT count(DISTINCT applied_at) FROM checkpoint.transitions")
        latencies = []
        for version in sample:
            body = orjson.dumps(
                {"tenant_id": TENANT, "user_id": USER, "agent_id": AGENT, "at_version": version + 1}
            )
            t = time.perf_counter()
            msg = await nc.request("query.state.get", body, timeout=5)
            latencies.append((time.perf_counter() - t) * 1000)
            reply = STATE_GET_REPLY.validate_json(msg.data)
            assert isinstance(reply, StateGetReply), reply
            got = reply.state.model_dump(include=set(PARTS))
            assert canonical(got) == states[version], f"engram version {version + 1} differs"
    finally:
        worker.terminate()
        worker.wait(30)
        await db.close()
        await nc.close()
    return {
        "writes_per_s": len(patches) / elapsed,
        "read_p50_ms": pct(latencies, 0.5),
        "read_p99_ms": pct(latencies, 0.99),
        "batches": batches,
        **sizes(await table_bytes(url, "checkpoint"), empty),
    }


def run_langgraph(url: str, states: list[bytes], sample: list[int]) -> dict[str, float]:
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
    from langgraph.checkpoint.postgres import PostgresSaver

    docs = [orjson.loads(s) for s in states]
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        empty = asyncio.run(table_bytes(url, "public"))
        config: Any = {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}}
        checkpoint = empty_checkpoint()
        ids = []
        started = time.perf_counter()
        for step, doc in enumerate(docs):
            previous = docs[step - 1] if step else {}
            changed = [p for p in PARTS if doc[p] != previous.get(p)]
            versions = dict(checkpoint["channel_versions"])
            for part in changed:
                versions[part] = saver.get_next_version(versions.get(part), None)
            checkpoint = create_checkpoint(checkpoint, None, step)
            checkpoint["channel_values"] = doc
            checkpoint["channel_versions"] = versions
            config = saver.put(
                config,
                checkpoint,
                {"source": "loop", "step": step, "parents": {}},
                {p: versions[p] for p in changed},
            )
            ids.append(config["configurable"]["checkpoint_id"])
        elapsed = time.perf_counter() - started
        latencies = []
        for version in sample:
            at = {
                "configurable": {
                    "thread_id": "t-1",
                    "checkpoint_ns": "",
                    "checkpoint_id": ids[version],
                }
            }
            t = time.perf_counter()
            found = saver.get_tuple(at)
            latencies.append((time.perf_counter() - t) * 1000)
            assert found is not None
            got = {p: found.checkpoint["channel_values"][p] for p in PARTS}
            assert canonical(got) == states[version], f"langgraph version {version} differs"
    return {
        "writes_per_s": len(docs) / elapsed,
        "read_p50_ms": pct(latencies, 0.5),
        "read_p99_ms": pct(latencies, 0.99),
        **sizes(asyncio.run(table_bytes(url, "public")), empty),
    }


async def one_run(
    nats_users: dict[str, str],
    admin: str,
    template: str,
    run: int,
    *,
    patches: list[list[dict[str, Any]]],
    states: list[bytes],
    sample: list[int],
    settings: dict[str, str],
) -> dict[str, dict[str, float]]:
    engram_url = await fresh_database(admin, f"bench_engram_{run}", template)
    engram = await run_engram(
        nats_users,
        engram_url,
        patches=patches,
        states=states,
        sample=sample,
        settings=settings,
    )
    lg_url = await fresh_database(admin, f"bench_langgraph_{run}")
    langgraph = await asyncio.to_thread(run_langgraph, lg_url, states, sample)
    return {"engram": engram, "langgraph": langgraph}


def show(title: str, row: dict[str, dict[str, Any]]) -> None:
    table = Table(title=title)
    for col in (
        "",
        "writes/s",
        "read p50 ms",
        "read p99 ms",
        "bytes stored",
        "history tables",
        "all tables",
    ):
        table.add_column(col, justify="right")
    for side in ("engram", "langgraph"):
        r = row[side]
        table.add_row(
            side,
            f"{r['writes_per_s']:,.0f}",
            f"{r['read_p50_ms']:.2f}",
            f"{r['read_p99_ms']:.2f}",
            f"{r['bytes']:,.0f}",
            f"{r['bytes_history_total']:,.0f}",
            f"{r['bytes_all_tables']:,.0f}",
        )
    console.print(table)
    for side in ("engram", "langgraph"):
        if "tables" in row[side]:
            console.print(
                f"  {side}: "
                + ", ".join(
                    f"{k} {v:,}"
                    for k, v in sorted(row[side]["tables"].items(), key=lambda x: -x[1])
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument(
        "--snapshot-every",
        type=int,
        help="CHECKPOINTER_SNAPSHOT_EVERY for the worker (default: its own)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/checkpointer.json")
    args = parser.parse_args()
    patches, states = build(args.versions)
    console.print(
        f"state: {len(states[0]):,} bytes canonical JSON, {args.versions} versions, "
        f"{sum(len(orjson.dumps(p)) for p in patches[1:]) // (args.versions - 1)} "
        "bytes per step patch"
    )
    sample = random.Random(11).sample(range(args.versions), min(args.reads, args.versions))
    settings = (
        {"CHECKPOINTER_SNAPSHOT_EVERY": str(args.snapshot_every)} if args.snapshot_every else {}
    )
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="engram-checkpointer-bench-"))
    stack = DevStack(folder, SERVICES)  # each service its own NATS user
    env = stack.start()
    users = {user: stack.nats_url(user) for user in stack.passwords}
    admin = admin_url(env["DATABASE_URL"])
    try:
        template = "bench_checkpoint_template"
        asyncio.run(migrate(asyncio.run(fresh_database(admin, template)), ["checkpointer"]))
        runs = []
        for run in range(args.runs):
            result = asyncio.run(
                one_run(
                    users,
                    admin,
                    template,
                    run,
                    patches=patches,
                    states=states,
                    sample=sample,
                    settings=settings,
                )
            )
            show(f"run {run + 1}", result)
            runs.append(result)
    finally:
        stack.stop()
        if not args.data_dir:
            shutil.rmtree(folder, ignore_errors=True)
    median = {
        side: {
            k: statistics.median(r[side][k] for r in runs) for k in runs[0][side] if k != "tables"
        }
        for side in ("engram", "langgraph")
    }
    show(f"median of {len(runs)} runs", median)
    e, lg = median["engram"], median["langgraph"]
    goals = {
        "writes >= 2x langgraph": e["writes_per_s"] / lg["writes_per_s"] >= GOAL_WRITES,
        "storage <= 10% of langgraph": e["bytes"] / lg["bytes"] <= GOAL_STORAGE,
        "read p99 <= 20 ms": e["read_p99_ms"] <= GOAL_P99_MS,
    }
    console.print(
        f"write ratio {e['writes_per_s'] / lg['writes_per_s']:.1f}x, storage ratio "
        f"{e['bytes'] / lg['bytes']:.1%}"
    )
    for goal, ok in goals.items():
        console.print(f"  {'[green]PASS' if ok else '[red]FAIL'}[/] {goal}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "versions": args.versions,
                "settings": settings,
                "load_average": os.getloadavg(),
                "runs": runs,
                "median": median,
                "goals": goals,
                "state_bytes": len(states[0]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
