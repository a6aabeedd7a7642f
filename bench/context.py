#!/usr/bin/env python
"""Context benchmark (issue 16): query.context.build beside the same queries made one
after another, and the tokenizer's speed.

    .venv/bin/python bench/context.py [--memories 2000] [--messages 2000] [--builds 300]

Starts the embedded nats-server and PostgreSQL (DevStack) and the real workers as
processes (`engram run embedder|memory|checkpointer|context`, each its own role and NATS
user). Seeds one tenant: an agent's state, --memories semantic memories of one user and
--messages chat messages (their chunks are the knowledge), waits until every memory and
chunk is embedded, then times --builds builds with a 4,000-token budget (state, memories,
summaries, knowledge; query.chat.history is not answered on this branch, so the messages
segment is missing at once) and, for each, the baseline a client would write: the same
four queries one after another. Every build is checked: total <= budget. Writes
bench/results/context.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
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

from bench._common import (  # noqa: E402
    embedded_servers,
    engram_cmd,
    fresh_streams,
    percentile,
    start_process,
    stop_process,
    worker_login,
    write_report,
)

TENANT, USER, AGENT = "bench", "u-1", "travel-bot"
CONVERSATION = uuid.uuid4()
WORDS = [
    "hotel",
    "river",
    "castle",
    "tram",
    "museum",
    "dinner",
    "flight",
    "train",
    "beach",
    "market",
    "tour",
    "ticket",
    "room",
    "breakfast",
    "view",
    "garden",
    "bridge",
    "harbour",
    "wine",
    "fado",
    "tile",
    "street",
    "square",
    "church",
    "night",
]
QUERIES = ["which hotel did we book?", "what does the user like to eat?", "plan the tram tour"]


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


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


async def seed(js: Any, memories: int, messages: int, rng: random.Random) -> None:
    ops = [
        {"op": "add", "path": f"/persistent/pref{i}", "value": sentence(rng, 6)} for i in range(40)
    ]
    await js.publish(
        "state.patch", envelope("state.patch", {"user_id": USER, "agent_id": AGENT, "patch": ops})
    )
    for i in range(memories):
        text = sentence(rng)
        await js.publish(
            "memory.write",
            envelope(
                "memory.write",
                {
                    "memory_type": "semantic",
                    "memory_id": str(uuid.uuid4()),
                    "agent_id": AGENT,
                    "user_id": USER,
                    "text": text,
                    "importance": 0.5,
                    "content": {"concept": WORDS[i % len(WORDS)], "definition": text},
                },
            ),
        )
    await js.publish(
        "chat.conversation.created",
        envelope(
            "chat.conversation.created",
            {"conversation_id": str(CONVERSATION), "user_id": USER, "agent_id": AGENT},
        ),
    )
    for _ in range(messages):
        await js.publish(
            "chat.message.created",
            envelope(
                "chat.message.created",
                {
                    "message_id": str(uuid.uuid4()),
                    "conversation_id": str(CONVERSATION),
                    "role": rng.choice(["user", "assistant"]),
                    "content": sentence(rng, 30),
                    "content_type": "text",
                    "sender_user_id": USER,
                },
            ),
        )


async def wait_seeded(db: asyncpg.Connection, memories: int, messages: int) -> None:
    while True:
        m = await db.fetchval("SELECT count(*) FROM memory.memories WHERE embedding IS NOT NULL")
        c = await db.fetchval(
            "SELECT count(DISTINCT source_id) FROM embedder.chunks WHERE source_type = 'message'"
        )
        queued = await db.fetchval("SELECT count(*) FROM embedder.embed_queue")
        if m >= memories and c >= messages and queued == 0:
            return
        await asyncio.sleep(1)


async def request(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def sequential(nc: Any, query: str) -> None:
    """The baseline: the same four questions a build asks, one after another."""
    await request(nc, "query.state.get", {"tenant_id": TENANT, "user_id": USER, "agent_id": AGENT})
    await request(
        nc,
        "query.memory.search",
        {
            "tenant_id": TENANT,
            "agent_id": AGENT,
            "text": query,
            "top_k": 20,
            "filters": {"user_id": USER},
        },
    )
    await request(
        nc,
        "query.memory.search",
        {
            "tenant_id": TENANT,
            "agent_id": AGENT,
            "text": query,
            "top_k": 10,
            "filters": {"types": ["episodic"], "conversation_id": str(CONVERSATION)},
        },
    )
    await request(nc, "query.knowledge.search", {"tenant_id": TENANT, "text": query, "top_k": 20})


def tokens_per_second() -> float:
    from services.context.tokens import tokenizer

    tok = tokenizer("cl100k_base")
    text = (ROOT / "docs" / "architecture.md").read_text()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        n += tok.count(text)
    return n / (time.perf_counter() - started)


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    import nats

    from services.catalog import migrate

    rng = random.Random(7)
    with embedded_servers(None, "engram-bench-context-", console) as servers:
        database_url = servers.urls["DATABASE_URL"]
        await migrate(database_url)
        nc = await nats.connect(servers.urls["NATS_URL"])
        await fresh_streams(nc.jetstream())
        procs = []
        for service in ("embedder", "memory", "checkpointer", "context"):
            env = {
                "NATS_URL": servers.nats_users[service],
                "DATABASE_URL": worker_login(database_url, service),
                "HF_HUB_OFFLINE": "1",
            }
            procs.append(start_process(engram_cmd(service), env, servers.logs / f"{service}.log"))
        try:
            db = await asyncpg.connect(database_url)
            started = time.perf_counter()
            await seed(nc.jetstream(), args.memories, args.messages, rng)
            await asyncio.wait_for(wait_seeded(db, args.memories, args.messages), 900)
            console.log(f"seeded and embedded in {time.perf_counter() - started:.1f} s")
            builds, baseline, over = [], [], 0
            for i in range(args.builds + 20):
                query = QUERIES[i % len(QUERIES)]
                t0 = time.perf_counter()
                reply = await request(
                    nc,
                    "query.context.build",
                    {
                        "tenant_id": TENANT,
                        "agent_id": AGENT,
                        "user_id": USER,
                        "conversation_id": str(CONVERSATION),
                        "query": query,
                        "token_budget": 4000,
                        "segments": [{"text": "You are {agent_id}."}],
                    },
                )
                t1 = time.perf_counter()
                await sequential(nc, query)
                t2 = time.perf_counter()
                assert reply["status"] == "ok", reply
                over += reply["total_tokens"] > 4000
                if i >= 20:  # warm-up
                    builds.append((t1 - t0) * 1000)
                    baseline.append((t2 - t1) * 1000)
            kinds = {s["kind"]: s["status"] for s in reply["segments"]}
            report = {
                "memories": args.memories,
                "messages": args.messages,
                "builds": args.builds,
                "budget": 4000,
                "build_ms": {"p50": statistics.median(builds), "p99": percentile(builds, 0.99)},
                "sequential_ms": {
                    "p50": statistics.median(baseline),
                    "p99": percentile(baseline, 0.99),
                },
                "over_budget": over,
                "last_segments": kinds,
                "last_total_tokens": reply["total_tokens"],
                "tokens_per_second": tokens_per_second(),
            }
            await db.close()
            await nc.close()
            return report
        finally:
            for proc in procs:
                stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--builds", type=int, default=300)
    args = parser.parse_args()
    console = Console()
    report = asyncio.run(run(args, console))
    console.print_json(data=report)
    write_report(ROOT / "bench" / "results" / "context.json", report)


if __name__ == "__main__":
    main()
