"""`engram nats-config`: the nats-server authorization of this catalog, for operators
(docker-compose.yml, deploy/), generated rather than written by hand so that it follows the
services: each worker its own user with its own subjects and consumers (nats_auth.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.runtime.cli_env import console, fail
from services.runtime.nats_auth import (
    catalog_rights,
    check_password,
    new_password,
    render_config,
    rights_table,
)
from services.runtime.settings import CliSettings
from services.runtime.spec import Catalog


def nats_config(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    generate_passwords: Annotated[
        bool,
        typer.Option(
            "--generate-passwords",
            help="Print new random passwords for every user as JSON (the value of "
            "ENGRAM_NATS_PASSWORDS) and exit.",
        ),
    ] = False,
    table: Annotated[
        bool, typer.Option(help="Print the users and their rights as a markdown table.")
    ] = False,
) -> None:
    """Print the nats-server `authorization` config: one user per worker, admin, producer.
    Passwords come from ENGRAM_NATS_PASSWORDS (JSON by user: admin, producer, each service)."""
    catalog = ctx.find_root().obj
    assert isinstance(catalog, Catalog), "the CLI is started by services.catalog:main"
    rights = catalog_rights(catalog)
    if generate_passwords:
        sys.stdout.write(json.dumps({name: new_password() for name in rights}, indent=2) + "\n")
        return
    if table:
        sys.stdout.write(rights_table(rights))
        return
    passwords = CliSettings().nats_passwords
    try:
        for name in rights:
            if name in passwords:
                check_password(name, passwords[name])
        config = render_config(rights, passwords)
    except ValueError as exc:
        fail(f"{exc} (set ENGRAM_NATS_PASSWORDS; `engram nats-config --generate-passwords`)")
        return
    if out is None:
        sys.stdout.write(config)
    else:
        out.touch(mode=0o600)
        out.write_text(config)
        console.print(f"wrote {out} ({len(rights)} users)")
