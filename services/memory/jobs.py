"""The consolidation runner: a background task of every memory worker.

A ``memory.consolidate`` event only queues job rows (one per agent) in the consumer's
transaction, so the message is acked at once however long the job takes. Runners on any
number of replicas claim queued rows (``FOR UPDATE SKIP LOCKED`` and a lease), take a
session-level advisory lock on tenant + agent for the whole job (one consolidation per
agent at a time; a lock held by a dead worker goes with its connection), and run the steps
one transaction each. The last transaction marks the job done after publishing
``engram.memory.consolidated`` (id derived from the job: a repeat is a duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from contracts.envelope import utcnow
from contracts.memory_jobs import (
    ALL_STEPS,
    ConsolidatedPayload,
    MemoryConsolidated,
    Step,
    StepReport,
)
from services.memory import repo, repo_jobs, steps
from services.memory.handlers import Publish, forgotten_events
from services.memory.job import Job
from services.memory.logic import derived_id
from services.memory.sessions import SERVICE_PRODUCER
from services.memory.settings import MemorySettings
from services.runtime.db import ALL_TENANTS, scope_tenant
from services.runtime.errors import describe

log = logging.getLogger("engram.memory.jobs")
BUSY_RETRY_S = 1.0  # another job holds the agent: look again this soon
PRUNE_EVERY_S = 600.0  # notes of sessions that never ended are dropped when idle

StepFn = Callable[[Job], Awaitable[StepReport]]
STEPS: dict[Step, StepFn] = {
    Step.merge: steps.merge,
    Step.summarize: steps.summarize,
    Step.abstract: steps.abstract,
    Step.decay: steps.decay,
}


class JobRunner:
    def __init__(self, pool: asyncpg.Pool, settings: MemorySettings, publish: Publish) -> None:
        self.pool = pool
        self.settings = settings
        self.publish = publish
        self.done = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._pruned_at = 0.0

    async def start(self, dsn: str) -> None:
        # A plain connection: LISTEN must outlive any pooled transaction.
        self._listener = await asyncpg.connect(dsn)
        await self._listener.add_listener(repo_jobs.NOTIFY_CHANNEL,
                                          lambda *_: self._wake.set())
        self._task = asyncio.create_task(self._loop(), name="memory-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _loop(self) -> None:
        while True:
            try:
                ran = await self.run_once()
            except Exception as exc:  # the database may be away: try again later
                log.warning("consolidation runner: %s", describe(exc))
                ran = False
            if not ran:
                await self._prune_notes()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_s)
                self._wake.clear()

    async def _prune_notes(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        try:
            async with self.pool.acquire() as conn:
                dropped = await repo.prune_notes(conn, self.settings.session_notes_days)
        except Exception as exc:
            log.warning("pruning session notes failed: %s", describe(exc))
            return
        if dropped:
            log.info("dropped %d notes of sessions that never ended", dropped)

    async def run_once(self) -> bool:
        """Claim and run one job; False when there was none to run."""
        async with self.pool.acquire() as conn:
            await scope_tenant(conn, ALL_TENANTS, local=False)  # the pool resets it on release
            job = await repo_jobs.claim(conn, self.settings.job_lease_s)
            if job is None:
                return False
            if not await repo_jobs.try_lock_agent(conn, job["tenant_id"], job["agent_id"]):
                await repo_jobs.defer(conn, job, BUSY_RETRY_S)
                return True
            try:
                await self._run(conn, job)
            except Exception as exc:
                log.exception("consolidation %s of %s/%s failed", job["job_id"],
                              job["tenant_id"], job["agent_id"])
                await repo_jobs.defer(conn, job, min(60.0, 2.0 ** job["attempts"]),
                                      describe(exc))
            finally:
                await repo_jobs.unlock_agent(conn, job["tenant_id"], job["agent_id"])
            return True

    async def _run(self, conn: Any, job: dict[str, Any]) -> None:
        started = time.monotonic()
        ctx = Job(conn, job, self.settings)
        if job["active_before"] is None:
            active = await repo_jobs.count_active(conn, job["tenant_id"], job["agent_id"])
            await repo_jobs.start(conn, job, active)
            job["active_before"] = active
        for step in ALL_STEPS:
            if step.value not in job["steps"] or step.value in job["steps_done"]:
                continue
            async with conn.transaction():
                if step is Step.expire:
                    report, erased = await steps.expire(ctx)
                    if erased:
                        cause = derived_id(
                            "expire", job["tenant_id"], job["job_id"], job["agent_id"]
                        )
                        for notice in forgotten_events(job["tenant_id"], cause, erased, "expired"):
                            await self.publish(notice)
                else:
                    report = await STEPS[step](ctx)
                await repo_jobs.step_done(conn, job, report, self.settings.job_lease_s)
            job["report"] = [*job["report"], report.model_dump(mode="json")]
            log.info("consolidation %s %s/%s: %s", job["job_id"], job["tenant_id"],
                     job["agent_id"], report.model_dump(mode="json"))
        async with conn.transaction():
            after = await repo_jobs.count_active(conn, job["tenant_id"], job["agent_id"])
            duration_ms = int((time.monotonic() - started) * 1000)
            summary = self._summary(job, after, duration_ms)
            await self.publish(summary)
            await repo_jobs.finish(conn, job, duration_ms, summary.model_dump(mode="json"))
        self.done += 1

    def _summary(self, job: dict[str, Any], after: int, duration_ms: int) -> MemoryConsolidated:
        return MemoryConsolidated(
            event_id=derived_id("consolidated", job["tenant_id"], job["job_id"],
                                job["agent_id"]),
            occurred_at=utcnow(),
            tenant_id=job["tenant_id"],
            producer=SERVICE_PRODUCER,
            causation_id=job["event_id"],
            payload=ConsolidatedPayload(
                job_id=job["job_id"], agent_id=job["agent_id"], dry_run=job["dry_run"],
                steps=[StepReport.model_validate(r) for r in job["report"]],
                active_before=job["active_before"], active_after=after,
                duration_ms=duration_ms,
            ),
        )
