#!/usr/bin/env python
"""Stop benchmark: how long an idle worker takes to stop, its consumers drained one after
another (as before) or all at once (``consumer.stop_all``, now).

    .venv/bin/python bench/stop.py [--service audit] [--fetch-wait 2.0] [--runs 3]

Starts the embedded servers, migrates the service's schema, and per run starts the real
worker in this process (its own PostgreSQL role and NATS user), sends each of its
consumers one message (not a valid event: dead-lettered), spread over one fetch wait so
that their pull requests are out of phase as a live worker's are, leaves it idle for
--idle seconds (its pull requests open), then times its stop (FastStream's shutdown: the
consumers' drain, the components, the pool). The two ways alternate. audit reads four
streams, so one after another it waits for up to four pull requests in turn. Prints the
medians and writes bench/results/stop.json.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import nats  # noqa: E402
from faststream import TestApp  # noqa: E402

from bench import _script  # noqa: E402
from bench._servers import Postgres, Servers, fresh_streams, worker_login  # noqa: E402


@dataclass
class Config:
    service: str
    fetch_wait: float
    batch_size: int
    idle: float
    runs: int
    data_dir: Path | None
    out: Path
    live_code: bool


async def one_after_another(consumers: list[Any], service: str) -> None:
    """The drain replaced: each consumer in turn."""
    for consumer in consumers:
        await consumer.stop()


async def stagger(servers: Servers, subjects: list[str], cfg: Config) -> None:
    """One message to each consumer, spread over one fetch wait: their pull requests are
    then out of phase, as a live worker's are (a consumer pulls again when its batch is
    done), rather than all opened in the same millisecond at start."""
    nc = await nats.connect(servers.urls["NATS_URL"])
    try:
        for subject in subjects:
            name = ".".join("x" if part in ("*", ">") else part for part in subject.split("."))
            await nc.jetstream().publish(name, b"{}")
            await asyncio.sleep(cfg.fetch_wait / len(subjects))
    finally:
        await nc.close()


async def timed_stop(servers: Servers, cfg: Config, database_url: str) -> float:
    from services.catalog import create_worker

    app, worker = create_worker(
        cfg.service,
        nats_url=servers.nats_users[cfg.service],
        database_url=worker_login(database_url, cfg.service),
        fetch_wait_s=cfg.fetch_wait,
        batch_size=cfg.batch_size,
    )
    running = TestApp(app)
    await running.__aenter__()
    try:
        assert worker.started, "the worker's consumers did not start"
        await stagger(servers, [c.spec.stream.subjects[0] for c in worker.consumers], cfg)
        await asyncio.sleep(cfg.idle)
    finally:
        began = time.perf_counter()
        await running.__aexit__(None, None, None)
    return time.perf_counter() - began


async def measure(servers: Servers, cfg: Config) -> dict[str, Any]:
    from services.runtime import service
    from services.runtime.consumer import stop_all

    nc = await nats.connect(servers.urls["NATS_URL"])
    try:
        await fresh_streams(nc.jetstream())
    finally:
        await nc.close()
    pg = Postgres()
    pg.admin_url = servers.admin_url
    database_url = await pg.migrated_template("stopbench", [cfg.service])
    ways = {"one after another": one_after_another, "all at once": stop_all}
    seconds: dict[str, list[float]] = {}
    for _ in range(cfg.runs):
        for way, stop in ways.items():
            setattr(service, "stop_all", stop)  # noqa: B010 (mypy: not exported)
            seconds.setdefault(way, []).append(await timed_stop(servers, cfg, database_url))
    setattr(service, "stop_all", stop_all)  # noqa: B010
    return {"seconds": seconds, "median_s": {k: statistics.median(v) for k, v in seconds.items()}}


def main(argv: list[str]) -> int:
    p = _script.parser(__doc__)
    p.add_argument("--service", default="audit")
    p.add_argument("--fetch-wait", type=float, default=2.0, help="the worker's fetch_wait_s")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="the worker's batch_size: 1 lets one message end a pull request, which is what "
        "puts the consumers' pulls out of phase (a pull request stays open until its batch "
        "is full or its wait is over)",
    )
    p.add_argument("--idle", type=float, default=3.0, help="seconds idle before the stop")
    p.add_argument("--runs", type=int, default=3)
    _script.add_run_options(p, out=_script.RESULTS / "stop.json", out_help="results JSON")
    cfg = Config(**vars(p.parse_args(argv)))
    console = _script.console()
    done = _script.measure(__file__, argv, cfg, console, lambda s: measure(s, cfg))
    for way, value in done.result["median_s"].items():
        console.print(f"{way:>18}: {value:6.2f} s  (runs {done.result['seconds'][way]})")
    _script.write(cfg.out, {**_script.report_head("stop", cfg, done), **done.result}, console)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
