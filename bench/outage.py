#!/usr/bin/env python
"""Outage benchmark: PostgreSQL down for minutes under a steady load loses nothing.

    .venv/bin/python bench/outage.py [--outage-s 600] [--rate 20] [--data-dir DIR]

Starts the embedded nats-server and PostgreSQL (DevStack, with every service's NATS user),
migrates ingest and audit, sets the bus up as the admin, and runs the real `engram run
ingest` and `engram run audit` processes, each logged in as its own PostgreSQL role and
NATS user, reaching PostgreSQL through a TCP proxy this script controls. A producer
publishes realistic chat events (conversations, sessions, messages with token counts,
session ends) at --rate events/s with ``Nats-Msg-Id``. After --before-s it cuts PostgreSQL
(every proxied connection closed, new ones refused) for --outage-s, keeps publishing,
restores it, publishes --after-s more, ends the open sessions, and waits until both workers
have caught up (num_pending and num_ack_pending 0 on every consumer).

Then it checks what was stored against what was published: rows in ingest.messages, every
session's message_count and total_tokens (exact), audit rows, the DLQ (empty, no
"exhausted" letter), redeliveries, the most deliveries any message had (read from the
workers' acks, observed on ``$JS.ACK.>``), and the time to catch up after the restore.
Prints a table and writes JSON (bench/results/outage.json). Exit code 1 when anything
was lost, dead-lettered or miscounted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import asyncpg  # noqa: E402
from nats.aio.client import Client as NatsClient  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import _script, _servers  # noqa: E402
from bench._servers import stop_process  # noqa: E402
from bench._traffic import (  # noqa: E402
    Acks,
    Producer,
    caught_up,
    check_ingest,
    consumers,
    dead_letters,
    read_log,
    start_worker,
)
from tests.proxy import PostgresCut, through  # noqa: E402

SERVICES = ("ingest", "audit")
PROGRESS_S = 30.0

console = _script.console()


# --- the run ------------------------------------------------------------------------------


@dataclass
class Config:
    rate: float
    before_s: float
    outage_s: float
    after_s: float
    tenants: int
    active: int
    catchup_timeout_s: float
    data_dir: Path | None
    out: Path
    live_code: bool
    seed: int


class Probe:
    """Counts through the superuser's direct connection (past the proxy and the tenant
    wall: it sees every tenant)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def applied(self) -> tuple[int, int]:
        messages = await self.conn.fetchval("SELECT count(*) FROM ingest.messages")
        audit = await self.conn.fetchval("SELECT count(*) FROM audit.events WHERE stream = 'CHAT'")
        return int(messages), int(audit)


class Scenario:
    """The load, the cut, the restore and the drain, with a progress line every 30 s."""

    def __init__(
        self, cfg: Config, producer: Producer, probe: Probe, nc: NatsClient, proxy: PostgresCut
    ) -> None:
        self.cfg, self.producer, self.probe, self.nc, self.proxy = cfg, producer, probe, nc, proxy
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.acks = Acks()
        self.logs = Path()
        self.worker_logs: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, float] = {}
        self.restore_seq = 0
        self.catchup_s: float | None = None
        self.t0 = time.monotonic()
        self.next_report = self.t0 + PROGRESS_S

    def check_workers(self) -> None:
        for name, p in self.workers.items():
            if p.poll() is not None:
                raise RuntimeError(f"engram run {name} exited ({p.returncode}); see {self.logs}")

    async def wait_for_consumers(self) -> None:
        """Both consumers exist: the first events are not read by a worker still starting."""
        deadline = time.monotonic() + 120
        while True:
            infos = await consumers(self.nc)
            if "CHAT/ingest" in infos and "CHAT/audit" in infos:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not create their consumers in 120 s")
            self.check_workers()
            await asyncio.sleep(0.5)

    async def tick(self, phase: str) -> None:
        if self.restore_seq and self.catchup_s is None:
            await self.restored_yet()
        if time.monotonic() >= self.next_report:
            self.next_report += PROGRESS_S
            await self.progress(phase)
        self.check_workers()

    async def enter(self, phase: str) -> None:
        self.marks[phase] = time.monotonic() - self.t0
        if phase == "outage":
            links = self.proxy.cut()
            console.log(f"[red]PostgreSQL cut[/] ({links} connections closed)")
        elif phase == "after":
            self.proxy.restore()
            self.restore_seq = (await self.nc.jetstream().stream_info("CHAT")).state.last_seq
            console.log(f"[green]PostgreSQL restored[/] (CHAT at seq {self.restore_seq})")

    async def load(self) -> None:
        """Publish at the rate through the three phases, then end the open sessions."""
        cfg = self.cfg
        self.t0 = self.acks.t0 = time.monotonic()  # ack times count from the first publish
        self.next_report = self.t0 + PROGRESS_S
        sent, end = 0, self.t0
        for phase, length in (
            ("before", cfg.before_s),
            ("outage", cfg.outage_s),
            ("after", cfg.after_s),
        ):
            await self.enter(phase)
            end += length
            while (now := time.monotonic()) < end:
                due = self.t0 + sent / cfg.rate
                if due > now:
                    await asyncio.sleep(min(due, end) - now)
                    continue
                await self.producer.publish(self.producer.next_event())
                sent += 1
                await self.tick(phase)
        for event in self.producer.closing():
            await self.producer.publish(event)
        self.marks["published"] = time.monotonic() - self.t0

    async def drain(self) -> None:
        """Until both workers have acked everything (or the timeout)."""
        expected = self.producer.expected.messages
        console.log(f"published {self.producer.expected.events:,} events; waiting for the workers")
        deadline = time.monotonic() + self.cfg.catchup_timeout_s
        while True:
            if self.restore_seq and self.catchup_s is None:
                await self.restored_yet()
            infos = await consumers(self.nc)
            if caught_up(infos) and (await self.probe.applied())[0] >= expected:
                break
            if time.monotonic() > deadline:
                console.log("[red]the workers did not catch up in time")
                break
            await self.tick("draining")
            await asyncio.sleep(0.25)
        self.marks["caught_up"] = time.monotonic() - self.t0

    async def restored_yet(self) -> None:
        """Both workers have acked everything published up to the restore: the seconds
        since the restore are the time to catch up."""
        js = self.nc.jetstream()
        for durable in SERVICES:
            info = await js.consumer_info("CHAT", durable)
            if info.ack_floor.stream_seq < self.restore_seq:
                return
        self.catchup_s = time.monotonic() - self.t0 - self.marks["after"]
        console.log(f"caught up with the outage's backlog {self.catchup_s:.1f}s after the restore")

    async def progress(self, phase: str) -> None:
        messages, audit = await self.probe.applied()
        infos = await consumers(self.nc)
        behind = {
            k.split("/")[1]: i.num_pending + i.num_ack_pending
            for k, i in infos.items()
            if k.startswith("CHAT/")
        }
        x = self.producer.expected
        console.log(
            f"{time.monotonic() - self.t0:5.0f}s {phase:<8} published {x.events:>6,} "
            f"({x.messages:,} messages); applied {messages:,} messages, {audit:,} audit rows; "
            f"behind: ingest {behind.get('ingest', 0):,}, audit {behind.get('audit', 0):,}"
        )


async def run(cfg: Config, servers: _servers.Servers) -> dict[str, Any]:
    from services.catalog import SERVICES as CATALOG
    from services.catalog import migrate
    from services.runtime.bus_setup import connect, setup_bus
    from services.runtime.db import login_url

    database_url, admin_url, logs = (
        servers.urls["DATABASE_URL"],
        servers.urls["NATS_URL"],
        servers.logs,
    )
    await migrate(database_url, list(SERVICES))
    console.log(f"bus: {', '.join(await setup_bus(admin_url))}")
    pg = urlsplit(database_url)
    proxy = PostgresCut(pg.hostname or "127.0.0.1", pg.port or 5432)
    proxy_port = await proxy.start()
    admin = await connect(admin_url)
    producer_nc = await connect(servers.nats_users["producer"])
    db = await asyncpg.connect(database_url)
    producer = Producer(producer_nc, cfg.tenants, cfg.active, cfg.seed)
    scenario = Scenario(cfg, producer, Probe(db), admin, proxy)
    scenario.logs, acks = logs, scenario.acks
    await admin.subscribe("$JS.ACK.>", cb=acks.on_msg)
    try:
        for service in SERVICES:
            # Each worker as its own PostgreSQL role (through the proxy) and NATS user.
            env = {
                "NATS_URL": servers.nats_users[service],
                "DATABASE_URL": login_url(
                    through(database_url, proxy_port), CATALOG.get(service).role
                ),
            }
            scenario.workers[service] = start_worker(service, env, logs / f"{service}.log")
        console.log(f"started engram run {' and '.join(SERVICES)}; logs in {logs}")
        await scenario.wait_for_consumers()
        await scenario.load()
        await scenario.drain()
        await asyncio.sleep(1.0)  # the last acks reach our $JS.ACK subscription
        result = await verdict(
            producer,
            db,
            admin,
            acks,
            proxy=proxy,
            marks=scenario.marks,
            catchup_s=scenario.catchup_s,
        )
    finally:
        for p in scenario.workers.values():
            stop_process(p)
        await proxy.stop()
        scenario.worker_logs = {s: read_log(logs / f"{s}.log") for s in scenario.workers}
        await db.close()
        await producer_nc.close()
        await admin.close()
    result["worker_logs"] = scenario.worker_logs
    return result


async def verdict(
    producer: Producer,
    db: asyncpg.Connection,
    nc: NatsClient,
    acks: Acks,
    *,
    proxy: PostgresCut,
    marks: dict[str, float],
    catchup_s: float | None,
) -> dict[str, Any]:
    x = producer.expected
    ingest = await check_ingest(x, db)
    messages = ingest["rows_ingest_messages"]
    audit_chat = int(
        await db.fetchval(
            "SELECT count(DISTINCT stream_seq) FROM audit.events WHERE stream = 'CHAT'"
        )
    )
    audit_rows = int(await db.fetchval("SELECT count(*) FROM audit.events"))
    js = nc.jetstream()
    chat_stream = (await js.stream_info("CHAT")).state
    letters = await dead_letters(nc)
    kinds = Counter(d.get("Engram-Dlq-Kind", "?") for d in letters)
    infos = await consumers(nc)
    ack_summary = acks.summary()
    redelivered = {k: i.num_redelivered for k, i in infos.items()}
    final_pending = {k: [i.num_pending, i.num_ack_pending] for k, i in infos.items()}
    result = {
        "published_events": x.events,
        "published_by_type": dict(x.by_type),
        "published_messages": x.messages,
        "publish_retries": x.publish_retries,
        "chat_stream_messages": chat_stream.messages,
        **{k: v for k, v in ingest.items() if k not in ("ok", "lost", "duplicated")},
        "audit_rows_chat": audit_chat,
        "audit_rows_total": audit_rows,
        "dlq_depth": len(letters),
        "dead_letters_by_kind": dict(kinds),
        "dead_letters_exhausted": kinds.get("exhausted", 0),
        "dead_letters_sample": letters[:20],
        "num_redelivered": redelivered,
        "final_pending": final_pending,
        "max_deliveries": max((c["max_deliveries"] for c in ack_summary.values()), default=0),
        "delivered_more_than_once": sum(
            c["delivered_more_than_once"] for c in ack_summary.values()
        ),
        "acks_by_consumer": ack_summary,
        "ack_events": acks.events,
        "acks_by_kind": dict(acks.kinds),
        "deliveries_histogram": {str(k): v for k, v in sorted(acks.delivered_hist.items())},
        "connections_refused_during_outage": proxy.refused,
        "catchup_after_restore_s": catchup_s,
        "phase_marks_s": marks,
    }
    result["lost_messages"] = x.messages - messages
    result["ok"] = bool(
        ingest["ok"]
        and audit_chat == chat_stream.messages == x.events
        and not letters
        and all(v == [0, 0] for v in final_pending.values())
    )
    return result


def table(cfg: Config, r: dict[str, Any]) -> Table:
    t = Table(
        title=f"PostgreSQL cut for {cfg.outage_s:.0f}s at {cfg.rate:g} events/s "
        f"({cfg.before_s:.0f}s before, {cfg.after_s:.0f}s after)"
    )
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("expected", justify="right")
    catch = r["catchup_after_restore_s"]
    rows = [
        ("events published", f"{r['published_events']:,}", ""),
        ("  in the CHAT stream", f"{r['chat_stream_messages']:,}", f"{r['published_events']:,}"),
        ("messages published", f"{r['published_messages']:,}", ""),
        (
            "rows in ingest.messages",
            f"{r['rows_ingest_messages']:,}",
            f"{r['published_messages']:,}",
        ),
        (
            "rows in ingest.conversations",
            f"{r['rows_ingest_conversations']:,}",
            f"{r['conversations_expected']:,}",
        ),
        ("sessions stored", f"{r['sessions_stored']:,}", f"{r['sessions_expected']:,}"),
        ("sessions with wrong counters", f"{r['sessions_wrong']:,}", "0"),
        ("total_tokens over sessions", f"{r['tokens_stored']:,}", f"{r['tokens_expected']:,}"),
        ("audit rows (CHAT)", f"{r['audit_rows_chat']:,}", f"{r['published_events']:,}"),
        ("DLQ depth", f"{r['dlq_depth']:,}", "0"),
        ("'exhausted' dead letters", f"{r['dead_letters_exhausted']:,}", "0"),
        ("num_redelivered (at the end)", fmt_map(r["num_redelivered"]), ""),
        ("messages delivered more than once", f"{r['delivered_more_than_once']:,}", ""),
        ("most deliveries of a message", str(r["max_deliveries"]), ""),
        (
            "worker batches failed (nak'd)",
            fmt_map({k: v.get("batches_failed", 0) for k, v in r["worker_logs"].items()}),
            "",
        ),
        ("connections refused (outage)", f"{r['connections_refused_during_outage']:,}", ""),
        ("caught up after restore", "-" if catch is None else f"{catch:.1f} s", ""),
    ]
    for row in rows:
        t.add_row(*row)
    return t


def fmt_map(m: dict[str, int]) -> str:
    return ", ".join(
        f"{k.split('/')[1] if k.startswith('CHAT/') else k}: {v}"
        for k, v in m.items()
        if v or "/" not in k or k.startswith("CHAT/")
    )


def parse_args(argv: list[str]) -> Config:
    parser = _script.parser(__doc__)
    parser.add_argument("--outage-s", type=float, default=600.0, help="PostgreSQL cut (600)")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s published (20)")
    parser.add_argument("--before-s", type=float, default=30.0, help="load before the cut (30)")
    parser.add_argument("--after-s", type=float, default=30.0, help="load after restore (30)")
    parser.add_argument("--tenants", type=int, default=3, help="tenants (3)")
    parser.add_argument("--active", type=int, default=12, help="conversations at once (12)")
    parser.add_argument(
        "--catchup-timeout-s", type=float, default=600.0, help="give up waiting after (600)"
    )
    parser.add_argument("--seed", type=int, default=13)
    _script.add_run_options(parser, out=_script.RESULTS / "outage.json", out_help="JSON")
    a = parser.parse_args(argv)
    return Config(
        rate=a.rate,
        before_s=a.before_s,
        outage_s=a.outage_s,
        after_s=a.after_s,
        tenants=a.tenants,
        active=a.active,
        catchup_timeout_s=a.catchup_timeout_s,
        data_dir=a.data_dir,
        out=a.out,
        live_code=a.live_code,
        seed=a.seed,
    )


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    done = _script.measure(__file__, argv, cfg, console, lambda s: run(cfg, s))
    result = done.result
    console.print(table(cfg, result))
    verdict_text = "[green]nothing lost[/]" if result["ok"] else "[red]LOSS OR MISCOUNT[/]"
    console.print(verdict_text)
    report = {**_script.report_head("outage", cfg, done), "result": result}
    _script.write(cfg.out, report, console)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
