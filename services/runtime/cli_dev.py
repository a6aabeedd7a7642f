"""`engram dev`: the whole pipeline on this machine (devmode.py), on embedded servers in a
data folder of the user's, or on the servers NATS_URL and DATABASE_URL name."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer

from services.runtime.cli_connect import check_reachable
from services.runtime.cli_env import (
    DataDir,
    default_data_dir,
    dev_pointer,
    fail,
    run_async,
    services,
)
from services.runtime.settings import CliSettings


def dev(
    ctx: typer.Context,
    data_dir: DataDir = None,
    demo: Annotated[bool, typer.Option(help="Publish a demo conversation once running.")] = False,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="Workers to start (repeat); default: all."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show internal tables: inboxes, outboxes, queues."
        ),
    ] = False,
) -> None:
    """Start the whole pipeline locally and show what it is doing."""
    from services.runtime.devguard import DataDirInUse, refuse_if_in_use
    from services.runtime.devmode import run_dev

    settings = CliSettings()
    catalog = services(ctx)
    unknown = set(service or ()) - set(catalog.names)
    if unknown:
        fail(f"unknown service(s) {', '.join(sorted(unknown))}; known: {', '.join(catalog.names)}")
    logging.basicConfig(level=logging.WARNING)
    folder = (data_dir or default_data_dir()).expanduser()
    own_servers = not (settings.nats_url and settings.database_url)
    if own_servers:
        try:  # before the pointer: it names the running one's folder
            refuse_if_in_use(folder.resolve())
        except DataDirInUse as exc:
            fail(str(exc))
    else:  # yours: one line now rather than a wait for an unreachable one
        run_async(
            check_reachable(settings.nats_url, settings.database_url, settings.connect_timeout_s)
        )
    with dev_pointer(folder) if own_servers else contextlib.nullcontext():
        asyncio.run(
            run_dev(
                data_dir=folder,
                nats_url=settings.nats_url,
                database_url=settings.database_url,
                catalog=catalog,
                services=service or catalog.names,
                demo=demo,
                verbose=verbose,
            )
        )
