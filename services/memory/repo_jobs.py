"""SQL of consolidation jobs: queue, lease, per-agent lock, and the steps' reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from contracts.memory_jobs import MemoryConsolidate, StepReport
from services.memory.repo import vector_text
from services.runtime.db import Connection

NOTIFY_CHANNEL = "memory_jobs"


async def enqueue(conn: Connection, event: MemoryConsolidate) -> list[dict[str, Any]]:
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
        event.tenant_id, p.job_id, agents, [s.value for s in p.steps], p.dry_run,
        p.merge_threshold, event.occurred_at, event.event_id,
    )
    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    done = await conn.fetch(
        """SELECT summary FROM memory.jobs
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = ANY($3::text[])
              AND state = 'done' AND summary IS NOT NULL
            ORDER BY agent_id""",
        event.tenant_id, p.job_id, agents,
    )
    return [r["summary"] for r in done]


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


async def claim(conn: Connection, lease_s: float) -> dict[str, Any] | None:
    row = await conn.fetchrow(CLAIM, lease_s)
    return dict(row) if row else None


def _key(job: dict[str, Any]) -> tuple[str, UUID, str]:
    return job["tenant_id"], job["job_id"], job["agent_id"]


async def try_lock_agent(conn: Connection, tenant_id: str, agent_id: str) -> bool:
    """Session-level: held for the whole job, released by ``unlock_agent`` or when the
    connection dies with its worker."""
    locked: bool = await conn.fetchval(
        "SELECT pg_try_advisory_lock(hashtextextended($1 || '/' || $2, 42))",
        tenant_id, agent_id,
    )
    return locked


async def unlock_agent(conn: Connection, tenant_id: str, agent_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock(hashtextextended($1 || '/' || $2, 42))", tenant_id, agent_id
    )


async def defer(conn: Connection, job: dict[str, Any], seconds: float,
                error: str | None = None) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET lease_until = now() + make_interval(secs => $4),
               last_error = coalesce($5, last_error)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *_key(job), seconds, error,
    )


async def start(conn: Connection, job: dict[str, Any], active: int) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET active_before = coalesce(active_before, $4)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *_key(job), active,
    )


async def step_done(conn: Connection, job: dict[str, Any], report: StepReport,
                    lease_s: float) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET steps_done = steps_done || $4::text,
               report = report || $5::jsonb,
               lease_until = now() + make_interval(secs => $6)
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *_key(job), report.step.value, [report.model_dump(mode="json")], lease_s,
    )


async def finish(conn: Connection, job: dict[str, Any], duration_ms: int,
                 summary: dict[str, Any]) -> None:
    await conn.execute(
        """UPDATE memory.jobs SET state = 'done', finished_at = now(), duration_ms = $4,
               lease_until = NULL, summary = $5::jsonb
            WHERE tenant_id = $1 AND job_id = $2 AND agent_id = $3""",
        *_key(job), duration_ms, summary,
    )


async def count_active(conn: Connection, tenant_id: str, agent_id: str) -> int:
    n: int = await conn.fetchval(
        """SELECT count(*) FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'""",
        tenant_id, agent_id,
    )
    return n


async def record(
    conn: Connection, job: dict[str, Any], step: str,
    rows: Sequence[tuple[Sequence[UUID], UUID | None, int]],
) -> None:
    """consolidations rows: (source ids, result id, tokens saved)."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO memory.consolidations (tenant_id, job_id, agent_id, step, source_ids,
               result_id, tokens_saved)
           SELECT $1, $2, $3, $4, string_to_array(s, ',')::uuid[], r, t
             FROM unnest($5::text[], $6::uuid[], $7::int[]) AS x(s, r, t)""",
        *_key(job), step, [",".join(str(i) for i in r[0]) for r in rows],
        [r[1] for r in rows], [r[2] for r in rows],
    )


# --- what the steps read -------------------------------------------------------------

LOAD_ACTIVE = """
SELECT memory_id, memory_type, user_id, conversation_id, text, content, tokens, importance,
       decay_rate, access_count, last_accessed_at, decayed_at, expires_at, source_message_id,
       written_at, model_id, content_hash, embedding
  FROM memory.memories
 WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND memory_type = $3
   AND embedding IS NOT NULL
 ORDER BY memory_id
"""


async def load_active(
    conn: Connection, tenant_id: str, agent_id: str, memory_type: str
) -> list[asyncpg.Record]:
    return list(await conn.fetch(LOAD_ACTIVE, tenant_id, agent_id, memory_type))


async def abstracted_ids(conn: Connection, tenant_id: str, agent_id: str) -> set[UUID]:
    """Episodes an active abstraction was already derived from."""
    rows = await conn.fetch(
        """SELECT l.target_id FROM memory.memory_links l
             JOIN memory.memories m ON m.tenant_id = l.tenant_id AND m.memory_id = l.memory_id
            WHERE l.tenant_id = $1 AND m.agent_id = $2 AND m.origin = 'abstract'
              AND m.status = 'active' AND l.relation = 'derived_from'""",
        tenant_id, agent_id,
    )
    return {r[0] for r in rows}


INSERT_DERIVED = """
INSERT INTO memory.memories (tenant_id, memory_id, agent_id, user_id, conversation_id,
    memory_type, text, content, content_hash, tokens, importance, decay_rate, access_count,
    last_accessed_at, decayed_at, expires_at, source_message_id, origin, written_at,
    model_id, embedding)
SELECT $1, memory_id, $2, user_id, conversation_id, memory_type, text, content, content_hash,
       tokens, importance, decay_rate, access_count, last_accessed_at, decayed_at, expires_at,
       source_message_id, origin, written_at, model_id, embedding::vector
  FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[],
    $8::jsonb[], $9::bytea[], $10::int[], $11::real[], $12::real[], $13::int[],
    $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::uuid[], $18::text[],
    $19::timestamptz[], $20::text[], $21::text[])
    AS d(memory_id, user_id, conversation_id, memory_type, text, content, content_hash,
         tokens, importance, decay_rate, access_count, last_accessed_at, decayed_at,
         expires_at, source_message_id, origin, written_at, model_id, embedding)
ON CONFLICT (tenant_id, memory_id) DO NOTHING
"""
DERIVED_COLUMNS = (
    "memory_id", "user_id", "conversation_id", "memory_type", "text", "content",
    "content_hash", "tokens", "importance", "decay_rate", "access_count", "last_accessed_at",
    "decayed_at", "expires_at", "source_message_id", "origin", "written_at", "model_id",
    "embedding",
)


async def insert_derived(
    conn: Connection, tenant_id: str, agent_id: str, rows: Sequence[dict[str, Any]]
) -> None:
    if rows:
        columns = [[vector_text(row[c]) if c == "embedding" else row[c] for row in rows]
                   for c in DERIVED_COLUMNS]
        await conn.execute(INSERT_DERIVED, tenant_id, agent_id, *columns)


async def supersede(
    conn: Connection, tenant_id: str, pairs: Sequence[tuple[UUID, UUID]]
) -> None:
    """(source, successor): the source stays, marked superseded, never deleted."""
    if pairs:
        await conn.execute(
            """UPDATE memory.memories m SET status = 'superseded', superseded_by = p.successor,
                   updated_at = now()
                 FROM unnest($2::uuid[], $3::uuid[]) AS p(source, successor)
                WHERE m.tenant_id = $1 AND m.memory_id = p.source AND m.status = 'active'""",
            tenant_id, [p[0] for p in pairs], [p[1] for p in pairs],
        )


async def expiry_candidates(
    conn: Connection, tenant_id: str, agent_id: str, clock: datetime
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(past expires_at, every active working memory with its last use)."""
    past = await conn.fetch(
        """SELECT memory_id, tokens FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'
              AND expires_at <= $3""",
        tenant_id, agent_id, clock,
    )
    working = await conn.fetch(
        """SELECT memory_id, tokens, coalesce(last_accessed_at, written_at) AS last_used
             FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active'
              AND memory_type = 'working'""",
        tenant_id, agent_id,
    )
    return list(past), list(working)


# Importance at the job's clock, from the later of the last decay and the last access
# (logic.decayed is the same formula); never decays backwards in time.
DECAY = """
UPDATE memory.memories
   SET importance = importance * power(
           1 - decay_rate / (1 + ln(1 + access_count)),
           greatest(0, extract(epoch FROM $3 - greatest(decayed_at,
               coalesce(last_accessed_at, decayed_at))) / 86400.0)),
       decayed_at = $3
 WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND decayed_at < $3
"""


async def decay(conn: Connection, tenant_id: str, agent_id: str, clock: datetime) -> int:
    status = await conn.execute(DECAY, tenant_id, agent_id, clock)
    return int(status.split()[-1])


async def count_decay(conn: Connection, tenant_id: str, agent_id: str, clock: datetime) -> int:
    n: int = await conn.fetchval(
        """SELECT count(*) FROM memory.memories
            WHERE tenant_id = $1 AND agent_id = $2 AND status = 'active' AND decayed_at < $3""",
        tenant_id, agent_id, clock,
    )
    return n


