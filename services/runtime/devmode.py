"""`engram dev`: servers (embedded unless NATS_URL/DATABASE_URL are set), migrations, the
workers in this process, and a live view of what the pipeline is doing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
from faststream import FastStream
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from services.runtime.bus_setup import connect, setup_bus
from services.runtime.db import login_url
from services.runtime.demo import demo_conversation
from services.runtime.embedded import DevStack
from services.runtime.migrate import migrate
from services.runtime.service import Worker, create_worker
from services.runtime.spec import Catalog, ServiceSpec
from services.runtime.status import collect, render
from services.runtime.supervise import EXIT_CANNOT_WORK

console = Console()


@asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[None]:
    """Run a FastStream app inside this event loop (lifespan, start, drain, stop)."""
    async with app.lifespan_context():
        await app.start()
        try:
            yield
        finally:
            await app.stop()


async def publish_demo(nats_url: str, tenant: str = "demo") -> int:
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        events = demo_conversation(tenant)
        for event in events:
            await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())
        return len(events)
    finally:
        await nc.close()


async def dev_views(database_url: str, specs: Sequence[ServiceSpec], limit: int = 8) -> list[Table]:
    """What each service shows of its data (its spec's ``dev_view``), newest first."""
    tables: list[Table] = []
    conn = await asyncpg.connect(database_url)
    try:
        for spec in specs:
            view = spec.dev_view
            if view is None:
                continue
            table = Table(title=f"{view.title} ({spec.name})", title_justify="left")
            for column in view.columns:
                table.add_column(column, overflow="ellipsis", no_wrap=True, max_width=60)
            for row in await conn.fetch(view.sql, limit):
                table.add_row(*("" if v is None else str(v) for v in row))
            tables.append(table)
    finally:
        await conn.close()
    return tables


def worker_table(workers: Sequence[tuple[str, Worker]]) -> Table:
    table = Table(title="workers (this process)", title_justify="left")
    for column in (
        "service",
        "state",
        "applied",
        "duplicates",
        "retried",
        "dead",
        "batches",
        "last batch",
        "last batch ms",
    ):
        table.add_column(column, justify="left" if column == "service" else "right")
    for name, worker in workers:
        s = worker.stats
        failure = worker.supervisor.failure
        table.add_row(
            name,
            _state(worker, failure),
            str(s.applied),
            str(s.duplicates),
            str(s.retried),
            str(s.dead),
            str(s.batches),
            str(s.last_batch),
            f"{s.last_batch_ms:.1f}",
        )
    return table


def _state(worker: Worker, failure: str | None) -> str:
    if failure is not None:
        return f"[red]cannot work: {failure}[/]"
    if worker.stats.database_unreachable_since is not None:
        return "[yellow]waiting for the database[/]"
    return "[green]working[/]"


async def run_dev(
    *,
    data_dir: Path,
    nats_url: str | None,
    database_url: str | None,
    catalog: Catalog,
    services: Sequence[str],
    demo: bool,
    refresh_s: float = 1.0,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack: DevStack | None = None
    if nats_url and database_url:
        console.print("[bold]using your servers[/] (NATS_URL and DATABASE_URL are set)")
    else:
        stack = DevStack(data_dir, catalog)
        console.print(f"[bold]starting embedded nats-server and PostgreSQL[/] in {data_dir}")
        urls = await asyncio.to_thread(stack.start)
        nats_url, database_url = urls["NATS_URL"], urls["DATABASE_URL"]
        console.print(f"  wrote {stack.env_file}")
    assert nats_url and database_url
    console.print(f"  NATS_URL={nats_url}\n  DATABASE_URL={database_url}")
    try:
        await migrate(
            database_url,
            catalog.schemas(),
            progress=lambda svc, name, state: console.print(
                f"  migrate {svc}: {name} [{'green' if state == 'applied' else 'dim'}]{state}[/]"
            ),
        )
        # As NATS's admin: the workers may not create streams (docs/security.md).
        console.print(f"  bus: {', '.join(await setup_bus(nats_url))}")
        async with AsyncExitStack() as workers_stack:
            workers: list[tuple[str, Worker]] = []
            for service in services:
                spec = catalog.get(service)
                # Each worker logs in as its own role (created by the migration above),
                # as in production; with your own server, one that trusts or knows it.
                login = login_url(database_url, spec.role)
                # And as its own NATS user on the embedded server; your own server's URL
                # is used as given.
                bus = stack.nats_url(service) if stack is not None else nats_url
                app, worker = create_worker(spec, nats_url=bus, database_url=login)
                await workers_stack.enter_async_context(running(app))
                workers.append((service, worker))
                console.print(f"  [green]started[/] {service}")
            if demo:
                count = await publish_demo(nats_url)
                console.print(f"  published a demo conversation ({count} events)")
            console.print("[dim]Ctrl-C stops everything.[/]")
            if console.is_terminal:
                specs = [catalog.get(name) for name in services]
                await _live_view(
                    stop,
                    workers=workers,
                    specs=specs,
                    nats_url=nats_url,
                    database_url=database_url,
                    refresh_s=refresh_s,
                )
            else:
                await _log_view(stop, workers, refresh_s)
            console.print("stopping: draining workers...")
        if failed := _failure(workers):
            # As `engram run` does: a worker that cannot work ends the whole process.
            console.print(f"[red]{failed}[/]; exiting with code {EXIT_CANNOT_WORK}")
            raise SystemExit(EXIT_CANNOT_WORK)
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.stop)
            console.print("stopped the embedded servers; data kept in " + str(data_dir))


async def _live_view(
    stop: asyncio.Event,
    *,
    workers: Sequence[tuple[str, Worker]],
    specs: Sequence[ServiceSpec],
    nats_url: str,
    database_url: str,
    refresh_s: float,
) -> None:
    schemas = [spec.schema for spec in specs]
    with Live(console=console, refresh_per_second=4) as live:
        while not stop.is_set() and not _failure(workers):
            status = await collect(nats_url, database_url, schemas, exact=True)
            views = await dev_views(database_url, specs)
            live.update(Group(worker_table(workers), *render(status), *views))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), refresh_s)


async def _log_view(
    stop: asyncio.Event, workers: Sequence[tuple[str, Worker]], refresh_s: float
) -> None:
    """Not a terminal (logs, CI): one line per worker whenever its counters move."""
    last: dict[str, tuple[int, ...]] = {}
    while not stop.is_set() and not _failure(workers):
        for name, worker in workers:
            s = worker.stats
            waiting = int(s.database_unreachable_since is not None)
            now = (s.applied, s.duplicates, s.retried, s.dead, waiting)
            if now != last.get(name, (0, 0, 0, 0, 0)):
                last[name] = now
                console.print(
                    f"{name}: applied {s.applied}, duplicates {s.duplicates}, "
                    f"retried {s.retried}, dead-lettered {s.dead}"
                    + ("; waiting for the database, pulling nothing" if waiting else "")
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), refresh_s)


def _failure(workers: Sequence[tuple[str, Worker]]) -> str | None:
    """The first worker that cannot work any more, in words."""
    for name, worker in workers:
        if worker.supervisor.failure is not None:
            return f"{name} cannot work any more: {worker.supervisor.failure}"
    return None
