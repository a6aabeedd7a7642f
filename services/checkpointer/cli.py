"""`engram state ...`: operator commands of the checkpointer (registered by the runtime's
CLI with ``cli.add_typer(state_cli, name="state")``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

state_cli = typer.Typer(no_args_is_help=True, help="Versioned agent state (checkpointer).")
console = Console(stderr=True)


@state_cli.callback()
def state() -> None:
    """Versioned agent state (checkpointer): retention and maintenance."""


@state_cli.command()
def prune(
    keep_days: Annotated[
        float,
        typer.Option(
            "--keep-days",
            min=0,
            help=(
                "Keep every version current at any time in the last D days exactly "
                "reconstructable; remove older transitions and temporary checkpoints."
            ),
        ),
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data folder of `engram dev` (when DATABASE_URL is unset)."
        ),
    ] = None,
) -> None:
    """Remove old history; every retained version stays exact (run it daily as a job)."""
    from services.checkpointer.prune import PruneReport
    from services.checkpointer.prune import prune as run_prune
    from services.runtime.cli_env import connection, run_async
    from services.runtime.db import Roles, create_pool
    from services.runtime.settings import CliSettings

    # Only the database is needed: DATABASE_URL, else the running `engram dev`'s.
    database_url = CliSettings().database_url or connection(data_dir)[1]

    async def go() -> None:
        pool = await create_pool(database_url, role="engram_checkpointer")
        try:
            with Progress(
                TextColumn("pruning states"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as bar:
                task = bar.add_task("prune", total=None, detail="")

                def progress(done: int, total: int, r: PruneReport) -> None:
                    bar.update(
                        task,
                        completed=done,
                        total=total,
                        detail=(
                            f"{r.transitions} transitions, {r.checkpoints} checkpoints removed"
                        ),
                    )

                report = await run_prune(
                    pool, keep_days, roles=Roles("checkpointer"), progress=progress
                )
                bar.update(task, total=max(report.states, 1), completed=max(report.states, 1))
        finally:
            await pool.close()
        console.print(
            f"pruned {report.states} states: {report.transitions} transitions and "
            f"{report.checkpoints} checkpoints removed, {report.bases} base snapshots written"
        )

    run_async(go())
