#!/usr/bin/env python
"""The whole pipeline end to end: realistic chat events into the five workers.

    .venv/bin/python bench/pipeline.py [--events 20000] [--runs 1] [--rate 20]
                                       [--latency-seconds 60] [--runtimes torch,onnx-int8]

Starts the embedded nats-server and PostgreSQL (DevStack, as `engram dev`), migrates, and per
run and embedder runtime: a fresh database and streams, the five workers each as its own
`engram run <service>` process (as in production), warmed up; then

  catch-up  N chat events (conversations, sessions, messages with edits and deletes)
            published as fast as possible; per worker: time until its durable consumers
            have nothing pending or unacked (the embedder: and its embed queue is empty),
            events/s, and the CPU cores of each process over the window (psutil);
  latency   chat.message.created at a steady --rate; per message, publish -> its chunk
            committed (text-searchable) and -> its vector committed (vector-searchable),
            polled every 10 ms; p50 / p99.

Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402
import psutil  # type: ignore[import-untyped]  # noqa: E402

from bench._figures import pct, write_report  # noqa: E402
from bench._servers import admin_url, stop_process, worker_login  # noqa: E402
from bench.corpus import chat_texts  # noqa: E402
from bench.embedder import Bench  # noqa: E402
from contracts.chat import (  # noqa: E402
    ConversationCreated,
    ConversationCreatedPayload,
    MessageCreated,
    MessageCreatedPayload,
    MessageDeleted,
    MessageDeletedPayload,
    MessageEdited,
    MessageEditedPayload,
    Role,
    SessionEnded,
    SessionEndedPayload,
    SessionStarted,
    SessionStartedPayload,
)
from contracts.envelope import Envelope  # noqa: E402
from services.catalog import SERVICES as CATALOG  # noqa: E402
from services.catalog import migrate  # noqa: E402
from services.runtime.embedded import DevStack  # noqa: E402

SERVICES = ("ingest", "embedder", "memory", "checkpointer", "audit")
TEMPLATE = "bench_embedder_template"


def events(n: int, seed: int) -> list[Envelope]:
    """Conversations of ~20 turns over 4 tenants, interleaved like live traffic."""
    rng = random.Random(seed)
    texts = chat_texts(n, seed=seed)
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    out: list[Envelope] = []
    live: list[list[Envelope]] = []
    i = 0
    while i < n:
        tenant, cid, sid = f"tenant-{rng.randrange(4)}", uuid.uuid4(), uuid.uuid4()
        at = t0 + timedelta(seconds=i)

        def env(cls: Any, payload: Any, tenant: str = tenant, at: datetime = at) -> Envelope:
            return cls(  # type: ignore[no-any-return]
                event_id=uuid.uuid4(),
                occurred_at=at,
                tenant_id=tenant,
                producer="bench",
                payload=payload,
            )

        conv: list[Envelope] = [
            env(ConversationCreated, ConversationCreatedPayload(conversation_id=cid, user_id="u")),
            env(SessionStarted, SessionStartedPayload(session_id=sid, conversation_id=cid)),
        ]
        for turn in range(rng.randint(10, 30)):
            mid = uuid.uuid4()
            conv.append(
                env(
                    MessageCreated,
                    MessageCreatedPayload(
                        message_id=mid,
                        conversation_id=cid,
                        session_id=sid,
                        role=Role.user if turn % 2 == 0 else Role.assistant,
                        content=texts[i % n],
                    ),
                )
            )
            i += 1
            if rng.random() < 0.03:
                conv.append(
                    env(
                        MessageEdited,
                        MessageEditedPayload(
                            message_id=mid, content=texts[(i * 7) % n], edited_by="u"
                        ),
                    )
                )
            elif rng.random() < 0.01:
                conv.append(
                    env(MessageDeleted, MessageDeletedPayload(message_id=mid, deleted_by="u"))
                )
        conv.append(env(SessionEnded, SessionEndedPayload(session_id=sid, conversation_id=cid)))
        live.append(conv)
    while live:  # round robin over a few open conversations at a time
        conv = live[rng.randrange(min(8, len(live)))]
        out.append(conv.pop(0))
        if not conv:
            live.remove(conv)
    return out


def start(
    service: str, bench: Bench, db: str, runtime: str, nats_users: dict[str, str]
) -> subprocess.Popen[bytes]:
    # Each worker as in production: its own NATS user and its own database login.
    env = {
        **os.environ, "NATS_URL": nats_users[service],
        "DATABASE_URL": worker_login(bench.url(db), service),
        "EMBEDDER_RUNTIME": runtime, "EMBEDDER_INT8_MIN_RECALL": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    log = (bench.logs / f"pipeline-{service}.log").open("ab")
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "engram"), "run", service, "--log-level", "WARNING"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )  # fmt: skip


def cpu(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for name, ps in procs.items():
        for p in ps:
            try:
                t = p.cpu_times()
                total[name] = total.get(name, 0.0) + t.user + t.system
            except psutil.Error:
                pass
    return total


def processes(workers: dict[str, subprocess.Popen[bytes]]) -> dict[str, list[psutil.Process]]:
    procs = {s: [psutil.Process(w.pid)] for s, w in workers.items()}
    procs["postgres"] = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    procs["nats-server"] = [
        p for p in psutil.process_iter(["name"]) if p.info["name"] == "nats-server"
    ]
    return procs


async def publish(js: Any, batch: list[Envelope]) -> None:
    futures = [
        await js.publish_async(e.type, e.model_dump_json().encode(), headers=e.headers())
        for e in batch
    ]
    await asyncio.gather(*futures)


async def pending(js: Any, conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Per service: (messages pending or unacked, messages acked)."""
    out = {s: (0, 0) for s in SERVICES}
    for stream in ("CHAT", "MEMORY", "STATE", "ENGRAM"):
        for info in await js.consumers_info(stream):
            name = info.name
            if name in out:
                left = (info.num_pending or 0) + (info.num_ack_pending or 0)
                done = info.ack_floor.consumer_seq if info.ack_floor else 0
                out[name] = (out[name][0] + left, out[name][1] + done)
    queued = int(await conn.fetchval("SELECT count(*) FROM embedder.embed_queue"))
    out["embedder"] = (out["embedder"][0] + queued, out["embedder"][1])
    return out


async def one_run(
    bench: Bench,
    args: argparse.Namespace,
    runtime: str,
    seed: int,
    nats_users: dict[str, str],
) -> dict[str, Any]:
    db = await bench.fresh_db()
    await bench.fresh_streams()
    workers = {s: start(s, bench, db, runtime, nats_users) for s in SERVICES}
    conn = await asyncpg.connect(bench.url(db))
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream(publish_async_max_pending=4000)
    try:
        warm = events(3, seed=seed + 1000)
        await publish(js, warm)
        deadline = time.monotonic() + 300
        while not await conn.fetchval("SELECT count(*) FROM embedder.chunk_vectors"):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers.values()):
                raise RuntimeError(f"workers did not start; see {bench.logs}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        procs = processes(workers)
        batch = events(args.events, seed=seed)
        before, t0 = cpu(procs), time.perf_counter()
        await publish(js, batch)
        published = time.perf_counter() - t0
        caught: dict[str, float] = {}
        acked: dict[str, int] = {}
        while len(caught) < len(SERVICES):
            state = await pending(js, conn)
            now = time.perf_counter() - t0
            for s, (left, done) in state.items():
                if s not in caught and left == 0:
                    caught[s], acked[s] = now, done
            if now > args.timeout:
                break
            await asyncio.sleep(0.25)
        wall = time.perf_counter() - t0
        used = cpu(procs)
        cores = {k: (used.get(k, 0.0) - before.get(k, 0.0)) / wall for k in used}
        latency = await steady(js, conn, args)
        return {
            "runtime": runtime, "events": len(batch), "publish_s": published,
            "caught_up_s": caught, "events_per_s": {
                s: acked[s] / caught[s] for s in caught if caught[s] > 0 and acked.get(s)
            }, "acked": acked, "window_s": wall, "cpu_cores": cores,
            "machine_busy_cores": psutil.cpu_percent(interval=None) / 100 * psutil.cpu_count(),
            "latency": latency,
        }  # fmt: skip
    finally:
        for w in workers.values():
            stop_process(w)
        await nc.close()
        await conn.close()
        await bench.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def steady(js: Any, conn: asyncpg.Connection, args: argparse.Namespace) -> dict[str, float]:
    """Messages at --rate: publish -> chunk committed, publish -> vector committed."""
    texts = chat_texts(int(args.rate * args.latency_seconds), seed=4242)
    sent: dict[uuid.UUID, float] = {}
    chunk_at: dict[uuid.UUID, float] = {}
    vector_at: dict[uuid.UUID, float] = {}
    cid = uuid.uuid4()

    async def poll() -> None:
        while True:
            open_ids = [m for m in sent if m not in vector_at]
            if open_ids:
                rows = await conn.fetch(
                    """SELECT c.source_id, bool_or(v.chunk_id IS NOT NULL)
                         FROM embedder.chunks c LEFT JOIN embedder.chunk_vectors v USING (chunk_id)
                        WHERE c.source_id = ANY($1::uuid[]) GROUP BY 1""",
                    open_ids,
                )
                now = time.perf_counter()
                for mid, has_vector in rows:
                    chunk_at.setdefault(mid, now)
                    if has_vector:
                        vector_at.setdefault(mid, now)
            await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll())
    start_t = time.perf_counter()
    for i, text in enumerate(texts):
        await asyncio.sleep(max(0.0, start_t + i / args.rate - time.perf_counter()))
        mid = uuid.uuid4()
        e = MessageCreated(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), tenant_id="tenant-0",
            producer="bench", payload=MessageCreatedPayload(
                message_id=mid, conversation_id=cid, role=Role.user, content=text),
        )  # fmt: skip
        sent[mid] = time.perf_counter()
        await js.publish(e.type, e.model_dump_json().encode(), headers=e.headers())
    deadline = time.perf_counter() + 60
    while len(vector_at) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    poller.cancel()
    chunk = sorted((chunk_at[m] - sent[m]) * 1000 for m in chunk_at)
    vector = sorted((vector_at[m] - sent[m]) * 1000 for m in vector_at)

    return {
        "messages": len(sent), "vectors_seen": len(vector),
        "chunk_p50_ms": pct(chunk, 0.5), "chunk_p99_ms": pct(chunk, 0.99),
        "vector_p50_ms": pct(vector, 0.5), "vector_p99_ms": pct(vector, 0.99),
    }  # fmt: skip


async def run(
    args: argparse.Namespace, admin: str, nats_users: dict[str, str], logs: Path
) -> dict[str, Any]:
    bench = Bench(admin, nats_users["admin"], logs)
    await bench.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    await bench.admin(f"CREATE DATABASE {TEMPLATE}")
    await migrate(bench.url(TEMPLATE))
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        for runtime in args.runtimes:  # interleaved: each pair ran minutes apart
            r = await one_run(bench, args, runtime, 7 + i, nats_users)
            print(json.dumps(r, default=str), flush=True)
            runs.append(r)
    return {"runs": runs, "load_average": os.getloadavg(), "args": vars(args)}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--latency-seconds", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--runtimes", type=lambda v: v.split(","), default=["torch", "onnx-int8"])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engram-bench-pipeline-"))
    stack = DevStack(root, CATALOG)  # each service its own NATS user, as under `engram dev`
    urls = stack.start()
    nats_users = {user: stack.nats_url(user) for user in stack.passwords}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        admin = admin_url(urls["DATABASE_URL"])
        report = asyncio.run(run(args, admin, nats_users, root))
    finally:
        stack.stop()
    report["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_report(args.out, report)
    print(f"wrote {args.out}; medians: " + json.dumps(summary(report["runs"]), indent=1))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for runtime in {r["runtime"] for r in runs}:
        rs = [r for r in runs if r["runtime"] == runtime]
        out[runtime] = {
            "caught_up_s": {
                s: statistics.median(r["caught_up_s"].get(s, float("nan")) for r in rs)
                for s in SERVICES
            },
            "vector_p50_ms": statistics.median(r["latency"]["vector_p50_ms"] for r in rs),
            "vector_p99_ms": statistics.median(r["latency"]["vector_p99_ms"] for r in rs),
            "chunk_p99_ms": statistics.median(r["latency"]["chunk_p99_ms"] for r in rs),
        }  # fmt: skip
    return out


if __name__ == "__main__":
    main()
