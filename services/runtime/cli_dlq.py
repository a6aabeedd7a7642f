"""`engram dlq list | show | replay | purge`: dead letters for operators (dlq_tool.py).

Every command talks to NATS as the user of NATS_URL, which must be NATS's admin
(``engram_admin``): it reads and deletes messages of the DLQ stream and re-publishes to
the upstream streams, rights no worker or producer has (docs/operations.md, "Dead
letters"). `engram dev`'s engram.env holds the admin's URL.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from services.runtime.cli_connect import open_nats
from services.runtime.cli_env import connection, console, fail, run_async
from services.runtime.dlq import DeadKind
from services.runtime.dlq_tool import DeadLetter, Filters, Outcome, Replay, get, remove, replay
from services.runtime.dlq_tool import scan as scan_letters
from services.runtime.dlq_tool import with_body as read_body
from services.runtime.settings import CliSettings

dlq_cli = typer.Typer(no_args_is_help=True, help="Inspect, replay and purge dead letters.")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder of a running `engram dev`.")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (one document) on stdout.")]
Service = Annotated[str | None, typer.Option(help="Only this service's dead letters.")]
Subject = Annotated[
    str | None, typer.Option(help="Only this original subject (wildcards * and > allowed).")
]
Kind = Annotated[DeadKind | None, typer.Option(help="Only invalid, poison or exhausted.")]
Tenant = Annotated[str | None, typer.Option(help="Only events of this tenant (from the body).")]
Since = Annotated[
    str | None,
    typer.Option(help="Dead-lettered at or after: ISO time, or an age like 30m, 2h, 7d."),
]
Until = Annotated[str | None, typer.Option(help="Dead-lettered at or before (as --since).")]

AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    if found := AGE.match(text.strip()):
        return datetime.now(UTC) - timedelta(**{UNITS[found[2]]: float(found[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: give an ISO time (2026-12-06T09:00Z) or an age (30m, 2h, 7d)")
        raise
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# The options that select letters, the same for list, replay and purge.
SELECTION = {
    "service": Service,
    "subject": Subject,
    "kind": Kind,
    "tenant": Tenant,
    "since": Since,
    "until": Until,
}


def selecting(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the selection options in its place: typer reads them from the
    signature (after the command's arguments, before its own options) and the command
    gets them as one ``selection: Filters``. Written once, so the three commands select
    alike."""
    signature = inspect.signature(command, eval_str=True)  # the module defers annotations
    own = [p for p in signature.parameters.values() if p.name != "selection"]
    arguments = [p for p in own if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    options = [p for p in own if p not in arguments]
    kw = inspect.Parameter.KEYWORD_ONLY
    picked = [inspect.Parameter(n, kw, default=None, annotation=a) for n, a in SELECTION.items()]

    @functools.wraps(command)
    def with_selection(**given: Any) -> None:
        chosen = {name: given.pop(name) for name in SELECTION}
        command(selection=filters(**chosen), **given)

    params = [*arguments, *picked, *options]
    with_selection.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    with_selection.__annotations__ = {p.name: p.annotation for p in params}
    return with_selection


def filters(
    *,
    service: str | None,
    subject: str | None,
    kind: DeadKind | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
) -> Filters:
    return Filters(
        service, subject, kind, tenant, moment(since, "--since"), moment(until, "--until")
    )


def with_bus(data_dir: Path | None, work: Callable[[JetStreamContext], Awaitable[None]]) -> None:
    nats_url, _ = connection(data_dir, need_database=False)

    async def go() -> None:
        nc = await open_nats(nats_url, CliSettings().connect_timeout_s)
        try:
            await work(nc.jetstream())
        finally:
            await nc.close()

    run_async(go())


def emit(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(title=f"{len(letters)} dead letters", title_justify="left")
    for column in ("seq", "time", "service", "kind", "subject", "tenant", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(*letter_row(letter))
    return table


def letter_row(letter: DeadLetter) -> tuple[str, ...]:
    when = letter.time.strftime("%Y-%m-%d %H:%M:%S") if letter.time else ""
    tenant = letter.event.tenant_id or ""
    return (
        str(letter.sequence), when, letter.service, letter.kind, letter.subject, tenant,
        letter.reason,
    )  # fmt: skip


async def collect(js: JetStreamContext, selection: Filters) -> list[DeadLetter]:
    return [letter async for letter in scan_letters(js, selection)]


@dlq_cli.command("list")
@selecting
def list_letters(*, selection: Filters, as_json: Json = False, data_dir: DataDir = None) -> None:
    """The dead letters (oldest first) with their reasons."""

    async def work(js: JetStreamContext) -> None:
        letters = await collect(js, selection)
        if as_json:
            emit([letter.summary() for letter in letters])
        elif sys.stdout.isatty():
            Console(soft_wrap=True).print(letters_table(letters))
        else:  # a pipe or a file: one letter a line, whole, for grep and friends
            sys.stdout.write(f"{len(letters)} dead letters\n")
            for letter in letters:
                sys.stdout.write("\t".join(map(str, letter_row(letter))) + "\n")

    with_bus(data_dir, work)


@dlq_cli.command()
def show(
    sequence: Annotated[int, typer.Argument(help="The letter's sequence (`engram dlq list`).")],
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """One letter: its reason, deliveries and the original event (read from the object
    store when it was too big to travel inline)."""

    async def work(js: JetStreamContext) -> None:
        from services.runtime.dlq import DeadLetterBodyError

        letter = await get(js, sequence)
        try:
            letter, body = await read_body(js, letter)
        except DeadLetterBodyError as exc:
            fail(f"letter {sequence}: {exc}")
            return
        text = body.decode(errors="replace")
        event = letter.event.parsed if letter.event.parsed is not None else text
        if as_json:
            emit({**letter.summary(), "event": event})
            return
        out = Console(soft_wrap=True)
        for label, value in letter.summary().items():
            out.print(f"[bold]{label}:[/] {value}", highlight=False)
        out.print("[bold]event:[/]")
        sys.stdout.write(
            (json.dumps(event, indent=2) if letter.event.parsed is not None else text) + "\n"
        )

    with_bus(data_dir, lambda js: _or_fail(work(js)))


async def _or_fail(work: Awaitable[None]) -> None:
    from services.runtime.dlq_tool import NoSuchLetter

    try:
        await work
    except NoSuchLetter as exc:
        fail(str(exc))


@dlq_cli.command("replay")
@selecting
def replay_letters(
    sequence: Annotated[int | None, typer.Argument(help="One letter; else the filters.")] = None,
    *,
    selection: Filters,
    dry_run: Annotated[
        bool, typer.Option(help="Say what would be replayed; change nothing.")
    ] = False,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Re-publish the original bytes to the original subject (after you fixed the cause),
    then delete the letter. An event already applied stays applied once."""
    if sequence is None and selection == Filters():
        fail("name a letter (SEQ) or select with --service/--subject/--kind/--tenant/--since")

    async def work(js: JetStreamContext) -> None:
        letters = [await get(js, sequence)] if sequence else await collect(js, selection)
        done: list[Replay] = []
        step = max(1, len(letters) // 20)
        for count, letter in enumerate(letters, 1):
            done.append(await replay(js, letter, dry_run=dry_run))
            if count % step == 0 and len(letters) > 20:
                console.print(f"replay: {count}/{len(letters)}", highlight=False)
        report(done, as_json)
        if any(r.outcome in (Outcome.skipped, Outcome.held) for r in done):
            raise typer.Exit(1)

    with_bus(data_dir, lambda js: _or_fail(work(js)))


def report(done: list[Replay], as_json: bool) -> None:
    if as_json:
        emit([r.summary() for r in done])
        return
    for r in done:
        console.print(f"{r.letter.sequence}: {r.outcome.value} {r.detail}", highlight=False)
    counts = {o.value: sum(r.outcome is o for r in done) for o in Outcome}
    console.print(", ".join(f"{n} {o}" for o, n in counts.items() if n) or "nothing selected")


@dlq_cli.command()
@selecting
def purge(
    *,
    selection: Filters,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Delete the selected dead letters for good (all of them without filters)."""

    async def work(js: JetStreamContext) -> None:
        letters = await collect(js, selection)
        if letters and not yes:
            prompt = f"delete {len(letters)} dead letters for good?"
            if not sys.stdin.isatty():
                fail(f"{prompt} Confirm with --yes (no terminal to ask on)")
            if not typer.confirm(prompt, err=True):
                fail("nothing deleted")
        for letter in letters:
            await remove(js, letter)
        if as_json:
            emit({"purged": len(letters), "sequences": [x.sequence for x in letters]})
        else:
            console.print(f"purged {len(letters)} dead letters")

    with_bus(data_dir, work)
