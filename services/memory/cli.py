"""`engram trigger consolidate`: what a scheduler (a Kubernetes CronJob, cron) runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated
from uuid import UUID, uuid4

import typer
from rich.console import Console

from contracts.envelope import utcnow
from contracts.memory_jobs import (
    ALL_STEPS,
    ConsolidatePayload,
    MemoryConsolidate,
    MemoryConsolidated,
    Step,
)

trigger_cli = typer.Typer(no_args_is_help=True, help="Jobs for schedulers.")
console = Console(stderr=True)


@trigger_cli.callback()
def trigger() -> None:
    """Publish jobs for engram's workers (for schedulers)."""


def parse_steps(value: str | None) -> list[Step]:
    if not value:
        return list(ALL_STEPS)
    steps = []
    for name in (s.strip() for s in value.split(",") if s.strip()):
        try:
            steps.append(Step(name))
        except ValueError:
            raise typer.BadParameter(
                f"unknown step {name!r}; choose from {', '.join(s.value for s in Step)}"
            ) from None
    return steps


@trigger_cli.command()
def consolidate(  # noqa: PLR0917 (typer reads options from the signature)
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant to consolidate.")],
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent; default: every agent of the tenant.")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            help="Comma-separated: expire,merge,abstract,summarize,decay (default: all).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report only; change nothing.")
    ] = False,
    job_id: Annotated[
        str | None,
        typer.Option(
            "--job-id",
            help="Job id (a retried trigger with the same id does the work once, "
            "and --wait prints the summary of the job even when it finished before); "
            "default: a new one.",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            help="Seconds to wait for the summary of each agent (0: do not wait; "
            "with --agent only).",
        ),
    ] = 0,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data folder of `engram dev` (when NATS_URL is unset)."),
    ] = None,
) -> None:
    """Publish a memory.consolidate job; with --wait, print its summary when done."""
    from services.runtime.cli_connect import open_nats
    from services.runtime.cli_env import connection, fail, run_async
    from services.runtime.settings import CliSettings

    try:
        job = UUID(job_id) if job_id else uuid4()
        event = MemoryConsolidate(
            event_id=uuid4(),
            occurred_at=utcnow(),
            tenant_id=tenant,
            producer="engram-cli",
            payload=ConsolidatePayload(
                job_id=job, agent_id=agent, steps=parse_steps(steps), dry_run=dry_run
            ),
        )
    except ValueError as exc:
        fail(f"bad job: {exc}")
    # Only NATS is needed: NATS_URL, else the running `engram dev`'s.
    nats_url = CliSettings().nats_url or connection(data_dir)[0]

    async def go() -> None:
        # Within a time limit, one line when unreachable (services/runtime/cli_connect.py).
        nc = await open_nats(nats_url, CliSettings().connect_timeout_s)
        try:
            done: asyncio.Queue[MemoryConsolidated] = asyncio.Queue()

            async def on_done(msg: object) -> None:
                summary = MemoryConsolidated.model_validate_json(msg.data)  # type: ignore[attr-defined]
                if summary.payload.job_id == job:
                    await done.put(summary)

            # Only when waiting: a scheduler logs in as the producer, which may not read
            # engram's own events (docs/security.md); waiting takes the admin's user.
            sub = (
                await nc.subscribe("engram.memory.consolidated", cb=on_done)
                if wait and agent
                else None
            )
            js = nc.jetstream()
            ack = await js.publish(
                event.type,
                event.model_dump_json().encode(),
                headers=event.headers(),
            )
            console.print(
                f"job {job} queued (MEMORY seq {ack.seq}) for tenant {tenant}"
                + (f", agent {agent}" if agent else ", every agent")
            )
            if wait and agent:
                deadline = time.monotonic() + wait
                with console.status("consolidating…"):
                    try:
                        summary = await asyncio.wait_for(done.get(), deadline - time.monotonic())
                    except TimeoutError:
                        fail(
                            f"no summary within {wait:g} s; the job is still queued or "
                            "running (see the memory worker's log)"
                        )
                print(json.dumps(summary.payload.model_dump(mode="json"), indent=2))
            if sub is not None:
                await sub.unsubscribe()
        finally:
            await nc.close()

    run_async(go())
