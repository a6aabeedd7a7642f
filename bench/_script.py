"""What every bench script does around its measurement, written once: the options every
bench takes (--data-dir, --out, --live-code), the code measured (a snapshot unless
--live-code), the embedded servers the measurement runs on, and the head of its report.

The harness the measurements use is apart: _code (the code measured), _servers (servers,
databases, streams, worker processes), _figures (CPU, load, percentiles, the results file)
and _latency (publish -> applied latency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from rich.console import Console

from bench._code import ROOT, SNAPSHOT_ENV, code_version, imported_code, reexec_on_snapshot
from bench._figures import loadavg, write_report
from bench._servers import Servers, embedded_servers

# The embedded PostgreSQL package warns through platformdirs when it is imported.
warnings.filterwarnings("ignore", module="platformdirs")

T = TypeVar("T")
RESULTS = ROOT / "bench" / "results"
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by SIGINT
EXIT_WRONG_CODE = 2  # the snapshot was not what was imported: nothing was measured


def console(width: int = 110) -> Console:
    """A bench's console, plain (no highlighting, no log paths): as wide as the terminal,
    or ``width`` into a file or pipe, wide enough for the tables."""
    plain = Console(highlight=False, log_path=False)
    return plain if plain.is_terminal else Console(highlight=False, log_path=False, width=width)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's parser: the first paragraph of its docstring as the description, the rest
    of the --help laid out as written."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_run_options(p: argparse.ArgumentParser, *, out: Path | None, out_help: str) -> None:
    """--data-dir, --out (default ``out``; None when the bench picks it from other options)
    and --live-code."""
    p.add_argument(
        "--data-dir", type=Path, default=None, help="servers' data (default: a temp dir)"
    )
    p.add_argument("--out", type=Path, default=out, help=out_help)
    p.add_argument("--live-code", action="store_true", help="run the working tree, not a snapshot")


def settings(pairs: list[str]) -> dict[str, str]:
    """Repeated KEY=VALUE options as a mapping."""
    return dict(kv.split("=", 1) for kv in pairs)


class Options(Protocol):
    """What every bench's Config holds of the options above."""

    data_dir: Path | None
    live_code: bool


@dataclass(frozen=True)
class Measured:
    """The code a bench measures: its version (git state, tree hash) and where it was
    imported from."""

    code: dict[str, Any]
    where: Path
    snapshot: bool


@dataclass(frozen=True)
class Done(Generic[T]):
    """A measurement made: the code measured, when it started and what it found."""

    measured: Measured
    started: datetime
    result: T


def measured_code(script: str, argv: list[str], live_code: bool, console: Console) -> Measured:
    """Re-runs ``script`` on a snapshot of the code unless ``live_code`` (does not return
    then); exits (after saying so) when the code imported is not the snapshot."""
    if not live_code and SNAPSHOT_ENV not in os.environ:
        reexec_on_snapshot(script, argv)  # does not return
    snapshot = os.environ.get(SNAPSHOT_ENV)
    code = code_version(Path(snapshot) if snapshot else ROOT)
    where = imported_code(console)
    if where is None:
        raise SystemExit(EXIT_WRONG_CODE)
    return Measured(code, where, bool(snapshot))


def on_servers(
    data_dir: Path | None,
    prefix: str,
    console: Console,
    work: Callable[[Servers], Coroutine[Any, Any, T]],
) -> T:
    """``work`` on the embedded servers (in ``data_dir`` or a temp dir named ``prefix``),
    stopped after; exits (after saying so) when interrupted with Ctrl-C."""
    try:
        with embedded_servers(data_dir, prefix, console) as servers:
            return asyncio.run(work(servers))
    except KeyboardInterrupt:
        console.log("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None


def measure(
    script: str,
    argv: list[str],
    cfg: Options,
    console: Console,
    work: Callable[[Servers], Coroutine[Any, Any, T]],
) -> Done[T]:
    """``work`` on the code measured (``measured_code``) and the embedded servers
    (``on_servers``, in a temp dir named after ``script``)."""
    measured = measured_code(script, argv, cfg.live_code, console)
    started = datetime.now(UTC)
    prefix = f"engram-{Path(script).stem}-"
    return Done(measured, started, on_servers(cfg.data_dir, prefix, console, work))


def report_head(benchmark: str, cfg: Any, done: Done[Any]) -> dict[str, Any]:
    """What every report starts with: the bench, when, its options (paths as text), the
    machine's CPUs and load at the end, and the code measured."""
    return {
        "benchmark": benchmark,
        "when": done.started.isoformat(timespec="seconds"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": loadavg()},
        "code": done.measured.code,
    }


def write(path: Path, report: dict[str, Any], console: Console) -> None:
    write_report(path, report)
    console.log(f"wrote {path}")
