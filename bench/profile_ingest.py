#!/usr/bin/env python
"""Where the ingest worker's time goes, stage by stage.

    .venv/bin/python bench/profile_ingest.py [--events 50000] [--rate 0] [--cprofile FILE]

Runs the real ingest worker (services.ingest.app.create_app) in this process against the
embedded servers, on a pre-published backlog of the same events bench/ingest.py uses
(or, with --rate R, while publishing R events/s), with timers wrapped around each stage
of the pull loop: fetch, decode, the transaction (inbox claim, placeholder conversations,
message columns, the INSERT ... CTE, COMMIT), and the acks. Nothing in services/ is
edited; the wrappers are installed at run time. Also reports the CPU seconds of this
process, of PostgreSQL and of nats-server over the same window, and optionally a
cProfile of the consuming window (top functions by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asyncpg
import ingest as bench
import nats
import psutil
from rich.table import Table

from bench._figures import cpu_seconds  # after ingest: it puts the root on sys.path
from bench._servers import admin_url  # after ingest: it puts the root on sys.path

console = bench.console


@dataclass
class Stage:
    calls: int = 0
    seconds: float = 0.0
    items: int = 0


STAGES: dict[str, Stage] = defaultdict(Stage)
BATCHES: list[tuple[float, int, float, float]] = []  # (t, size, fetch wait s, process s)


def timed_async(
    name: str, fn: Callable[..., Any], items: Callable[..., int] | None = None
) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            stage = STAGES[name]
            stage.calls += 1
            stage.seconds += time.perf_counter() - started
            if items is not None:
                stage.items += items(*args, **kwargs)

    return wrapper


def timed_sync(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stage = STAGES[name]
            stage.calls += 1
            stage.seconds += time.perf_counter() - started

    return wrapper


def instrument() -> None:  # noqa: PLR0915
    """Wrap each stage of the worker's loop (at run time; services/ is untouched)."""
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    import services.ingest.app as app_mod
    from services.ingest import handlers, repo
    from services.runtime import pipeline
    from services.runtime.inbox import Inbox

    last_end = {"t": 0.0}

    def timed(fetch: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fetch)
        async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                msgs = await fetch(*args, **kwargs)
            finally:
                STAGES["fetch (pull request -> messages)"].calls += 1
                STAGES["fetch (pull request -> messages)"].seconds += time.perf_counter() - started
            last_end["fetch_s"] = time.perf_counter() - started
            return msgs

        return timed_fetch

    # The worker's own fetch (services/runtime/fetch.py) if this code has it, else nats-py's.
    try:
        from services.runtime.fetch import Fetcher

        Fetcher.fetch = timed(Fetcher.fetch)  # type: ignore[method-assign]
    except ImportError:
        JetStreamContext.PullSubscription.fetch = timed(  # type: ignore[method-assign]
            JetStreamContext.PullSubscription.fetch
        )

    # The pull loop either runs process(msgs) per batch, or (pipelined) prepare(msgs) for
    # batch N+1 while commit(batch N) is in flight: then the stages overlap in time.
    def record_batch(size: int, started: float) -> None:
        BATCHES.append((started, size, last_end.get("fetch_s", 0.0), time.perf_counter() - started))

    if hasattr(pipeline.BatchProcessor, "prepare") and hasattr(pipeline.BatchProcessor, "commit"):
        prepare, commit = pipeline.BatchProcessor.prepare, pipeline.BatchProcessor.commit

        async def timed_prepare(self: Any, msgs: Any) -> Any:
            started = time.perf_counter()
            batch = await prepare(self, msgs)
            stage = STAGES["prepare (decode; overlaps commit)"]
            stage.calls += 1
            stage.seconds += time.perf_counter() - started
            batch_started[id(batch)] = started
            return batch

        async def timed_commit(self: Any, batch: Any) -> None:
            started = time.perf_counter()
            await commit(self, batch)
            stage = STAGES["commit (transaction + acks)"]
            stage.calls += 1
            stage.seconds += time.perf_counter() - started
            stage.items += len(batch.msgs)
            record_batch(len(batch.msgs), batch_started.pop(id(batch), started))

        batch_started: dict[int, float] = {}
        pipeline.BatchProcessor.prepare = timed_prepare  # type: ignore[method-assign]
        pipeline.BatchProcessor.commit = timed_commit  # type: ignore[method-assign]
    else:
        process = pipeline.BatchProcessor.process

        async def timed_process(self: Any, msgs: Any) -> None:
            started = time.perf_counter()
            await process(self, msgs)
            stage = STAGES["process (whole batch)"]
            stage.calls += 1
            stage.seconds += time.perf_counter() - started
            stage.items += len(msgs)
            record_batch(len(msgs), started)

        pipeline.BatchProcessor.process = timed_process  # type: ignore[method-assign]

    def wrap(owner: Any, attr: str, name: str) -> None:
        # The code under test moves; wrap what exists and say what does not.
        fn = getattr(owner, attr, None)
        if fn is None:
            console.print(f"[yellow]not instrumented: {getattr(owner, '__name__', owner)}.{attr}")
            return
        wrapper = timed_async if asyncio.iscoroutinefunction(fn) else timed_sync
        setattr(owner, attr, wrapper(name, fn))

    wrap(pipeline.BatchProcessor, "_transaction", "  transaction (acquire..COMMIT)")
    wrap(Inbox, "claim", "    inbox claim")
    wrap(repo, "ensure_conversations", "    placeholder conversations")
    with contextlib.suppress(ImportError):
        import services.ingest.messages as messages_mod  # newer layout

        wrap(messages_mod, "message_columns", "      message_columns (Python)")
    if hasattr(repo, "message_columns"):
        wrap(repo, "message_columns", "      message_columns (Python)")
    if "chat.message.created" in getattr(handlers, "STORE", {}):
        handlers.STORE["chat.message.created"] = timed_async(
            "    create_messages (cols + INSERT CTE)", handlers.STORE["chat.message.created"]
        )
    wrap(app_mod, "apply_chat_events", "   apply_chat_events")

    decoder = app_mod.contract_decoder  # type: ignore[attr-defined]

    def timed_decoder(adapter: Any) -> Any:
        return timed_sync("  decode (pydantic validate_json)", decoder(adapter))

    app_mod.contract_decoder = timed_decoder  # type: ignore[attr-defined]
    wrap(Msg, "ack", "  ack (one per message)")


def postgres_procs(stack: Any) -> list[psutil.Process]:
    pidfile = stack.postgres.pgdata / "postmaster.pid"
    root = psutil.Process(int(pidfile.read_text().splitlines()[0]))
    return [root, *root.children(recursive=True)]


async def run(  # noqa: PLR0912, PLR0915
    args: argparse.Namespace, stack: Any, urls: dict[str, str]
) -> None:
    from services.ingest.app import create_app
    from services.ingest.settings import IngestSettings

    servers = bench.Servers(urls["NATS_URL"], admin_url(urls["DATABASE_URL"]))
    await servers.make_template()
    url = await servers.fresh_db("profile_ingest")
    if args.db_settings:  # asyncpg passes unknown query parameters on as server settings
        url += "?" + "&".join(args.db_settings)
    events = bench.build_events(args.events)
    wire = bench.serialize(events)
    last_id = events[-1].payload.message_id
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await bench.fresh_streams(js)
    ui = bench.Ui()
    if not args.rate:
        await bench.publish_backlog(js, wire, ui)
    await servers.checkpoint()

    # Keep the events built above out of the collector's way: in the real worker they do
    # not exist, and a large heap makes every gen-2 collection (and so decode) look slower.
    del events
    gc.collect()
    gc.freeze()
    instrument()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    # The worker as it runs: its own NATS user and database login (row-level security).
    app, _ = create_app(
        IngestSettings(
            nats_url=stack.nats_url("ingest"),
            database_url=bench.worker_login(url, "ingest"),
            **overrides,
        )
    )
    db = await asyncpg.connect(url)
    me = psutil.Process()
    ns = psutil.Process(stack.nats.process.pid)
    profiler = cProfile.Profile() if args.cprofile else None

    from faststream import TestApp

    async with TestApp(app):
        pg0 = {p.pid: cpu_seconds([p]) for p in postgres_procs(stack)}
        cpu0 = (cpu_seconds([me]), 0.0, cpu_seconds([ns]))
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        publisher = None
        if args.rate:
            publisher = asyncio.create_task(steady(js, wire, args.rate))
        while not await db.fetchval(  # noqa: ASYNC110 - polling the database
            "SELECT EXISTS (SELECT 1 FROM ingest.messages WHERE message_id = $1)", last_id
        ):
            await asyncio.sleep(0.005)
        wall = time.perf_counter() - started
        if profiler:
            profiler.disable()
        # Backends born during the window (the second connection, opened when two batches
        # first commit at once) count whole.
        pg_used = sum(cpu_seconds([p]) - pg0.get(p.pid, 0.0) for p in postgres_procs(stack))
        cpu1 = (cpu_seconds([me]), pg_used, cpu_seconds([ns]))
        if publisher:
            await publisher
        rows = await db.fetchval("SELECT count(*) FROM ingest.messages")
    await db.close()
    await nc.close()

    table = Table(
        caption="stages nest by indentation; with a pipelined consumer, prepare and "
        "fetch overlap commit, so the shares add up to more than 100%",
        title=f"ingest worker in-process: {rows:,} events in {wall:.2f}s = "
        f"{rows / wall:,.0f}/s, {len(BATCHES)} batches "
        f"(mean {rows / max(len(BATCHES), 1):.0f} events)",
    )
    for col, justify in (
        ("stage", "left"),
        ("calls", "right"),
        ("seconds", "right"),
        ("% of wall", "right"),
        ("ms/batch", "right"),
        ("us/event", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    order = [
        "fetch (pull request -> messages)",
        "process (whole batch)",
        "prepare (decode; overlaps commit)",
        "commit (transaction + acks)",
        "  decode (pydantic validate_json)",
        "  transaction (acquire..COMMIT)",
        "    inbox claim",
        "   apply_chat_events",
        "    placeholder conversations",
        "    create_messages (cols + INSERT CTE)",
        "      message_columns (Python)",
        "  ack (one per message)",
    ]
    nb = max(len(BATCHES), 1)
    for name in order:
        s = STAGES.get(name)
        if s is None:
            continue
        table.add_row(
            name,
            f"{s.calls:,}",
            f"{s.seconds:.2f}",
            f"{100 * s.seconds / wall:.1f}",
            f"{1000 * s.seconds / nb:.2f}",
            f"{1e6 * s.seconds / max(rows, 1):.1f}",
        )
    console.print(table)
    labels = ("this process (worker + poller)", "PostgreSQL (all processes)", "nats-server")
    for label, a, b in zip(labels, cpu0, cpu1, strict=True):
        console.print(f"CPU {label}: {b - a:.2f}s = {100 * (b - a) / wall:.0f}% of one core")
    if BATCHES:
        sizes = sorted(b[1] for b in BATCHES)
        waits = sorted(b[2] for b in BATCHES)
        procs = sorted(b[3] for b in BATCHES)

        def pct(v: list[float] | list[int], q: float) -> float:
            return float(v[min(len(v) - 1, int(q * len(v)))])

        console.print(
            f"batch size p50 {pct(sizes, 0.5):.0f} p95 {pct(sizes, 0.95):.0f} max "
            f"{sizes[-1]}; fetch wait p50 {1000 * pct(waits, 0.5):.1f} ms p95 "
            f"{1000 * pct(waits, 0.95):.1f} ms max {1000 * waits[-1]:.1f} ms; "
            f"process p50 {1000 * pct(procs, 0.5):.1f} ms p95 "
            f"{1000 * pct(procs, 0.95):.1f} ms max {1000 * procs[-1]:.1f} ms"
        )
    if profiler:
        profiler.dump_stats(args.cprofile)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(30)
        console.print(out.getvalue())
        console.print(f"cProfile written to {args.cprofile}")


INCLUSIVE = [
    ("pull loop (PullConsumer._run: fetch, prepare)", "_run (services/runtime/consumer.py"),
    ("  nats-py fetch (pull request, next_msg per message)", "fetch (nats/js/client.py"),
    ("  engram fetch (pull request, queue drained)", "fetch (services/runtime/fetch.py"),
    ("  decode (contract_decoder: validate_json)", "decode (services/runtime/pipeline.py"),
    ("    of which contract validators in Python", "contracts/"),
    (
        "commit (transaction + acks; its own task when pipelined)",
        "commit (services/runtime/pipeline.py",
    ),
    ("  transaction", "_transaction (services/runtime/pipeline.py"),
    ("    message_columns", "message_columns (services/ingest/logic.py"),
    ("    asyncpg (encode, send, receive)", "asyncpg/"),
    ("  acks", "ack (nats/aio/msg.py"),
    ("nats-py protocol parser (all reads)", "parse (nats/protocol/parser.py"),
    ("json.dumps anywhere (jsonb codec, validators)", "json/encoder.py"),
    ("uuid4 anywhere", "uuid4 (uuid.py"),
    ("asyncio event loop internals", "_run_once (asyncio/base_events.py"),
]


def summarize_pyspy(path: str) -> None:
    """Self and inclusive shares of the CPU samples in a py-spy raw (collapsed) file."""
    stacks: list[tuple[list[str], int]] = []
    for line in Path(path).read_text().splitlines():
        joined, _, count_text = line.rpartition(" ")
        if joined and count_text.isdigit():
            stacks.append((joined.split(";"), int(count_text)))
    total = sum(c for _, c in stacks) or 1
    own: dict[str, int] = defaultdict(int)
    for frames, samples in stacks:
        own[frames[-1]] += samples
    table = Table(title=f"py-spy: CPU samples of the worker process ({total:,} samples)")
    table.add_column("function (inclusive)")
    table.add_column("% of CPU samples", justify="right")
    for label, needle in INCLUSIVE:
        hits = sum(c for frames, c in stacks if any(needle in f for f in frames))
        table.add_row(label, f"{100 * hits / total:.1f}")
    console.print(table)
    table = Table(title="py-spy: top functions by own time")
    table.add_column("function")
    table.add_column("% own", justify="right")
    for frame, samples in sorted(own.items(), key=lambda kv: -kv[1])[:20]:
        table.add_row(frame[:110], f"{100 * samples / total:.1f}")
    console.print(table)


async def run_pyspy(args: argparse.Namespace, stack: Any, urls: dict[str, str]) -> None:
    """The real `engram run ingest` process under py-spy, on the same backlog as bench."""
    from types import SimpleNamespace

    servers = bench.Servers(
        urls["NATS_URL"], admin_url(urls["DATABASE_URL"]), worker_nats_url=stack.nats_url("ingest")
    )
    await servers.make_template()
    url = await servers.fresh_db("profile_ingest")
    events = bench.build_events(args.events)
    wire = bench.serialize(events)
    last_id = events[-1].payload.message_id
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await bench.fresh_streams(js)
    ui = bench.Ui()
    await bench.publish_backlog(js, wire, ui)
    await servers.checkpoint()
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [
        str(spy),
        "record",
        "-r",
        "200",
        "-f",
        "raw",
        "-o",
        args.py_spy,
        "--nonblocking",
        *(["--native"] if args.native else []),
        "--",
        *bench.engram_cmd(),
    ]
    env = servers.worker_env(
        SimpleNamespace(  # type: ignore[arg-type]
            ingest_env=dict(kv.split("=", 1) for kv in args.set)
        ),
        url,
    )
    db = await asyncpg.connect(url)
    log = Path(args.py_spy).with_suffix(".log")
    proc = bench.start_process(cmd, env, log)
    try:
        await bench.measure_consumption(
            js,
            db,
            durable="ingest",
            n=len(wire),
            last_message_id=last_id,
            proc=proc,
            ui=ui,
            label="engram run ingest under py-spy",
        )
    finally:
        for child in psutil.Process(proc.pid).children():
            with contextlib.suppress(psutil.Error):
                child.terminate()
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
        await db.close()
        await nc.close()
    summarize_pyspy(args.py_spy)
    console.print(f"raw stacks in {args.py_spy} (e.g. flamegraph.pl or speedscope); log {log}")


async def steady(js: Any, wire: list[bench.Wire], rate: int) -> None:
    started = time.perf_counter()
    i = 0
    while i < len(wire):
        due = min(len(wire), int((time.perf_counter() - started) * rate) + 1)
        while i < due:
            w = wire[i]
            await js.publish_async(w.subject, w.data, headers=w.headers)
            i += 1
        await asyncio.sleep(0.001)
    await js.publish_async_completed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="publish at this rate while consuming (default: backlog)",
    )
    parser.add_argument("--cprofile", default=None, help="write a cProfile of the window here")
    parser.add_argument(
        "--py-spy",
        default=None,
        metavar="FILE",
        help="instead: run the real `engram run ingest` under py-spy (install "
        "it with .venv/bin/pip install py-spy) and write raw stacks to FILE",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument(
        "--summarize",
        default=None,
        metavar="FILE",
        help="only summarize an existing py-spy raw file",
    )
    parser.add_argument(
        "--db-setting",
        dest="db_settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="server setting for the worker's "
        "connections, for diagnosis only (e.g. synchronous_commit=off)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="IngestSettings override, e.g. batch_size=1000",
    )
    args = parser.parse_args()
    if args.summarize:
        summarize_pyspy(args.summarize)
        return
    from services.catalog import SERVICES
    from services.runtime.embedded import DevStack

    temp = Path(tempfile.mkdtemp(prefix="engram-profile-"))
    temp.chmod(0o755)
    stack = DevStack(temp, SERVICES)  # each service its own NATS user
    try:
        urls = stack.start()
        asyncio.run((run_pyspy if args.py_spy else run)(args, stack, urls))
    finally:
        stack.stop()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
