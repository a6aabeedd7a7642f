"""Where the CLI finds its servers (the environment, or the folder of a running `engram
dev`), and how a command fails: one line that says what to fix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.runtime.settings import CliSettings
from services.runtime.spec import Catalog

console = Console(stderr=True, soft_wrap=True)
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data folder of the embedded servers (default: your user data dir)."
    ),
]


def services(ctx: typer.Context) -> Catalog:
    """The services `engram` was started with (by services.catalog:main)."""
    catalog = ctx.find_root().obj
    assert isinstance(catalog, Catalog), "the CLI is started by services.catalog:main"
    return catalog


class Mode:
    """How this `engram` process reports failures: ``--debug`` sets ``debug``, and then
    the one-line errors re-raise so that the traceback shows."""

    debug = False


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


def connection(data_dir: Path | None, *, need_database: bool = True) -> tuple[str, str]:
    """NATS_URL and DATABASE_URL from the environment, else from a running `engram dev`:
    the engram.env of --data-dir, else of the folder `engram dev` last started with.
    ``need_database=False``: a command of NATS only (DATABASE_URL then may be "")."""
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
    if not nats_url or (need_database and not database_url):
        fail(
            "no servers to talk to: set NATS_URL and DATABASE_URL, or start `engram dev` "
            f"(it writes {env_file}), or name its folder with --data-dir"
        )
    assert nats_url
    return nats_url, database_url or ""


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
    """One line on stderr (whatever the message holds: a validation error has several),
    then exit 2."""
    console.print(f"[red]error:[/] {' '.join(message.split())}", highlight=False)
    raise typer.Exit(2)


def run_async(coro: object) -> None:
    from services.runtime.cli_connect import Unreachable

    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except (Unreachable, OSError, TimeoutError) as exc:
        if Mode.debug:
            raise
        if isinstance(exc, Unreachable):
            fail(str(exc))
        fail(
            f"cannot reach a server: {exc}. Is `engram dev` running, or are NATS_URL and "
            "DATABASE_URL right?"
        )
