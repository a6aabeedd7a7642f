#!/usr/bin/env python
"""Where a context build's time goes, inside the context service: the real sources as
processes (`engram run ingest|embedder|memory|checkpointer`) and the context builder in
this process, each phase of --builds builds timed, and a cProfile of them.

    .venv/bin/python bench/profile_context.py --data-dir DIR [--builds 200]

DIR: a data folder bench/context.py has seeded (its database is reused as it is).
Phases: ``fan-out`` (the five queries at once, until the slowest answers), ``plan``
(dedupe, shares, cuts: tokenizer work), ``check`` (every segment counted again),
``record`` (the snapshot's INSERT, in its transaction), and the whole ``build``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
warnings.filterwarnings("ignore")

from rich.console import Console  # noqa: E402

from bench._servers import (  # noqa: E402
    embedded_servers,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    worker_login,
)
from bench.context import QUERIES, build_request, ready  # noqa: E402

SOURCES = ("ingest", "embedder", "memory", "checkpointer")


def timed(owner: Any, name: str, spent: dict[str, list[float]], label: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds each call's time to ``spent[label]``."""
    fn: Callable[..., Any] = getattr(owner, name)
    if asyncio.iscoroutinefunction(fn):

        async def wrapper_async(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                spent.setdefault(label, []).append((time.perf_counter() - t) * 1000)

        setattr(owner, name, wrapper_async)
        return

    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent.setdefault(label, []).append((time.perf_counter() - t) * 1000)

    setattr(owner, name, wrapper)


async def run(args: argparse.Namespace, console: Console) -> None:
    import nats

    from contracts.context import ContextBuildRequest
    from services.context import build, repo
    from services.context.settings import ContextSettings
    from services.runtime.bus_setup import connect
    from services.runtime.db import create_pool

    with embedded_servers(args.data_dir, "engram-profile-context-", console) as servers:
        url = servers.urls["DATABASE_URL"]
        admin = await nats.connect(servers.urls["NATS_URL"])
        await fresh_streams(admin.jetstream())
        procs = [
            start_process(
                engram_cmd(s),
                {
                    "NATS_URL": servers.nats_users[s],
                    "DATABASE_URL": worker_login(url, s),
                    "HF_HUB_OFFLINE": "1",
                },
                servers.logs / f"profile-{s}.log",
            )
            for s in SOURCES
        ]
        procs.append(
            start_process(
                engram_cmd("context"),
                {
                    "NATS_URL": servers.nats_users["context"],
                    "DATABASE_URL": worker_login(url, "context"),
                },
                servers.logs / "profile-context.log",
            )
        )
        try:
            await ready(admin, 300)  # the sources answer (through a context worker)
            stop_process(procs.pop())  # the context worker: this process builds instead
            settings = ContextSettings(
                nats_url=servers.nats_users["context"], database_url=worker_login(url, "context")
            )
            nc = await connect(settings.nats_url)
            pool = await create_pool(settings.database_url, worker=True, max_size=4)
            builder = build.Builder(settings)
            await builder.start(types.SimpleNamespace(nc=nc, pool=pool))  # type: ignore[arg-type]
            spent: dict[str, list[float]] = {}
            timed(build.sources, "gather", spent, "fan-out")
            timed(build, "plan", spent, "plan")
            timed(build, "checked", spent, "check")
            timed(repo, "record", spent, "record")
            timed(builder, "build", spent, "build")
            requests = [ContextBuildRequest.model_validate(build_request(q)) for q in QUERIES]
            for i in range(20):  # warm-up
                await builder.build(requests[i % 3], 1 << 20)
            spent.clear()
            prof = cProfile.Profile()
            prof.enable()
            for i in range(args.builds):
                await builder.build(requests[i % 3], 1 << 20)
            prof.disable()
            console.print({k: round(statistics.median(v), 2) for k, v in spent.items()})
            console.print(
                {k: round(sorted(v)[int(len(v) * 0.99) - 1], 2) for k, v in spent.items()}
            )
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            console.print(out.getvalue())
            await nc.close()
            await pool.close()
            await admin.close()
        finally:
            for proc in procs:
                stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--builds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args, Console(width=160)))


if __name__ == "__main__":
    main()
