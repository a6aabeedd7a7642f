"""SQL of consolidation jobs: queue, lease, per-agent lock, and the steps' reads and writes."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.memory_jobs import MemoryConsolidate, MemoryConsolidated, StepReport
from services.memory.rows import (
    Consolidation,
    JobKey,
    JobRow,
)
from services.runtime.db import Connection

NOTIFY_CHANNEL = "memory_jobs"


async def enqueue(conn: Connection, event: MemoryConsolidate) -> list[MemoryConsolidated]:
    """One job row per agent (every agent with active memories when none is named).
    The same job id again finds its rows and adds nothing; it returns the summaries (the
    events as published) of those rows that are done, to be announced again."""
    p = event.payload
    if p.agent_id is not None:
        agents = [p.agent_id]
    else:
        rows = await conn.fetch(
            """SELECT DISTINCT agent_id FROM memory.memories
                WHERE tenant_id = $1 AND status = 'active' AND agent_id <> ''""",
            event.tenant_id,
        )
        agents = sorted(r[0] for r in rows)
    if not agents:
        return []
    await conn.execute(
        """INSERT INTO memory.jobs (tenant_id, job_id, agent_id, steps, dry_run,
               merge_threshold, clock, event_id)
           SELECT $1, $2, a, $4, $5, $6, $7, $8 FROM unnest($3::text[]) AS a
           ON CONFLICT DO NOTHING""",
        event.tenant_id,
        p.job_id,
        agents,
        [s.value for s in p.steps],
        p.dry_run,
        p.merge_threshold,
        event.occurred_at,
        event.event_id,
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    done = await conn.fetch(
        """SELECT summary FROM memory.jobs
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = ANY($3::text[])
              AND state = 'done' AND summary IS NOT NULL
            ORDER BY agent_id""",
        event.tenant_id,
        p.job_id,
        agents,
    )
    return [MemoryConsolidated.model_validate(r["summary"]) for r in done]


CLAIM = """
UPDATE memory.jobs j
   SET lease_until = now() + make_interval(secs => $1), attempts = j.attempts + 1
  FROM (SELECT tenant_id, job_id, agent_id FROM memory.jobs
         WHERE state = 'queued' AND (lease_until IS NULL OR lease_until < now())
         ORDER BY created_at, tenant_id, job_id, agent_id
         LIMIT 1 FOR UPDATE SKIP LOCKED) AS next
 WHERE (j.tenant_id, j.job_id, j.agent_id) = (next.tenant_id, next.job_id, next.agent_id)
RETURNING j.*
"""


async def claim(conn: Connection, lease_s: float) -> JobRow | None:
    row = await conn.fetchrow(CLAIM, lease_s)
    if row is None:
        return None
    return JobRow(
        tenant_id=row["tenant_id"],
        job_id=row["job_id"],
        agent_id=row["agent_id"],
        event_id=row["event_id"],
        steps=tuple(row["steps"]),
        steps_done=tuple(row["steps_done"]),
        dry_run=row["dry_run"],
        merge_threshold=row["merge_threshold"],
        clock=row["clock"],
        attempts=row["attempts"],
        active_before=row["active_before"],
        report=tuple(StepReport.model_validate(r) for r in row["report"]),
    )


async def try_lock_agent(conn: Connection, tenant_id: str, agent_id: str) -> bool:
    """Session-level: held for the whole job, released by ``unlock_agent`` or when the
    connection dies with its worker."""
    locked: bool = await conn.fetchval(
        "SELECT pg_try_advisory_lock(hashtextextended($1 || '/' || $2, 42))",
        tenant_id,
        agent_id,
    )
    return locked


async def unlock_agent(conn: Connection, tenant_id: str, agent_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock(hashtextextended($1 || '/' || $2, 42))", tenant_id, agent_id
    )


async def defer(conn: Connection, job: JobKey, seconds: float, error: str | None = None) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET lease_until = now() + make_interval(secs => $4),
               last_error = coalesce($5, last_error)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *job,
        seconds,
        error,
    )


async def start(conn: Connection, job: JobKey, active: int) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET active_before = coalesce(active_before, $4)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *job,
        active,
    )


async def step_done(conn: Connection, job: JobKey, report: StepReport, lease_s: float) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET steps_done = steps_done || $4::text,
               report = report || $5::jsonb,
               lease_until = now() + make_interval(secs => $6)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *job,
        report.step.value,
        [report.model_dump(mode="json")],
        lease_s,
    )


async def finish(
    conn: Connection, job: JobKey, duration_ms: int, summary: MemoryConsolidated
) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET state = 'done', finished_at = now(), duration_ms = $4,
               lease_until = NULL, summary = $5::jsonb
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *job,
        duration_ms,
        summary.model_dump(mode="json"),
    )


async def count_active(conn: Connection, tenant_id: str, agent_id: str) -> int:
    n: int = await conn.fetchval(
        """SELECT count(*) FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'""",
        tenant_id,
        agent_id,
    )
    return n


async def record(conn: Connection, job: JobKey, step: str, rows: Sequence[Consolidation]) -> None:
    if not rows:
        return
    await conn.execute(
        """INSERT INTO memory.consolidations (tenant_id, job_id, agent_id, step, source_ids,
               result_id, tokens_saved)
           SELECT $1, $2, $3, $4, string_to_array(s, ',')::uuid[], r, t
             FROM unnest($5::text[], $6::uuid[], $7::int[]) AS x(s, r, t)""",
        *job,
        step,
        [",".join(str(i) for i in r.source_ids) for r in rows],
        [r.result_id for r in rows],
        [r.tokens_saved for r in rows],
    )
