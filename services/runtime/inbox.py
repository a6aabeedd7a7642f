"""Idempotency: an event's effects and its inbox row commit in one transaction.

The key is (tenant, event id): two tenants may choose the same event id (DESIGN.md), and
each event is applied once within its tenant, whatever headers it came with. Rows from
before migration runtime/004 have the tenant ``ANY_TENANT`` and hold their event id for
every tenant until they are pruned (sql/runtime/004_inbox_per_tenant.sql says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple
from uuid import UUID

from services.runtime.db import Connection, quote_ident

# What sql/runtime/004 gave the rows whose tenant was never recorded; no tenant id can be
# this (contracts.envelope.TENANT_PATTERN).
ANY_TENANT = "*"


class InboxKey(NamedTuple):
    tenant_id: str
    event_id: UUID


class Inbox:
    def __init__(self, schema: str) -> None:
        table = f"{quote_ident(schema)}.inbox"
        # One statement per batch, as before the key had a tenant: the look-up of a
        # pre-004 row is an anti-join on a partial index that is empty once they are pruned.
        self._claim = (
            f"INSERT INTO {table} (event_id, tenant_id, subject) "
            "SELECT e.event_id, e.tenant_id, e.subject "
            "FROM unnest($1::uuid[], $2::text[], $3::text[]) AS e(event_id, tenant_id, subject) "
            f"WHERE NOT EXISTS (SELECT FROM {table} AS old "
            f"WHERE old.event_id = e.event_id AND old.tenant_id = '{ANY_TENANT}') "
            "ON CONFLICT (event_id, tenant_id) DO NOTHING RETURNING tenant_id, event_id"
        )
        # While the worker traces: each event's span too (sql/runtime/006), for the jobs
        # that announce its results later (outbox.Outbox.add).
        self._claim_traced = (
            f"INSERT INTO {table} (event_id, tenant_id, subject, traceparent) "
            "SELECT e.event_id, e.tenant_id, e.subject, e.traceparent "
            "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) "
            "AS e(event_id, tenant_id, subject, traceparent) "
            f"WHERE NOT EXISTS (SELECT FROM {table} AS old "
            f"WHERE old.event_id = e.event_id AND old.tenant_id = '{ANY_TENANT}') "
            "ON CONFLICT (event_id, tenant_id) DO NOTHING RETURNING tenant_id, event_id"
        )
        self._release = (
            f"DELETE FROM {table} AS i USING unnest($1::uuid[], $2::text[]) AS r(event_id, "
            "tenant_id) WHERE i.event_id = r.event_id AND i.tenant_id = r.tenant_id"
        )
        self._prune = f"DELETE FROM {table} WHERE received_at < now() - $1::interval"

    async def claim(
        self,
        conn: Connection,
        keys: Sequence[InboxKey],
        subjects: Sequence[str],
        traceparents: Sequence[str | None] | None = None,
    ) -> set[InboxKey]:
        """Record the events (with the ``traceparent`` of each one's span, when given);
        returns the keys seen for the first time (the rest are duplicates)."""
        ids, tenants = [k.event_id for k in keys], [k.tenant_id for k in keys]
        if traceparents is None:
            rows = await conn.fetch(self._claim, ids, tenants, list(subjects))
        else:
            rows = await conn.fetch(
                self._claim_traced, ids, tenants, list(subjects), list(traceparents)
            )
        return {InboxKey(row[0], row[1]) for row in rows}

    async def release(self, conn: Connection, keys: Sequence[InboxKey]) -> None:
        """Forget events that were claimed but not applied (they will be delivered again)."""
        await conn.execute(self._release, [k.event_id for k in keys], [k.tenant_id for k in keys])

    async def prune(self, conn: Connection, older_than: timedelta) -> int:
        status = await conn.execute(self._prune, older_than)
        return int(status.split()[-1])
