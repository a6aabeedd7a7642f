"""`engram dev`: servers (embedded unless NATS_URL/DATABASE_URL are set), migrations, the
workers in this process, and a live view of what the pipeline is doing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from services.runtime.bus_setup import connect, setup_bus
from services.runtime.db import login_url
from services.runtime.demo import demo_conversation
from services.runtime.devapps import RunningApps, logs_to_file, quiet_faststream, running_apps
from services.runtime.devguard import DataDirInUse
from services.runtime.devview import Activity, dead_letter_section, page, service_sections
from services.runtime.embedded import DevStack
from services.runtime.migrate import migrate
from services.runtime.service import create_worker
from services.runtime.spec import Catalog, ServiceSpec
from services.runtime.status import collect, render
from services.runtime.supervise import EXIT_CANNOT_WORK
from services.runtime.worker import Worker

console = Console()
# A stop lets each consumer's open pull request finish (a worker's consumers all at once,
# since issue 14; before, one after the other: at the production default of 2 s an idle
# stop of all five took 7.5 s). Shorter pulls cost a few idle requests a second, nothing
# on a laptop.
DEV_FETCH_WAIT_S = 0.5


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
    tables = []
    for section in await service_sections(database_url, specs, limit):
        table = Table(title=section.title, title_justify="left")
        for column in section.columns:
            table.add_column(column, overflow="ellipsis", no_wrap=True, max_width=60)
        for row in section.rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def say(message: str) -> None:
    """Print, unless the terminal is gone (closed: SIGHUP): the stop must go on."""
    with contextlib.suppress(OSError):
        console.print(message)


async def run_dev(
    *,
    data_dir: Path,
    nats_url: str | None,
    database_url: str | None,
    catalog: Catalog,
    services: Sequence[str],
    demo: bool,
    verbose: bool = False,
    refresh_s: float = 1.0,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: a closed terminal stops the pipeline as Ctrl-C does.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    quiet_faststream()
    stack: DevStack | None = None
    if nats_url and database_url:
        console.print("[bold]using your servers[/] (NATS_URL and DATABASE_URL are set)")
    else:
        stack = DevStack(data_dir, catalog)
        urls = await _start_servers(stack)
        nats_url, database_url = urls["NATS_URL"], urls["DATABASE_URL"]
        console.print(f"  wrote {stack.env_file}")
    assert nats_url and database_url
    console.print(f"  NATS_URL={nats_url}\n  DATABASE_URL={database_url}")
    try:
        applied: dict[str, int] = {}

        def tally(service: str, _migration: str, state: str) -> None:
            applied[service] = applied.get(service, 0) + (state == "applied")

        await migrate(database_url, catalog.schemas(), progress=tally)
        console.print(f"  migrations: {_in_words(applied)}")
        # As NATS's admin: the workers may not create streams (docs/security.md).
        console.print(f"  bus: {', '.join(await setup_bus(nats_url))}")
        async with running_apps() as apps:
            workers = await _start_workers(
                apps,
                stop,
                catalog,
                services,
                stack=stack,
                nats_url=nats_url,
                database_url=database_url,
            )
            if demo and not stop.is_set():
                count = await publish_demo(nats_url)
                console.print(f"  published a demo conversation ({count} events)")
            console.print("[dim]Ctrl-C stops everything.[/]")
            if console.is_terminal:
                with logs_to_file(data_dir / "dev.log"):
                    await _live_view(
                        stop,
                        log_file=data_dir / "dev.log",
                        workers=workers,
                        specs=[catalog.get(name) for name in services],
                        nats_url=nats_url,
                        database_url=database_url,
                        verbose=verbose,
                        refresh_s=refresh_s,
                    )
            else:
                await _log_view(stop, workers, refresh_s)
            say("stopping: draining workers...")
        if failed := _failure(workers):
            # As `engram run` does: a worker that cannot work ends the whole process.
            say(f"[red]{failed}[/]; exiting with code {EXIT_CANNOT_WORK}")
            raise SystemExit(EXIT_CANNOT_WORK)
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.stop)
            say("stopped the embedded servers; data kept in " + str(data_dir))


def _in_words(applied: dict[str, int]) -> str:
    done = ", ".join(f"{svc} {n}" for svc, n in applied.items() if n)
    return f"applied {done}" if done else "every schema is at its latest"


async def _start_servers(stack: DevStack) -> dict[str, str]:
    console.print(f"[bold]starting embedded nats-server and PostgreSQL[/] in {stack.data_dir}")
    try:
        urls = await asyncio.to_thread(stack.start)
    except DataDirInUse as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
    for orphan in stack.orphans_stopped:
        console.print(f"  stopped {orphan}, left running by an earlier `engram dev`")
    return urls


async def _start_workers(
    apps: RunningApps,
    stop: asyncio.Event,
    catalog: Catalog,
    services: Sequence[str],
    *,
    stack: DevStack | None,
    nats_url: str,
    database_url: str,
) -> list[tuple[str, Worker]]:
    workers: list[tuple[str, Worker]] = []
    for service in services:
        if stop.is_set():  # Ctrl-C while the embedder loads its model: start no more
            break
        spec = catalog.get(service)
        # Each worker logs in as its own role (created by the migration above), as in
        # production; with your own server, one that trusts or knows it.
        login = login_url(database_url, spec.role)
        # And as its own NATS user on the embedded server; your own server's URL is used
        # as given.
        bus = stack.nats_url(service) if stack is not None else nats_url
        app, worker = create_worker(
            spec, nats_url=bus, database_url=login, fetch_wait_s=DEV_FETCH_WAIT_S
        )
        await apps.start(app)
        workers.append((service, worker))
        console.print(f"  [green]started[/] {service}")
    return workers


async def _live_view(
    stop: asyncio.Event,
    *,
    workers: Sequence[tuple[str, Worker]],
    specs: Sequence[ServiceSpec],
    nats_url: str,
    database_url: str,
    verbose: bool,
    refresh_s: float,
    log_file: Path,
) -> None:
    schemas = [spec.schema for spec in specs]
    activity = Activity()
    hint = "" if verbose else "--verbose adds inboxes, outboxes, queues. "
    footer = f"Ctrl-C stops everything. {hint}Logs: {log_file}"
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while not stop.is_set() and not _failure(workers):
                internals = []
                if verbose:
                    internals = render(await collect(nats_url, database_url, schemas, exact=True))
                sections = [await dead_letter_section(js)]
                sections += await service_sections(database_url, specs)
                live.update(
                    page(
                        workers=workers,
                        activity=activity,
                        sections=sections,
                        height=console.size.height - 1,
                        footer=footer,
                        verbose=internals,
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), refresh_s)
    finally:
        await nc.close()


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
