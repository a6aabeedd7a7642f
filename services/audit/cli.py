"""`engram audit verify | export | retain`: operators' tools for the audit trail.

They talk to PostgreSQL only (DATABASE_URL, or a running `engram dev`): verify and export
need read access to schema audit, retain needs its owner (the URL `engram migrate` uses).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from services.audit.verify import VerifyResult

T = TypeVar("T")

audit_cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The audit trail: verify its hash chains, export a tenant's, drop old months.",
)
out = Console(highlight=False, soft_wrap=True)  # lines stay whole in logs and pipes
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder of a running `engram dev` (for its URLs)."),
]
Since = Annotated[
    str | None,
    typer.Option(help="Only rows recorded from then on: 2026-11-01 or 2026-11-01T12:00:00Z."),
]


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def database_url(data_dir: Path | None) -> str:
    from services.runtime.cli_env import connection
    from services.runtime.settings import CliSettings

    return CliSettings().database_url or connection(data_dir)[1]


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r} is not a date or time; use e.g. 2026-11-01 or 2026-11-01T12:00Z")
        raise
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # a bare date means UTC


def run(work: Callable[[asyncpg.Connection], Awaitable[T]], url: str) -> T:
    """Connect, run, close; turn the usual failures into messages that say what to do."""

    async def go() -> T:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror}")
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach PostgreSQL ({exc}); is DATABASE_URL right, or `engram dev` running?")
    except asyncpg.UndefinedTableError:
        fail("this database has no audit schema yet: run `engram migrate` first")
    except asyncpg.InsufficientPrivilegeError as exc:
        fail(f"{exc}. Use the URL of the audit schema's owner (the one `engram migrate` uses).")
    raise AssertionError("unreachable")


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    bar = Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(label, total=total, rate="")
    started = datetime.now(UTC)

    def update(done: int) -> None:
        seconds = (datetime.now(UTC) - started).total_seconds()
        bar.update(task, completed=done, rate=f"{done / max(seconds, 1e-6):,.0f} rows/s")

    with bar:
        yield update


def report(result: VerifyResult, what: str) -> None:
    for note in result.notes:
        out.print(f"[dim]note:[/] {note}")
    if result.ok:
        out.print(
            f"[green]OK[/]: {what}: {result.rows:,} rows in {result.chains:,} chain(s) verified "
            f"in {result.seconds:.2f}s ({result.rate:,.0f} rows/s)"
        )
        return
    for broken in result.breaks:
        out.print(f"[red]BROKEN[/]: {broken.describe()}")
    out.print(
        f"{len(result.breaks)} of {result.chains:,} chain(s) broken ({result.rows:,} rows read "
        f"in {result.seconds:.2f}s); each line names the first bad row of its chain"
    )
    raise typer.Exit(1)


@audit_cli.command()
def verify(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's chain.")] = None,
    since: Since = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify an export file offline instead.")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(help="An earlier export: the database must still hold its chain head."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Walk the hash chains and report the first broken link of each (exit 1), or OK."""
    from services.audit.export import ExportError, read_export, read_head
    from services.audit.verify import verify_database, verify_file

    try:
        if file is not None:
            with progress_bar(f"verifying {file.name}", None) as update:
                result = verify_file(file, update)
            report(result, str(file))
            return
        expect = None
        if against is not None:
            export = read_export(against)
            head = read_head(against)
            if head is None:
                fail(f"{against} has no chain head (an empty or incomplete export)")
            assert head is not None
            if tenant is not None and tenant != export.tenant:
                fail(f"{against} is an export of tenant {export.tenant!r}, not {tenant!r}")
            expect = (export.tenant, *head)
    except ExportError as exc:
        fail(str(exc))
        return
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
        return
    when = parse_since(since)
    url = database_url(data_dir)

    async def work(conn: asyncpg.Connection) -> VerifyResult:
        total = await conn.fetchval(
            "SELECT coalesce(sum(position), 0) FROM audit.chain_heads "
            "WHERE $1::text IS NULL OR tenant_id = $1",
            tenant,
        )
        with progress_bar("verifying", None if when else int(total)) as update:
            return await verify_database(
                conn, tenant=tenant, since=when, against=expect, progress=update
            )

    report(run(work, url), f"tenant {tenant!r}" if tenant else "all tenants")


@audit_cli.command()
def export(
    tenant: Annotated[str, typer.Option(help="Whose chain to export.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: audit-<tenant>.jsonl).")
    ] = None,
    since: Since = None,
    data_dir: DataDir = None,
) -> None:
    """Write a tenant's chain as JSON Lines with its head; `verify --file` checks it offline."""
    from services.audit.export import export_tenant

    path = out_file or Path(f"audit-{tenant}.jsonl")
    when = parse_since(since)
    url = database_url(data_dir)

    async def work(conn: asyncpg.Connection) -> tuple[int, tuple[int, bytes] | None]:
        total = await conn.fetchval(
            "SELECT position FROM audit.chain_heads WHERE tenant_id = $1", tenant
        )
        tmp = path.with_name(path.name + ".partial")
        with tmp.open("w", encoding="utf-8") as f, progress_bar("exporting", total) as update:
            written = await export_tenant(conn, tenant, f, since=when, progress=update)
        tmp.replace(path)  # a file at `path` is always a complete export
        return written

    rows, head = run(work, url)
    if head is None:
        out.print(f"tenant {tenant!r} has no rows{' since then' if when else ''}; wrote {path}")
        return
    out.print(
        f"wrote {rows:,} rows of tenant {tenant!r} to {path}; chain head: position "
        f"{head[0]}, hash {head[1].hex()}"
    )


@audit_cli.command()
def retain(
    months: Annotated[int, typer.Option(min=1, help="Keep this many months before this one.")],
    dry_run: Annotated[bool, typer.Option(help="Only show what would be dropped.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Drop monthly partitions older than N months, recording each chain's last hash first."""
    from services.audit.retain import Retained, cutoff
    from services.audit.retain import retain as drop

    limit = cutoff(datetime.now(UTC), months)
    if not dry_run and not yes and sys.stdin.isatty():
        typer.confirm(f"Drop every audit month before {limit:%Y-%m-%d}?", abort=True)
    url = database_url(data_dir)

    def show(r: Retained) -> None:
        verb = "would drop" if dry_run else "dropped"
        out.print(
            f"{verb} {r.partition.name} ({r.partition.start:%Y-%m-%d} to "
            f"{r.partition.end:%Y-%m-%d}): {r.rows:,} rows of {len(r.chains)} chain(s)"
        )

    async def work(conn: asyncpg.Connection) -> list[Any]:
        return await drop(conn, months, dry_run=dry_run, on_partition=show)

    done = run(work, url)
    if not done:
        out.print(f"nothing to drop: no month ends before {limit:%Y-%m-%d}")
    elif not dry_run:
        out.print(
            "each chain now starts after its retention record; `engram audit verify` "
            "checks from there"
        )
