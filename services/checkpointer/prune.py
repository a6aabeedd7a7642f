"""Retention: ``engram state prune --keep-days D`` (and the worker's optional periodic run).

Per state, in its own transaction with the state's row locked: let *keep* be the version
that was current D days ago (the newest applied at or before the cutoff). Every version
from *keep* on stays exactly reconstructable; older transitions go. If no checkpoint at
*keep* survives the run (and *keep* is not the current version, which is its own
snapshot), one is written first, rebuilt from the history still present. Temporary
checkpoints below *keep*, and expired temporary ones that are not automatic, are deleted.
Permanent and archive checkpoints are never deleted (their versions stay readable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from contracts.state import PARTITIONS
from services.checkpointer import repo, repo_read
from services.checkpointer.history import StatePoint, rebuild
from services.checkpointer.patch import Document
from services.checkpointer.rows import derived_id
from services.checkpointer.versions import canonical, compress, loads, state_hash
from services.runtime.db import Connection, Roles, act_for_all_tenants

LOCK_KEY = 0x70727566  # one pruner at a time across replicas and jobs


@dataclass
class PruneReport:
    states: int = 0
    transitions: int = 0
    checkpoints: int = 0
    bases: int = 0


CANDIDATES = """
SELECT s.state_id FROM checkpoint.agent_states s
 WHERE EXISTS (SELECT 1 FROM checkpoint.transitions t
                WHERE t.state_id = s.state_id AND t.applied_at <= $1)
    OR EXISTS (SELECT 1 FROM checkpoint.checkpoints c
                WHERE c.state_id = s.state_id AND c.retention = 'temporary'
                  AND (c.version < s.history_floor_version
                       OR (c.checkpoint_type <> 'automatic' AND c.expires_at <= now())))
 ORDER BY s.state_id"""

DOOMED = """
SELECT checkpoint_id FROM checkpoint.checkpoints
 WHERE state_id = $1 AND retention = 'temporary'
   AND (version < $2 OR (checkpoint_type <> 'automatic' AND expires_at <= now()))"""


async def prune(
    pool: asyncpg.Pool,
    keep_days: float,
    *,
    roles: Roles,
    now: datetime | None = None,
    compress_above: int = 4096,
    progress: Callable[[int, int, PruneReport], None] | None = None,
) -> PruneReport:
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    report = PruneReport()
    # Retention spans every tenant by design: it acts as the cross-tenant role.
    async with pool.acquire() as conn, conn.transaction():
        await act_for_all_tenants(conn, roles)
        state_ids = [row[0] for row in await conn.fetch(CANDIDATES, cutoff)]
    for done, state_id in enumerate(state_ids, 1):
        async with pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, roles)
            await _prune_state(conn, state_id, cutoff, compress_above, report)
        report.states = done
        if progress:
            progress(done, len(state_ids), report)
    return report


async def _prune_state(
    conn: Connection, state_id: int, cutoff: datetime, compress_above: int, report: PruneReport
) -> None:
    row = await conn.fetchrow(
        """SELECT s.*, local_state::text AS l, shared_state::text AS sh,
                  session_state::text AS se, persistent_state::text AS p
             FROM checkpoint.agent_states s WHERE state_id = $1 FOR UPDATE""",
        state_id,
    )
    if row is None:
        return
    head = repo.head_of(row)
    keep = await repo_read.version_at(conn, state_id, cutoff)
    floor = max(head.floor_version, keep or 0)
    doomed = [r[0] for r in await conn.fetch(DOOMED, state_id, floor)]
    survivors = await conn.fetchval(
        """SELECT count(*) FROM checkpoint.checkpoints
            WHERE state_id = $1 AND version = $2 AND NOT checkpoint_id = ANY($3::uuid[])""",
        state_id,
        floor,
        doomed,
    )
    if 0 < floor < head.version and not survivors:
        await _write_base(conn, row, head, floor, compress_above)
        report.bases += 1
    if keep is not None and keep > 0:
        status = await conn.execute(
            "DELETE FROM checkpoint.transitions WHERE state_id = $1 AND version <= $2",
            state_id,
            keep,
        )
        report.transitions += int(status.split()[-1])
        await conn.execute(
            """UPDATE checkpoint.agent_states
                  SET history_floor_version = $2,
                      history_floor_at = greatest(history_floor_at, $3)
                WHERE state_id = $1""",
            state_id,
            floor,
            cutoff,
        )
    if doomed:
        # Checkpoint ids are per tenant: another tenant's checkpoint may share one.
        status = await conn.execute(
            """DELETE FROM checkpoint.checkpoints
                WHERE tenant_id = $1 AND checkpoint_id = ANY($2::uuid[]) AND state_id = $3""",
            head.key[0],
            doomed,
            state_id,
        )
        report.checkpoints += int(status.split()[-1])


async def _write_base(
    conn: Connection, row: asyncpg.Record, head: repo.Head, version: int, compress_above: int
) -> None:
    async def current() -> Document:
        texts = (row["l"], row["sh"], row["se"], row["p"])
        return {name: loads(t) for name, t in zip(PARTITIONS, texts, strict=True)}

    point = StatePoint(head.state_id, head.version, head.floor_version)
    doc = await rebuild(conn, point, version, current)
    text = canonical(doc)
    snap = compress(text, threshold=compress_above)
    base = repo.CheckpointRow(
        checkpoint_id=derived_id("base", head.state_id, version),
        state_id=head.state_id,
        tenant_id=head.key[0],
        version=version,
        checkpoint_type="automatic",
        label="retention base",
        retention="temporary",
        expires_at=None,
        compression=snap.compression,
        size_bytes=snap.size_bytes,
        snapshot=snap.data,
        state_hash=state_hash(text),
        metadata="{}",
        event_id=None,
    )
    await repo.insert_checkpoints(conn, [base])


async def prune_exclusively(
    pool: asyncpg.Pool, keep_days: float, *, roles: Roles, compress_above: int
) -> PruneReport | None:
    """The worker's retention run: ``prune``, unless another replica is at it (then
    None): one pruner at a time, so replicas do not lock the same states in turn."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            return None
        try:
            return await prune(pool, keep_days, roles=roles, compress_above=compress_above)
        finally:
            with contextlib.suppress(Exception):  # a lost connection released it anyway
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
