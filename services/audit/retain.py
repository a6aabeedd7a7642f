"""`engram audit retain --months N`: the only way rows leave the audit trail.

Whole monthly partitions are dropped, oldest first, each in its own transaction that first
appends to every chain with rows in that month a retention record (``audit.retained``):
the partition, its range, and the first and last positions and the last hash the chain
had in it. Within a chain recorded_at only grows, so a dropped month is a prefix of the
chain, and verify starts after the last retained position with that hash, confirmed by a
record that is itself chained (forging one breaks the chain after it).

Runs as the schema owner (the migration URL), not as the writer's role: DROP needs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from services.audit import canonical as c
from services.audit import repo
from services.audit.record import retention_record
from services.runtime.db import quote_ident

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime


@dataclass
class Retained:
    partition: Partition
    rows: int = 0
    chains: dict[str, dict[str, object]] = field(default_factory=dict)  # tenant -> summary


def cutoff(now: datetime, months: int) -> datetime:
    """Start of the month ``months`` before ``now``'s (UTC): partitions ending on or
    before it are dropped. ``--months 3`` on 15 May keeps February to May."""
    now = now.astimezone(UTC)
    index = now.year * 12 + (now.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    rows = await conn.fetch(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'audit.events'::regclass"""
    )
    found = []
    for row in rows:
        match = _BOUND.search(row["bound"] or "")
        if match is None:  # a DEFAULT partition, made by hand: never dropped here
            continue
        bounds = await conn.fetchrow(
            "SELECT $1::text::timestamptz, $2::text::timestamptz", match.group(1), match.group(2)
        )
        assert bounds is not None
        found.append(Partition(row["relname"], bounds[0], bounds[1]))
    return sorted(found, key=lambda p: p.start)


async def retain(
    conn: asyncpg.Connection,
    months: int,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    on_partition: Callable[[Retained], None] | None = None,
) -> list[Retained]:
    """Drop the partitions older than ``months`` months (see ``cutoff``)."""
    if months < 1:
        raise ValueError("--months must be at least 1 (the current month is never dropped)")
    limit = cutoff(now or datetime.now(UTC), months)
    await conn.fetchval("SELECT audit.ensure_partitions(now(), 2)")  # for the records
    done = []
    for part in await partitions(conn):
        if part.end > limit:
            break
        async with conn.transaction():
            table = f"audit.{quote_ident(part.name)}"
            # Nothing may be added to the month while it is summarized and dropped.
            await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
            retained = await summarize(conn, part, table)
            if not dry_run:
                at = datetime.now(UTC)
                records = [
                    retention_record(tenant, summary, at)
                    for tenant, summary in sorted(retained.chains.items())
                ]
                if records:
                    await repo.append(conn, records)
                await conn.execute(f"DROP TABLE {table}")
        done.append(retained)
        if on_partition:
            on_partition(retained)
    return done


async def summarize(conn: asyncpg.Connection, part: Partition, table: str) -> Retained:
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (tenant_id) tenant_id, position AS last_position,
                   hash AS last_hash,
                   min(position) OVER (PARTITION BY tenant_id) AS first_position,
                   count(*) OVER (PARTITION BY tenant_id) AS rows
              FROM {table}
             ORDER BY tenant_id, position DESC"""
    )
    retained = Retained(part)
    for r in rows:
        retained.rows += r["rows"]
        retained.chains[r["tenant_id"]] = {
            "partition": part.name,
            "range_from": c.timestamp(part.start),
            "range_to": c.timestamp(part.end),
            "first_position": r["first_position"],
            "last_position": r["last_position"],
            "last_hash": bytes(r["last_hash"]).hex(),
            "rows": r["rows"],
        }
    return retained
