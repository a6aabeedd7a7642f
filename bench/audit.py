#!/usr/bin/env python
"""Audit writer benchmark: engram's audit writer beside the limits it cannot beat.

    .venv/bin/python bench/audit.py [--events 50000] [--runs 3] [--quick] [--data-dir DIR]

Starts the embedded nats-server and PostgreSQL itself (DevStack, in a temporary folder
unless --data-dir), builds N messages once (85% chat.message.created from contracts.chat,
the rest memory/state/engram envelopes, DLQ copies and a few malformed bodies, over 6
tenants) and per run, on fresh streams and databases cloned from a migrated template,
measures side by side:

  end to end      `engram run audit` (a separate process) on the pre-published backlog:
                  first delivery -> every chained row committed (events/s); once with one
                  writer and once with two replicas.
  pull+ack        nats-py fetch(500) + ack of the same backlog: no decoding, no database.
                  The ceiling of any Python JetStream consumer on this machine.
  chain append    repo.append (tenant locks, heads, hashing, COPY, heads moved) of the
                  same records, pre-decoded, 500 per transaction, logged in as the
                  writer (engram_audit), each transaction scoped to its batch's tenants.
  plain COPY      the same rows (already hashed) COPY'd 500 per transaction into a plain
                  table with audit.events' columns and indexes: the write limit.
  verify          `engram audit verify`'s walk over the rows the writer recorded (rows/s).
  decode          building the records from the bytes, in this process (per message).

Prints a table per run and the medians of all runs with the goals; writes JSON to
bench/results/audit.json (audit-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", module="platformdirs")

import asyncpg  # noqa: E402
import nats  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench._figures import write_report  # noqa: E402
from bench._servers import Postgres, fresh_streams, stop_process, worker_login  # noqa: E402
from contracts.chat import MessageCreated, MessageCreatedPayload, Role  # noqa: E402
from services.audit import repo  # noqa: E402
from services.audit.logic import build_record  # noqa: E402
from services.audit.record import AuditRecord  # noqa: E402
from services.audit.redaction import RedactionPolicy  # noqa: E402
from services.audit.verify import verify_database  # noqa: E402
from services.catalog import migrate  # noqa: E402
from services.runtime.bus import STREAMS  # noqa: E402
from services.runtime.db import scope_tenants  # noqa: E402

TEMPLATE = "audit_bench_template"
GOALS = {"e2e_eps": 10_000.0, "append_rps": 20_000.0}
console = Console(highlight=False, log_path=False, width=None if sys.stdout.isatty() else 110)
WORDS = (  # noqa: SIM905 - a sentence is easier to read than a list of words
    "the a to and of in is it you that for on with hotel river flight tomorrow price review "
    "table query index deploy error token model prompt memory agent session file café Zürich "
    "日本語 😊 → budget latency python postgres nats kubernetes please thanks"
).split()


@dataclass(frozen=True)
class Wire:
    subject: str
    data: bytes
    headers: dict[str, str] | None


def text(rng: random.Random, median: int) -> str:
    n = int(min(3000, max(10, rng.lognormvariate(0, 0.8) * median)))
    out: list[str] = []
    while sum(map(len, out)) + len(out) < n:
        out.append(rng.choice(WORDS))
    return " ".join(out)


def build_messages(n: int, seed: int = 7) -> list[Wire]:
    rng = random.Random(seed)
    tenants = [f"tenant-{i}" for i in range(6)]
    conversations = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(300)]
    base = datetime(2026, 11, 1, 9, tzinfo=UTC)
    wire: list[Wire] = []
    for i in range(n):
        tenant = rng.choice(tenants)
        roll = rng.random()
        at = base + timedelta(milliseconds=37 * i)
        if roll < 0.85:
            role = rng.choice((Role.user, Role.assistant, Role.assistant, Role.tool))
            event = MessageCreated(
                event_id=uuid.uuid4(),
                tenant_id=tenant,
                producer="chat-api@bench",
                occurred_at=at,
                correlation_id=uuid.uuid4(),
                payload=MessageCreatedPayload(
                    message_id=uuid.uuid4(),
                    conversation_id=rng.choice(conversations),
                    role=role,
                    content=text(rng, 90 if role is Role.user else 500),
                    metadata={
                        "tokens": rng.randint(1, 900),
                        "model": "gpt-4.1",
                        "latency_ms": round(rng.uniform(100, 4000), 1),
                    },
                ),
            )
            data = event.model_dump_json().encode()
            wire.append(Wire(event.type, data, event.headers()))
            if rng.random() < 0.01:  # a dead letter: the same bytes on the DLQ stream
                wire.append(
                    Wire(
                        f"dlq.ingest.{event.type}",
                        data,
                        {
                            "Engram-Dlq-Kind": "poison",
                            "Engram-Dlq-Reason": "bench",
                            "Nats-Msg-Id": f"ingest:CHAT:{i}",
                        },
                    )
                )
        elif roll < 0.995:
            subject = rng.choice(("memory.write", "state.patch", "engram.embedding.ready"))
            eid = str(uuid.uuid4())
            body = {
                "event_id": eid,
                "type": subject,
                "occurred_at": at.isoformat(),
                "tenant_id": tenant,
                "producer": "agent@bench",
                "schema_version": "1.0",
                "payload": {
                    "user_id": f"u-{rng.randint(1, 500)}",
                    "text": text(rng, 120),
                    "score": rng.random(),
                    "tags": ["a", "b"],
                },
            }
            wire.append(Wire(subject, json.dumps(body).encode(), {"Nats-Msg-Id": eid}))
        else:
            wire.append(Wire("chat.message.created", f"not json {i} \xff".encode(), None))
    return wire


# --- servers, processes -----------------------------------------------------------------


@dataclass
class Servers(Postgres):
    nats_url: str  # the NATS admin's: the bench's own client sets the streams up
    admin_url: str
    writer_nats_url: str = ""  # the audit writer's own NATS user (else nats_url)

    async def fresh_db(self, name: str) -> str:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        await self.admin("CHECKPOINT")
        return self.url(name)


async def publish(js: JetStreamContext, wire: list[Wire]) -> float:
    started = time.perf_counter()
    for w in wire:
        await js.publish_async(w.subject, w.data, headers=w.headers)
    await js.publish_async_completed()
    return len(wire) / (time.perf_counter() - started)


def start_writer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "engram"), "run", "audit", "--log-level", "WARNING"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- measurements -----------------------------------------------------------------------


async def end_to_end(
    cfg: Config, srv: Servers, js: JetStreamContext, n: int, *, db_name: str, replicas: int
) -> float:
    """Writer process(es) on the backlog: first delivery -> all n rows committed."""
    for stream in STREAMS:  # a new durable replays the stream from its start
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream.name, "audit")
    url = await srv.fresh_db(db_name)
    env = {
        "NATS_URL": srv.writer_nats_url or srv.nats_url,
        "DATABASE_URL": worker_login(url, "audit"),  # its own role, under row-level security
        **cfg.audit_env,
    }
    procs = [start_writer(env, cfg.logs / f"{db_name}-{i}.log") for i in range(replicas)]
    db = await asyncpg.connect(url)
    try:
        t0 = None
        while t0 is None:
            with contextlib.suppress(NotFoundError):
                info = await js.consumer_info("CHAT", "audit")
                if info.delivered.consumer_seq > 0:
                    t0 = time.perf_counter()
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"writer exited; see {cfg.logs}")
            await asyncio.sleep(0.005)
        while await db.fetchval("SELECT coalesce(sum(position), 0) FROM audit.chain_heads") < n:
            if time.perf_counter() - t0 > 600 or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"writer did not finish; see {cfg.logs}")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - t0
        assert await db.fetchval("SELECT count(*) FROM audit.events") == n
    finally:
        await db.close()
        for p in procs:
            stop_process(p, 20)
    return n / seconds


async def pull_ack(js: JetStreamContext, nc: Any, n: int) -> float:
    started = time.perf_counter()
    got = 0
    for stream in STREAMS:
        await js.add_consumer(
            stream.name,
            ConsumerConfig(
                durable_name="raw",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=5000,
            ),
        )
        sub = await js.pull_subscribe_bind(durable="raw", stream=stream.name)
        pending = (await js.consumer_info(stream.name, "raw")).num_pending
        while pending > 0:
            msgs = await sub.fetch(min(500, pending), timeout=5)
            for m in msgs:
                await m.ack()
            pending -= len(msgs)
            got += len(msgs)
        await sub.unsubscribe()
    await nc.flush()
    assert got == n, (got, n)
    return n / (time.perf_counter() - started)


def decode_all(wire: list[Wire]) -> tuple[list[AuditRecord], float]:
    policy, now = RedactionPolicy(), datetime.now(UTC)
    started = time.process_time()
    records = [
        build_record(
            stream="CHAT",
            stream_seq=i + 1,
            subject=w.subject,
            data=w.data,
            headers=w.headers,
            received_at=now,
            policy=policy,
        )
        for i, w in enumerate(wire)
    ]
    return records, (time.process_time() - started) / len(wire) * 1e6


async def chain_append(url: str, records: list[AuditRecord], batch: int) -> float:
    conn = await asyncpg.connect(worker_login(url, "audit"))
    try:
        partitions = repo.Partitions()
        started = time.perf_counter()
        for i in range(0, len(records), batch):
            chunk = records[i : i + batch]
            async with conn.transaction():
                # The tenants of the batch, as the pipeline scopes the writer's transaction.
                await scope_tenants(conn, {r.tenant_id for r in chunk})
                await partitions.ensure(conn)
                await repo.append(conn, chunk)
        return len(records) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def plain_copy(url: str, records: list[AuditRecord], batch: int) -> float:
    rows = repo.chain_rows(records, {}, datetime.now(UTC))  # hashed outside the timing
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE audit.bench_copy (LIKE audit.events INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        await conn.execute("CHECKPOINT")
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bench_copy",
                    schema_name="audit",
                    columns=repo.COLUMNS,
                    records=rows[i : i + batch],
                )
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def verify_rate(url: str, n: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        result = await verify_database(conn)
    finally:
        await conn.close()
    assert result.ok and result.rows == n, (result.breaks[:3], result.rows)
    return result.rate


# --- runs and report --------------------------------------------------------------------


@dataclass
class Config:
    events: int
    runs: int
    batch: int
    replicas: list[int]
    logs: Path
    out: Path
    quick: bool
    audit_env: dict[str, str] = field(default_factory=dict)


ROWS = [
    ("e2e_eps", "end to end, 1 writer (events/s)"),
    ("e2e2_eps", "end to end, 2 replicas (events/s)"),
    ("pull_ack_eps", "limit: pull+ack, no work (msgs/s)"),
    ("e2e_vs_pull_ack", "end to end / pull+ack"),
    ("append_rps", "chain append alone (rows/s)"),
    ("copy_rps", "limit: plain COPY of the rows (rows/s)"),
    ("append_vs_copy", "chain append / plain COPY"),
    ("verify_rps", "verify (rows/s)"),
    ("decode_us", "decode, CPU per message (µs)"),
    ("publish_eps", "publish of the backlog (msgs/s)"),
    ("load", "load average (1 min) at the start"),
]


async def run_once(
    cfg: Config, srv: Servers, wire: list[Wire], records: list[AuditRecord], run: int
) -> dict[str, float]:
    n = len(wire)
    result: dict[str, float] = {"load": os.getloadavg()[0]}  # others' work skews figures
    nc = await nats.connect(srv.nats_url)
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        await fresh_streams(js)
        result["publish_eps"] = await publish(js, wire)
        result["pull_ack_eps"] = await pull_ack(js, nc, n)
        for replicas in cfg.replicas:
            key = "e2e_eps" if replicas == 1 else f"e2e{replicas}_eps"
            result[key] = await end_to_end(
                cfg, srv, js, n, db_name=f"audit_bench_e2e{replicas}", replicas=replicas
            )
            console.log(f"run {run}: end to end with {replicas} writer(s): {result[key]:,.0f}/s")
    finally:
        await nc.close()
    result["verify_rps"] = await verify_rate(srv.url(f"audit_bench_e2e{cfg.replicas[0]}"), n)
    url = await srv.fresh_db("audit_bench_append")
    result["append_rps"] = await chain_append(url, records, cfg.batch)
    await srv.admin("CHECKPOINT")
    result["copy_rps"] = await plain_copy(url, records, cfg.batch)
    _, result["decode_us"] = decode_all(wire)
    if "e2e_eps" in result:
        result["e2e_vs_pull_ack"] = result["e2e_eps"] / result["pull_ack_eps"]
    result["append_vs_copy"] = result["append_rps"] / result["copy_rps"]
    return result


def table(title: str, runs: list[dict[str, float]]) -> Table:
    t = Table(title=title)
    t.add_column("measure")
    for i in range(len(runs)):
        t.add_column(f"run {i + 1}", justify="right")
    t.add_column("median", justify="right")
    t.add_column("goal", justify="right")
    for key, label in ROWS:
        values = [r[key] for r in runs if key in r]
        if not values:
            continue
        fmt = "{:.2f}" if key.endswith(("_vs_pull_ack", "_vs_copy", "load")) else "{:,.0f}"
        median = statistics.median(values)
        goal = ""
        if key in GOALS:
            ok = median >= GOALS[key]
            goal = f"{'[green]' if ok else '[red]'}>= {GOALS[key]:,.0f}[/]"
        t.add_row(label, *(fmt.format(v) for v in values), fmt.format(median), goal)
    return t


async def bench(cfg: Config, urls: dict[str, str], writer_nats_url: str) -> dict[str, Any]:
    srv = Servers(
        urls["NATS_URL"], urls["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", writer_nats_url
    )
    await srv.admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    await srv.admin(f"CREATE DATABASE {TEMPLATE}")
    await migrate(srv.url(TEMPLATE), ["audit"])
    wire = build_messages(cfg.events)
    records, _ = decode_all(wire)
    console.log(
        f"{len(wire):,} messages, {sum(len(w.data) for w in wire) / 1e6:.1f} MB; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    runs = []
    for run in range(1, cfg.runs + 1):
        runs.append(await run_once(cfg, srv, wire, records, run))
        console.print(table(f"run {run}", runs[-1:]))
    console.print(table(f"{len(wire):,} messages: medians of {cfg.runs} run(s)", runs))
    return {
        "benchmark": "audit",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": len(wire),
        "batch": cfg.batch,
        "audit_env": cfg.audit_env,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "runs": runs,
        "medians": {
            k: statistics.median([r[k] for r in runs if k in r])
            for k, _ in ROWS
            if any(k in r for r in runs)
        },
        "goals": GOALS,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=None, help="messages per run (50000)")
    p.add_argument("--runs", type=int, default=None, help="runs; medians are reported (3)")
    p.add_argument("--quick", action="store_true", help="10k messages, 1 run")
    p.add_argument("--batch", type=int, default=500, help="rows per transaction (append/COPY)")
    p.add_argument("--replicas", default="1,2", help="writer counts for end to end (1,2)")
    p.add_argument("--audit-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    temp = None if a.data_dir else Path(tempfile.mkdtemp(prefix="engram-audit-bench-"))
    data_dir = a.data_dir or temp
    assert data_dir is not None
    os.chmod(data_dir, 0o755)  # the embedded PostgreSQL runs as its own user under root
    name = "audit-quick.json" if a.quick else "audit.json"
    cfg = Config(
        events=a.events or (10_000 if a.quick else 50_000),
        runs=a.runs or (1 if a.quick else 3),
        batch=a.batch,
        replicas=[int(x) for x in a.replicas.split(",") if x],
        logs=data_dir / "bench-logs",
        out=a.out or ROOT / "bench" / "results" / name,
        quick=a.quick,
        audit_env={k: v for k, v in os.environ.items() if k.startswith("AUDIT_")}
        | dict(kv.split("=", 1) for kv in a.audit_env),
    )
    cfg.logs.mkdir(parents=True, exist_ok=True)
    from services.catalog import SERVICES
    from services.runtime.embedded import DevStack

    stack = DevStack(data_dir, SERVICES)  # each service its own NATS user
    try:
        urls = stack.start()
        report = asyncio.run(bench(cfg, urls, stack.nats_url("audit")))
        write_report(cfg.out, report)
        console.log(f"wrote {cfg.out}")
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
