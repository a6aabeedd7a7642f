#!/usr/bin/env python
"""Context benchmark (issue 16): query.context.build at 100k messages, 100k memories and
100k chunks over several tenants, beside the same queries made one after another, and
the tokenizer's speed.

    .venv/bin/python bench/context.py [--messages 100000] [--memories 100000] [--tenants 4]
        [--builds 200] [--runs 3] [--data-dir DIR]

Runs on a copy of services/, contracts/ and sql/ (bench/_code.reexec_on_snapshot), or
on the code that ENGRAM_BENCH_CODE names (to measure an older commit the same way).
Starts the embedded nats-server and PostgreSQL (in --data-dir, kept: its seeded database
is reused by the next run) and the real workers as processes (`engram run
ingest|embedder|memory|checkpointer|context`, each its own role and NATS user). Seeds
the tables directly (bench/context_seed.py, COPY), and an agent's state of 40 keys.

Each of --runs rounds times --builds builds with a 4,000-token budget (all five sources
of tenant ``bench``'s conversation of 2,000 messages), each followed by the baseline a
client would write: the same five queries (state, memories, the conversation's session
summaries, knowledge, recent messages) one after another; each query of the baseline is
timed on its own too (where the time goes). Every build is checked: total <= budget, and
no segment missing. Figures: p50 / p99 per round and their medians over the rounds.
Writes bench/results/context.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

warnings.filterwarnings("ignore", module="platformdirs")

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._code import SNAPSHOT_ENV, code_version, reexec_on_snapshot  # noqa: E402
from bench._figures import loadavg, percentile, write_report  # noqa: E402
from bench._servers import (  # noqa: E402
    embedded_servers,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    worker_login,
)
from bench.context_seed import AGENT, CONVERSATION, TENANT, USER, Scale, seed  # noqa: E402

BUDGET = 4000
QUERIES = ["which hotel did we book?", "what does the user like to eat?", "plan the tram tour"]
WORKERS = ("ingest", "embedder", "memory", "checkpointer", "context")


def envelope(kind: str, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "occurred_at": datetime.now(UTC).isoformat(),
            "tenant_id": TENANT,
            "producer": "bench",
            "schema_version": "1.0",
            "correlation_id": str(uuid.uuid4()),
            "payload": payload,
        }
    ).encode()


async def request(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def baseline_queries(query: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The questions a build asks, as a client would ask them."""
    t, c = TENANT, str(CONVERSATION)
    return [
        ("state", "query.state.get", {"tenant_id": t, "user_id": USER, "agent_id": AGENT}),
        (
            "memories",
            "query.memory.search",
            {
                "tenant_id": t,
                "agent_id": AGENT,
                "text": query,
                "top_k": 20,
                "filters": {"user_id": USER},
            },
        ),
        (
            "summary",
            "query.memory.search",
            {
                "tenant_id": t,
                "agent_id": AGENT,
                "text": query,
                "top_k": 10,
                "filters": {"types": ["episodic"], "conversation_id": c},
            },
        ),
        ("knowledge", "query.knowledge.search", {"tenant_id": t, "text": query, "top_k": 20}),
        ("messages", "query.chat.history", {"tenant_id": t, "conversation_id": c, "limit": 50}),
    ]


def build_request(query: str) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "agent_id": AGENT,
        "user_id": USER,
        "conversation_id": str(CONVERSATION),
        "query": query,
        "token_budget": BUDGET,
        "segments": [{"text": "You are {agent_id}."}],
    }


def tokens_per_second() -> float:
    from services.context.tokens import tokenizer

    tok = tokenizer("cl100k_base")
    text = (ROOT / "docs" / "architecture.md").read_text()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        n += tok.count(text)
    return n / (time.perf_counter() - started)


async def ready(nc: Any, within: float) -> None:
    """Until a build has every segment (the workers are up and have loaded their models)."""
    deadline = time.monotonic() + within
    while True:
        try:
            reply = await request(nc, "query.context.build", build_request(QUERIES[0]))
            if reply.get("status") == "ok" and all(
                s["status"] != "missing" for s in reply["segments"]
            ):
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not answer every source in time")
        await asyncio.sleep(1)


async def one_round(nc: Any, builds: int) -> dict[str, Any]:
    took, seq, server, over, missing = [], [], [], 0, 0
    per_query: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    for i in range(builds + 20):
        query = QUERIES[i % len(QUERIES)]
        t0 = time.perf_counter()
        reply = await request(nc, "query.context.build", build_request(query))
        t1 = time.perf_counter()
        asked: dict[str, float] = {}
        for name, subject, body in baseline_queries(query):
            q0 = time.perf_counter()
            await request(nc, subject, body)
            asked[name] = (time.perf_counter() - q0) * 1000
        t2 = time.perf_counter()
        assert reply["status"] == "ok", reply
        total = sum(s["tokens"] for s in reply["segments"])
        over += total > BUDGET or reply["total_tokens"] != total
        missing += any(s["status"] == "missing" for s in reply["segments"])
        kinds = {s["kind"]: s["status"] for s in reply["segments"]}
        if i >= 20:  # warm-up
            took.append((t1 - t0) * 1000)
            seq.append((t2 - t1) * 1000)
            server.append(reply["build_ms"])
            for name, ms in asked.items():
                per_query.setdefault(name, []).append(ms)
    return {
        "build_ms": {"p50": statistics.median(took), "p99": percentile(took, 0.99)},
        "sequential_ms": {"p50": statistics.median(seq), "p99": percentile(seq, 0.99)},
        "server_build_ms_p50": statistics.median(server),
        "query_ms_p50": {k: round(statistics.median(v), 2) for k, v in per_query.items()},
        "over_budget": over,
        "with_missing_segment": missing,
        "last_segments": kinds,
        "last_total_tokens": reply["total_tokens"],
        "loadavg": loadavg(),
    }


def medians(rounds: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {q: round(statistics.median(r[key][q] for r in rounds), 2) for q in ("p50", "p99")}


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    import nats

    from services.catalog import migrate

    scale = Scale(args.messages, args.memories, args.tenants, args.vocabulary)
    with embedded_servers(args.data_dir, "engram-bench-context-", console) as servers:
        database_url = servers.urls["DATABASE_URL"]
        await migrate(database_url)
        db = await asyncpg.connect(database_url)
        seeding = await seed(db, scale, console.log)
        console.log(f"seed: {seeding}")
        nc = await nats.connect(servers.urls["NATS_URL"])
        await fresh_streams(nc.jetstream())
        procs = []
        for service in WORKERS:
            env = {
                "NATS_URL": servers.nats_users[service],
                "DATABASE_URL": worker_login(database_url, service),
                "HF_HUB_OFFLINE": "1",
            }
            procs.append(start_process(engram_cmd(service), env, servers.logs / f"{service}.log"))
        try:
            ops = [
                {"op": "add", "path": f"/persistent/pref{i}", "value": f"likes tram tour {i}"}
                for i in range(40)
            ]
            await nc.jetstream().publish(
                "state.patch",
                envelope("state.patch", {"user_id": USER, "agent_id": AGENT, "patch": ops}),
            )
            await ready(nc, 300)
            rounds = []
            for r in range(args.runs):
                rounds.append(await one_round(nc, args.builds))
                console.log(f"round {r + 1}: {rounds[-1]}")
            counted = sorted(tokens_per_second() for _ in range(3))
            await db.close()
            await nc.close()
            return {
                "code": code_version(
                    ROOT if not os.environ.get(SNAPSHOT_ENV) else Path(os.environ[SNAPSHOT_ENV])
                ),
                "scale": {
                    "messages": args.messages,
                    "memories": args.memories,
                    "chunks": args.messages,
                    "tenants": args.tenants,
                    "vocabulary": args.vocabulary,
                },
                "seed": seeding,
                "builds_per_round": args.builds,
                "budget": BUDGET,
                "build_ms": medians(rounds, "build_ms"),
                "sequential_ms": medians(rounds, "sequential_ms"),
                "over_budget": sum(r["over_budget"] for r in rounds),
                "with_missing_segment": sum(r["with_missing_segment"] for r in rounds),
                "tokens_per_second": round(counted[1]),
                "rounds": rounds,
            }
        finally:
            for proc in procs:
                stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument(
        "--vocabulary",
        choices=["large", "small"],
        default="large",
        help="texts from ~21k words, Zipf-like (large), or from 25 words (small: the first "
        "figures' corpus, where full text matches nearly every chunk)",
    )
    parser.add_argument("--builds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "context.json")
    args = parser.parse_args()
    if not os.environ.get(SNAPSHOT_ENV):
        reexec_on_snapshot(__file__, sys.argv[1:])
    console = Console()
    report = asyncio.run(run(args, console))
    console.print_json(data=report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
