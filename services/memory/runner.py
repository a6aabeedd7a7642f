"""The consolidation runner: a component of every memory worker.

A ``memory.consolidate`` event only queues job rows (one per agent) in the consumer's
transaction, so the message is acked at once however long the job takes. Runners on any
number of replicas claim queued rows (``FOR UPDATE SKIP LOCKED`` and a lease), take a
session-level advisory lock on tenant + agent for the whole job (one consolidation per
agent at a time; a lock held by a dead worker goes with its connection), and run the steps
one transaction each. The last transaction marks the job done and queues
``engram.memory.consolidated`` in the outbox (id derived from the job: a repeat is a
duplicate); it is published once that transaction commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import asyncpg

from contracts.envelope import utcnow
from contracts.memory_jobs import (
    ALL_STEPS,
    ConsolidatedPayload,
    MemoryConsolidated,
    Step,
    StepReport,
)
from services.memory import repo_jobs, repo_sessions, steps
from services.memory.job_context import JobContext
from services.memory.logic import derived_id
from services.memory.notices import forgotten_events
from services.memory.rows import JobRow
from services.memory.sessions import SERVICE_PRODUCER
from services.memory.settings import MemorySettings
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import Connection, act_for_all_tenants, scope_tenant
from services.runtime.errors import describe
from services.runtime.loop import Loop
from services.runtime.outbox import Outbox, Outgoing
from services.runtime.telemetry import LONG_SECONDS_BOUNDS, Histogram, Measure

log = logging.getLogger("engram.memory.jobs")
BUSY_RETRY_S = 1.0  # another job holds the agent: look again this soon
PRUNE_EVERY_S = 600.0  # how often notes of sessions that never ended are dropped

StepFn = Callable[[JobContext], Awaitable[StepReport]]
STEPS: dict[Step, StepFn] = {
    Step.merge: steps.merge,
    Step.summarize: steps.summarize,
    Step.abstract: steps.abstract,
    Step.decay: steps.decay,
}


class JobRunner:
    """A component: the jobs loop (woken by the NOTIFY of a queued job, else every
    ``job_poll_s``) and the loop that prunes notes of sessions that never ended."""

    name = "memory-jobs"

    def __init__(self, settings: MemorySettings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.done = 0
        self.durations = Histogram(LONG_SECONDS_BOUNDS)  # of the jobs this runner finished
        self._pool: asyncpg.Pool | None = None
        self.jobs = Loop(
            self.name, self.run_once, every_s=settings.job_poll_s, channel=repo_jobs.NOTIFY_CHANNEL
        )
        self.pruner = Loop("memory-notes-prune", self.prune_notes, every_s=PRUNE_EVERY_S)

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = ctx.pool
        await self.jobs.start(ctx)
        await self.pruner.start(ctx)

    async def stop(self) -> None:
        # A job cut short keeps its lease and is taken over (see the module doc).
        await self.pruner.stop()
        await self.jobs.stop()

    def health(self) -> Health:
        jobs, pruner = self.jobs.health(), self.pruner.health()
        failing = [h.detail for h in (jobs, pruner) if not h.ok]
        if failing:
            return Health(self.name, False, "; ".join(failing))
        return Health(self.name, True, f"{self.done} jobs done")

    async def measures(self) -> list[Measure]:
        return [
            Measure(
                "consolidation_seconds",
                "Duration of the consolidation jobs this worker finished.",
                "histogram",
                histogram=self.durations,
            )
        ]

    def _running(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted("the consolidation runner")
        return self._pool

    async def prune_notes(self) -> bool:
        async with self._running().acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self.settings.roles)
            dropped = await repo_sessions.prune_notes(
                conn, self.settings.session_notes_days, self.settings.session_late_s
            )
        if dropped:
            log.info("dropped %d notes of ended sessions or sessions that never ended", dropped)
        return False

    async def run_once(self) -> bool:
        """Claim and run one job; False when there was none to run."""
        async with self._running().acquire() as conn:
            async with conn.transaction():  # the queue holds every tenant's jobs
                await act_for_all_tenants(conn, self.settings.roles)
                job = await repo_jobs.claim(conn, self.settings.job_lease_s)
            if job is None:
                return False
            # The job's own tenant until the connection goes back (the pool resets it).
            await scope_tenant(conn, job.tenant_id, local=False)
            if not await repo_jobs.try_lock_agent(conn, job.tenant_id, job.agent_id):
                await repo_jobs.defer(conn, job.key, BUSY_RETRY_S)
                return True
            try:
                await self._run(conn, job)
            except Exception as exc:
                log.exception(
                    "consolidation %s of %s/%s failed", job.job_id, job.tenant_id, job.agent_id
                )
                await repo_jobs.defer(conn, job.key, min(60.0, 2.0**job.attempts), describe(exc))
            finally:
                await repo_jobs.unlock_agent(conn, job.tenant_id, job.agent_id)
            return True

    async def _run(self, conn: Connection, job: JobRow) -> None:
        started = time.monotonic()
        if job.active_before is None:
            active = await repo_jobs.count_active(conn, job.tenant_id, job.agent_id)
            await repo_jobs.start(conn, job.key, active)
            job = replace(job, active_before=active)
        ctx = JobContext(conn, job, self.settings)
        for step in ALL_STEPS:
            if step.value not in job.steps or step.value in job.steps_done:
                continue
            async with conn.transaction():
                if step is Step.expire:
                    report, erased = await steps.expire(ctx)
                    if erased:
                        cause = derived_id("expire", job.tenant_id, job.job_id, job.agent_id)
                        notices = forgotten_events(job.tenant_id, cause, erased, "expired")
                        await self.outbox.add(conn, [Outgoing.event(n) for n in notices])
                else:
                    report = await STEPS[step](ctx)
                await repo_jobs.step_done(conn, job.key, report, self.settings.job_lease_s)
            job = replace(job, report=(*job.report, report))
            log.info(
                "consolidation %s %s/%s: %s",
                job.job_id,
                job.tenant_id,
                job.agent_id,
                report.model_dump(mode="json"),
            )
        async with conn.transaction():
            after = await repo_jobs.count_active(conn, job.tenant_id, job.agent_id)
            duration_ms = int((time.monotonic() - started) * 1000)
            summary = self._summary(job, after, duration_ms)
            await self.outbox.add(conn, [Outgoing.event(summary)])
            await repo_jobs.finish(conn, job.key, duration_ms, summary)
        self.done += 1
        self.durations.observe(time.monotonic() - started)

    def _summary(self, job: JobRow, after: int, duration_ms: int) -> MemoryConsolidated:
        return MemoryConsolidated(
            event_id=derived_id("consolidated", job.tenant_id, job.job_id, job.agent_id),
            occurred_at=utcnow(),
            tenant_id=job.tenant_id,
            producer=SERVICE_PRODUCER,
            causation_id=job.event_id,
            payload=ConsolidatedPayload(
                job_id=job.job_id,
                agent_id=job.agent_id,
                dry_run=job.dry_run,
                steps=list(job.report),
                active_before=job.active_before,
                active_after=after,
                duration_ms=duration_ms,
            ),
        )
