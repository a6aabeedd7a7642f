#!/usr/bin/env python
"""Scale-out bench: 1, 2 and 4 replicas of `engram run ingest` and `engram run embedder`
on one durable consumer each, draining a preloaded backlog.

    .venv/bin/python bench/scaleout.py [--events 60000] [--texts 2000] [--replicas 1,2,4]
                                       [--rounds 3] [--only ingest|embedder] [--quick]

Per service, R and round: fresh streams and database, N chat.message.created published,
then R worker processes (one durable, each its own metrics port). The window runs from
"every replica answers /health/ready" to "all applied in the database"; rate = applied
inside it / its length. Also: num_redelivered (consumer info), the replicas'
engram_events_duplicate counters, CPU per process and the load average (the machine has
2 cores shared with other jobs: a ceiling here, not per-replica capacity). p50 of the
rounds; writes bench/results/scaleout.json. docs/benchmarks.md says how to read it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import asyncpg  # noqa: E402
import nats  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402

from bench import _figures, _script  # noqa: E402
from bench._figures import loadavg  # noqa: E402
from bench._servers import (  # noqa: E402
    Postgres,
    Servers,
    consumer_info,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    worker_login,
)

console = _script.console()
# What "everything applied" means in each service's database.
DRAINED = {
    "ingest": "SELECT (SELECT count(*) FROM ingest.inbox) >= $1"
    " AND (SELECT count(*) FROM ingest.messages) >= $1",
    "embedder": "SELECT (SELECT count(*) FROM embedder.inbox) >= $1"
    " AND NOT EXISTS (SELECT 1 FROM embedder.embed_queue)",
}
DONE_SO_FAR = {
    "ingest": "SELECT count(*) FROM ingest.messages",
    "embedder": "SELECT count(*) FROM embedder.chunk_vectors",
}
# The embedder as issue 17 measured it raw (torch fp32 on the CPU), so the figures compare;
# the embedded PostgreSQL has no other model, so nothing else is downloaded.
EMBEDDER_ENV = {"EMBEDDER_RUNTIME": "torch", "EMBEDDER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}


@dataclass
class Config:
    events: int
    texts: int
    replicas: list[int]
    rounds: int
    only: str | None
    quick: bool
    data_dir: Path | None
    out: Path
    live_code: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, path: str) -> tuple[int, str]:
    """Status and body of http://127.0.0.1:<port><path>; (0, "") while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status), r.read().decode()
    except OSError:
        return 0, ""


def counter(body: str, name: str) -> float:
    """The sum of metric ``name``'s samples (any labels) in a Prometheus exposition."""
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ingest_wire(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    from bench.ingest import build_events  # the ingest bench's realistic conversations

    return [
        (e.type, e.model_dump_json().encode(), e.headers())
        for e in build_events(n, conversations=2000, tenants=6)
    ]


def embedder_wire(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    from bench.corpus import chat_texts
    from contracts.chat import MessageCreated, MessageCreatedPayload, Role

    rng = random.Random(11)
    convs = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(500)]
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    events = [
        MessageCreated(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            tenant_id=f"tenant-{i % 6}",
            producer="bench",
            occurred_at=t0 + timedelta(seconds=i),
            payload=MessageCreatedPayload(
                message_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                conversation_id=rng.choice(convs),
                role=Role.user if i % 2 else Role.assistant,
                content=text,
            ),
        )
        for i, text in enumerate(chat_texts(n, seed=7))
    ]
    return [(e.type, e.model_dump_json().encode(), e.headers()) for e in events]


async def drained(js: JetStreamContext, db: asyncpg.Connection, service: str, n: int) -> bool:
    """Everything applied. Ingest acks after COMMIT, so its ack floor reaching ``n`` (read
    from NATS: counting a growing table every 10 ms would load PostgreSQL) comes first and
    the database confirms; the embedder acks once a message's chunks are queued, so its
    (small) tables are polled."""
    if service == "ingest":
        info = await consumer_info(js, service, "CHAT")
        if info is None or info.ack_floor is None or (info.ack_floor.stream_seq or 0) < n:
            return False
    return bool(await db.fetchval(DRAINED[service], n))


async def preload(js: JetStreamContext, wire: list[tuple[str, bytes, dict[str, str]]]) -> float:
    started = time.perf_counter()
    futures = [await js.publish_async(s, d, headers=h) for s, d, h in wire]
    await js.publish_async_completed()
    if futures[-1].result().seq != len(wire):
        raise RuntimeError("backlog not as expected (stream not fresh?)")
    return len(wire) / (time.perf_counter() - started)


async def one_round(  # noqa: PLR0917 - one round's servers, service and size
    servers: Servers,
    pg: Postgres,
    js: JetStreamContext,
    service: str,
    wire: list[tuple[str, bytes, dict[str, str]]],
    replicas: int,
    label: str,
) -> dict[str, Any]:
    n = len(wire)
    await fresh_streams(js)
    url = await pg.clone(f"scale_{service}", f"scale_tpl_{service}")
    await pg.checkpoint()
    publish_eps = await preload(js, wire)
    db = await asyncpg.connect(url)
    ports = [free_port() for _ in range(replicas)]
    env = {
        "NATS_URL": servers.nats_users.get(service, servers.urls["NATS_URL"]),
        "DATABASE_URL": worker_login(url, service),
        **(EMBEDDER_ENV if service == "embedder" else {}),
    }
    prefix = service.upper()
    procs = {
        f"r{i}": start_process(
            [*engram_cmd(service), "--log-level", "WARNING"],
            {**env, f"{prefix}_HTTP_PORT": str(port)},
            servers.logs / f"{label}-r{i}.log",
        )
        for i, port in enumerate(ports)
    }
    load_start = loadavg()
    try:
        spawned = time.perf_counter()
        waiting = set(ports)
        while waiting:  # every replica ready: the window opens
            for p in list(waiting):
                if scrape(p, "/health/ready")[0] == 200:
                    waiting.discard(p)
            if any(proc.poll() is not None for proc in procs.values()):
                raise RuntimeError(f"{label}: a replica exited; see {servers.logs}")
            if time.perf_counter() - spawned > 300:
                raise TimeoutError(f"{label}: replicas not ready in 300s")
            await asyncio.sleep(0.02)
        meter = _figures.CpuMeter(servers.pids, procs)
        meter.start()
        t0 = time.perf_counter()
        before = int(await db.fetchval(DONE_SO_FAR[service]))
        while not await drained(js, db, service, n):
            if time.perf_counter() - t0 > 1800:
                raise TimeoutError(f"{label}: not drained in 1800s")
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - t0
        inbox = int(await db.fetchval(f"SELECT count(*) FROM {service}.inbox"))
        # The units the window counts: messages (ingest), chunk vectors (embedder).
        units = int(await db.fetchval(DONE_SO_FAR[service]))
        cpu = meter.stop(max(units - before, 1))  # CPU per message / per chunk
        bodies = [scrape(p, "/metrics")[1] for p in ports]
        info = await consumer_info(js, service, "CHAT")
    finally:
        for proc in procs.values():
            stop_process(proc, 25.0)
        await db.close()
    applied = [counter(b, "engram_events_applied_total") for b in bodies]
    # Per message: the embedder's chunks per message turn its chunk rate into texts/s.
    rate = (units - before) / seconds * n / max(units, 1)
    row = {
        "replicas": replicas,
        "events": n,
        "publish_eps": publish_eps,
        "ready_after_s": t0 - spawned,
        "applied_before_window": before,
        "window_s": seconds,
        "rate": rate,
        "rate_per_replica": rate / replicas,
        "applied_per_replica": applied,
        "redelivered": info.num_redelivered if info else None,
        "delivered": info.delivered.stream_seq if info and info.delivered else None,
        "duplicates": sum(counter(b, "engram_events_duplicate_total") for b in bodies),
        "inbox_rows": inbox,
        "units": units,
        "cpu": cpu,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }
    if inbox != n:
        raise RuntimeError(f"{label}: {inbox} inbox rows for {n} events")
    cores = " ".join(f"{k[:-6]} {v:.2f}" for k, v in cpu.items() if k.endswith("_cores"))
    console.log(
        f"{label}: {rate:,.0f}/s ({rate / replicas:,.0f} per replica), {before} before "
        f"the window, redelivered {row['redelivered']}, duplicates {row['duplicates']:.0f}, "
        f"cores: {cores}, load {row['loadavg_end']}"
    )
    return row


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rate", "rate_per_replica", "window_s", "ready_after_s", "redelivered", "duplicates")
    out: dict[str, Any] = {k: statistics.median(float(r[k] or 0) for r in rows) for k in keys}
    cpu_keys = [k for k in rows[0]["cpu"] if k.endswith("_cores")]
    out["cores"] = {k: statistics.median(r["cpu"].get(k, 0.0) for r in rows) for k in cpu_keys}
    return out


async def work(cfg: Config, servers: Servers) -> dict[str, Any]:
    pg = Postgres()
    pg.admin_url = servers.admin_url
    nc = await nats.connect(servers.urls["NATS_URL"])
    js = nc.jetstream(publish_async_max_pending=4000)
    results: dict[str, Any] = {}
    try:
        for service in ("ingest", "embedder"):
            if cfg.only not in (None, service):
                continue
            await pg.migrated_template(f"scale_tpl_{service}", [service])
            wire = ingest_wire(cfg.events) if service == "ingest" else embedder_wire(cfg.texts)
            per_r: dict[str, Any] = {}
            for r in cfg.replicas:
                label = f"{service}-R{r}"
                rows = [
                    await one_round(servers, pg, js, service, wire, r, f"{label}-{k}")
                    for k in range(cfg.rounds)
                ]
                per_r[str(r)] = {"median": median_of(rows), "rounds": rows}
            results[service] = per_r
    finally:
        await nc.close()
    return results


def parse(argv: list[str]) -> Config:
    p = _script.parser(__doc__)
    p.epilog = (__doc__ or "").split("\n\n", 1)[1]  # how it measures, under the options
    p.add_argument("--events", type=int, default=60_000, help="ingest backlog (events)")
    p.add_argument("--texts", type=int, default=2_000, help="embedder backlog (messages)")
    p.add_argument("--replicas", default="1,2,4", help="replica counts, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="rounds per replica count (p50)")
    p.add_argument("--only", choices=("ingest", "embedder"), default=None)
    p.add_argument("--quick", action="store_true", help="5,000 events, 200 texts, 1 round")
    _script.add_run_options(p, out=_script.RESULTS / "scaleout.json", out_help="JSON report")
    a = p.parse_args(argv)
    if a.quick:
        a.events, a.texts, a.rounds = min(a.events, 5_000), min(a.texts, 200), 1
    a.replicas = [int(x) for x in a.replicas.split(",")]
    return Config(**vars(a))


def main(argv: list[str]) -> int:
    cfg = parse(argv)
    done = _script.measure(__file__, argv, cfg, console, lambda s: work(cfg, s))
    report = {**_script.report_head("scaleout", cfg, done), "results": done.result}
    for service, per_r in done.result.items():
        for r, got in per_r.items():
            m = got["median"]
            console.print(
                f"{service:8} R={r}: {m['rate']:,.0f}/s total, {m['rate_per_replica']:,.0f}/s "
                f"per replica, redelivered {m['redelivered']:.0f}, duplicates "
                f"{m['duplicates']:.0f}, cores {m['cores']}"
            )
    _script.write(cfg.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
