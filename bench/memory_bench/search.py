"""Search: query.memory.search latency at the largest size, beside its floors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import numpy as np

from bench._figures import loadavg, pct
from bench._servers import stop_process
from bench.memory_bench.generate import Generator
from bench.memory_bench.scale import ScaleData
from bench.memory_bench.settings import DIMS, MODEL_ID, SCALE_MIX, TENANT, console
from bench.memory_bench.slots import APIS, CITIES, PRODUCTS, SERVICES, SYSTEMS
from bench.memory_bench.stack import Bench, CpuMeter, db_conn

# --- search ------------------------------------------------------------------------------

QUESTIONS = [
    "what does {first} like to eat",
    "is {first} vegetarian or allergic to anything",
    "{first}'s seat preference on long flights",
    "where does {first} live",
    "which hotel did {first} book in {city}",
    "when did {first} fly to {city}",
    "what is {first}'s hotel budget",
    "did {first} complain about an order",
    "refund requested by {first}",
    "what time can I call {first}",
    "how to deploy {service} to staging",
    "how do I reset a {system} password",
    "{system} error code meaning",
    "what plan of {product} includes SSO",
    "how long does the train from {city} airport take",
    "where does {service} read its secrets",
    "rate limit of the {api} API",
    "{first}'s favourite restaurant in {city}",
    "what happened with the {service} deploy",
    "how to escalate a P1 ticket",
    "book a trip for {first}",
    "{first} moving to {city}",
    "what car does {first} drive",
    "language {first} prefers",
    "opening hours of the museum in {city}",
    "how should I format answers for {first}",
    "what does {first} do for a living",
    "export the churn report",
    "onboarding steps for a new engineer",
    "{first} missed a flight",
]


def query_texts(users: Sequence[tuple[str, str, str]], n: int, seed_: int) -> list[str]:
    rng = random.Random(seed_)
    firsts = sorted({u[1] for u in users})
    out = []
    for _ in range(n):
        q = rng.choice(QUESTIONS).format(
            first=rng.choice(firsts),
            city=rng.choice(CITIES)[0],
            service=rng.choice(SERVICES),
            system=rng.choice(SYSTEMS),
            product=rng.choice(PRODUCTS),
            api=rng.choice(APIS),
        )
        out.append(q + rng.choice(["?", "", "?"]))
    return out


async def _request(nc: Any, subject: str, body: bytes) -> tuple[float, bytes]:
    t = time.perf_counter()
    msg = await nc.request(subject, body, timeout=10)
    return (time.perf_counter() - t) * 1000, msg.data


async def search(  # noqa: PLR0915 - one sequence of phases, easier to read whole
    bench: Bench, args: argparse.Namespace, data: ScaleData
) -> dict[str, Any]:
    from contracts.embedding import EMBED_SUBJECT, MAX_TOP_K, EmbedRequest
    from contracts.memory_search import MEMORY_SEARCH_SUBJECT, MemorySearchRequest
    from services.memory.search import search_sql
    from services.memory.settings import MemorySettings

    settings = MemorySettings()
    db = await bench.clone(data.seed_db)
    await bench.fresh_streams()
    embedder = bench.start_worker("embedder", db, "search-embedder-worker")
    memory = bench.start_worker("memory", db, "search-memory-worker")
    nc = await nats.connect(bench.nats_url)
    # As the service's search pool: its own login, acting as its reader (one tenant).
    conn = await db_conn(bench.service_url(db, "memory"))
    await conn.execute(f"SET ROLE {settings.roles.reader}")
    agent = f"agent-{data.size}"
    users = Generator(
        args.seed + data.size, SCALE_MIX, n_users=max(10, (data.size - data.size // 10) // 40)
    ).users
    texts = query_texts(users, args.queries, seed_=args.seed + 7)
    limit = max(settings.candidates, 10)

    def embed_body(text: str) -> bytes:
        return EmbedRequest(texts=[text]).model_dump_json().encode()

    def search_body(text: str) -> bytes:
        return (
            MemorySearchRequest(tenant_id=TENANT, agent_id=agent, text=text, top_k=10)
            .model_dump_json()
            .encode()
        )

    # The floor of the database part: the search statement alone, on a connection with the
    # search settings set once per session (as the service's search pool has them).
    ef_search = max(settings.ef_search, limit, MAX_TOP_K)
    await conn.execute(
        """SELECT set_config('engram.tenant_id', $1, false),
                  set_config('hnsw.ef_search', $2, false),
                  set_config('hnsw.iterative_scan', 'relaxed_order', false)""",
        TENANT,
        str(ef_search),
    )

    async def bare_sql(vector: np.ndarray) -> float:
        t = time.perf_counter()
        await conn.fetch(
            search_sql(DIMS),
            TENANT,
            agent,
            vector,
            MODEL_ID,
            ["active"],
            None,
            None,
            None,
            None,
            limit,
            datetime.now(UTC),
        )
        return (time.perf_counter() - t) * 1000

    try:
        t0 = time.perf_counter()
        deadline = time.monotonic() + 300
        while True:  # the embedder answers once its model is loaded and warm
            if embedder.poll() is not None or memory.poll() is not None:
                raise RuntimeError(f"a worker exited; see {bench.logs}")
            with contextlib.suppress(Exception):
                _, data_ = await _request(nc, EMBED_SUBJECT, embed_body("warm up"))
                if b'"ok"' in data_:
                    _, data_ = await _request(nc, MEMORY_SEARCH_SUBJECT, search_body("warm up"))
                    if b'"ok"' in data_:
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not answering; see {bench.logs}")
            await asyncio.sleep(0.5)
        console.log(f"embedder and memory workers answering after {time.perf_counter() - t0:.0f}s")
        vectors = []
        for text in texts:  # warm-up, and the query vectors of the bare SQL
            _, reply = await _request(nc, EMBED_SUBJECT, embed_body(text))
            vectors.append(np.asarray(json.loads(reply)["vectors"][0], dtype=np.float32))
        for text, v in list(zip(texts, vectors, strict=True))[:50]:
            await _request(nc, MEMORY_SEARCH_SUBJECT, search_body(text))
            await bare_sql(v)
        per_run = []
        hits = []
        for run in range(args.runs):
            load0 = loadavg()
            meter = CpuMeter(bench.pids, {"embedder": embedder, "memory": memory})
            embed = [(await _request(nc, EMBED_SUBJECT, embed_body(t)))[0] for t in texts]
            sql = [await bare_sql(v) for v in vectors]
            full = []
            for text in texts:
                ms, reply = await _request(nc, MEMORY_SEARCH_SUBJECT, search_body(text))
                body = json.loads(reply)
                if body.get("status") != "ok":
                    raise RuntimeError(f"query.memory.search: {body}")
                full.append(ms)
                hits.append(len(body["hits"]))
            per_run.append(
                {
                    "search_p50_ms": pct(full, 0.5),
                    "search_p99_ms": pct(full, 0.99),
                    "embed_p50_ms": pct(embed, 0.5),
                    "embed_p99_ms": pct(embed, 0.99),
                    "sql_p50_ms": pct(sql, 0.5),
                    "sql_p99_ms": pct(sql, 0.99),
                    "search_max_ms": max(full),
                    "cpu": meter.stop(),
                    "loadavg_at_start": load0,
                }
            )
            console.log(
                f"search run {run + 1}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in per_run[-1].items() if k.endswith("ms"))
            )
    finally:
        await nc.close()
        await conn.close()
        stop_process(memory)
        stop_process(embedder)
        await bench.drop(db)
    keys = [k for k in per_run[0] if k.endswith("_ms")]
    return {
        "memories": data.size,
        "queries": len(texts),
        "runs": per_run,
        "median": {k: statistics.median(r[k] for r in per_run) for k in keys},
        "mean_hits": statistics.mean(hits),
        "examples": texts[:8],
    }
