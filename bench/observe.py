#!/usr/bin/env python
"""The cost of observing a worker: ingest's backlog throughput with its metrics port off,
and on with a scraper reading /metrics every second (as Prometheus would, 15-60x more often).

    .venv/bin/python bench/observe.py [--events 50000] [--rounds 4] [--scrape-every 1.0]

Starts the embedded servers (bench/_servers.embedded_servers), builds the events of
bench/ingest.py once, and per round runs `engram run ingest` twice on the same
pre-published backlog (fresh streams, a fresh database cloned from a migrated template):
once with no port, once with INGEST_HTTP_PORT and the scraper; the order alternates
between rounds so that drift on a shared machine does not favour one. Throughput is
measured as in bench/ingest.py (a): first delivery to the last row committed. Prints the
median of each and their ratio, and writes bench/results/observe.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402

from bench._figures import loadavg  # noqa: E402
from bench._servers import embedded_servers, fresh_streams, stop_process  # noqa: E402
from bench.ingest import (  # noqa: E402
    Config,
    CpuMeter,
    Servers,
    Ui,
    build_events,
    code_version,
    console,
    engram_cmd,
    machine,
    measure_consumption,
    publish_backlog,
    serialize,
    start_process,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get_metrics(port: int) -> int:
    """One scrape; the bytes of the exposition (0 when it did not answer)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return len(data) if data.startswith(b"HTTP/1.1 200") else 0


async def scraper(port: int, every_s: float, sizes: list[int], times: list[float]) -> None:
    while True:
        started = time.perf_counter()
        size = await get_metrics(port)
        if size:
            sizes.append(size)
            times.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - started)))


async def one(
    servers: Servers,
    logs: Path,
    cfg: Config,
    wire: list[Any],
    last_id: Any,
    *,
    scrape: bool,
    tag: str,
    every_s: float,
    ui: Ui,
) -> dict[str, Any]:
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream(publish_async_max_pending=4000)
    name = f"observe_{tag}"
    try:
        await fresh_streams(js)
        await publish_backlog(js, wire, ui)
        url = await servers.fresh_db(name)
        await servers.checkpoint()
        env = servers.worker_env(cfg, url)
        port = free_port()
        if scrape:
            env |= {"INGEST_HTTP_PORT": str(port), "INGEST_HTTP_HOST": "127.0.0.1"}
        db = await asyncpg.connect(url)
        proc = start_process(engram_cmd(), env, logs / f"{name}.log")
        sizes: list[int] = []
        times: list[float] = []
        task = asyncio.create_task(scraper(port, every_s, sizes, times)) if scrape else None
        try:
            result = await measure_consumption(
                js,
                db,
                durable="ingest",
                n=len(wire),
                last_message_id=last_id,
                proc=proc,
                ui=ui,
                label=f"ingest, metrics {'scraped' if scrape else 'off'}",
                meter=CpuMeter(servers.pids, proc),
            )
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stop_process(proc, 25.0)
            await db.close()
        await servers.drop_db(name)
        if scrape and not sizes:
            raise RuntimeError("the scraper never got an answer")
        return {
            "scraped": scrape,
            "events_per_s": result.events_per_s,
            "seconds": result.seconds,
            "worker_us_per_event": result.cpu.get("worker_us_per_event"),
            "others_cores": result.cpu.get("others_cores"),
            "scrapes": len(sizes),
            "scrape_bytes": statistics.median(sizes) if sizes else 0,
            "scrape_ms_median": 1000 * statistics.median(times) if times else 0,
            "loadavg_at_start": loadavg(),
        }
    finally:
        await nc.close()


async def run(
    args: argparse.Namespace,
    urls: dict[str, str],
    logs: Path,
    pids: dict[str, int],
    worker_nats_url: str,
) -> dict[str, Any]:
    cfg = Config(
        events=args.events,
        runs=args.rounds,
        data_dir=None,
        rate=0,
        latency_s=0,
        naive_max_s=0,
        concurrent=False,
        latency=False,
        out=args.out,
        quick=False,
    )
    admin = urls["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    servers = Servers(urls["NATS_URL"], admin, pids, worker_nats_url)
    await servers.make_template()
    events = build_events(cfg.events)
    wire = serialize(events)
    last_id = events[-1].payload.message_id
    results: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for scrape in order:
            with Ui() as ui:
                results.append(
                    await one(
                        servers,
                        logs,
                        cfg,
                        wire,
                        last_id,
                        scrape=scrape,
                        tag=f"r{round_}_{int(scrape)}",
                        every_s=args.scrape_every,
                        ui=ui,
                    )
                )
    off = [r["events_per_s"] for r in results if not r["scraped"]]
    on = [r["events_per_s"] for r in results if r["scraped"]]
    summary = {
        "off_events_per_s_median": statistics.median(off),
        "scraped_events_per_s_median": statistics.median(on),
        "ratio_scraped_to_off": statistics.median(on) / statistics.median(off),
        "off_min_max": [min(off), max(off)],
        "scraped_min_max": [min(on), max(on)],
    }
    console.print(json.dumps(summary, indent=2))
    return {
        "benchmark": "observe",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "events": args.events,
            "rounds": args.rounds,
            "scrape_every_s": args.scrape_every,
        },
        "machine": machine(),
        "code": code_version(),
        "runs": results,
        "summary": summary,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scrape-every", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "observe.json")
    args = parser.parse_args(argv)
    with embedded_servers(None, "engram-observe-", console) as servers:
        report = asyncio.run(
            run(
                args, servers.urls, servers.logs, servers.pids, servers.nats_users.get("ingest", "")
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
