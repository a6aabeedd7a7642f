"""Shared pieces of the audit writer's connected tests. The fixtures (``__all__``) come in
with ``from tests.connected.audit_fixtures import *``; helpers are imported by name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contracts.envelope import Envelope
from services.audit import repo
from services.audit.app import create_app
from services.audit.export import export_tenant
from services.audit.logic import build_record
from services.audit.record import AuditRecord
from services.audit.redaction import RedactionPolicy
from services.audit.settings import AuditSettings
from services.audit.verify import VerifyResult, verify_database
from services.runtime.db import scope_tenants
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.worker_fixtures import FAST_TIMINGS, in_process, worker_settings

__all__ = ["audit", "run_audit"]

FAST = FAST_TIMINGS

RunAudit = Callable[..., AbstractAsyncContextManager[Worker]]


def audit_settings(env: Env, **overrides: Any) -> AuditSettings:
    return worker_settings(AuditSettings, env, FAST, **overrides)


@pytest.fixture
def run_audit(env: Env) -> RunAudit:
    """``async with run_audit(**settings) as worker``: the real audit writer, in this process."""
    return in_process(create_app, partial(audit_settings, env))


@pytest.fixture
async def audit(run_audit: RunAudit) -> AsyncIterator[Worker]:
    async with run_audit() as worker:
        yield worker


async def recorded(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM audit.events"))


async def verify(env: Env, **kwargs: Any) -> VerifyResult:
    """verify_database on a connection of its own (as `engram audit verify` does)."""
    conn = await asyncpg.connect(env.database_url)
    try:
        return await verify_database(conn, **kwargs)
    finally:
        await conn.close()


async def export(env: Env, tenant: str, path: Path) -> tuple[int, tuple[int, bytes] | None]:
    """export_tenant into ``path`` on a connection of its own (as `engram audit export`
    does): the rows written and the head the file ends on."""
    conn = await asyncpg.connect(env.database_url)
    try:
        with path.open("w", encoding="utf-8") as out:
            return await export_tenant(conn, tenant, out)
    finally:
        await conn.close()


# --- writing a trail without the bus (tamper and retention tests) ----------------------


def records_for(
    events: Sequence[Envelope], stream: str = "CHAT", first_seq: int = 1
) -> list[AuditRecord]:
    """The records the writer would build for these events, as if they were on ``stream``."""
    return [
        build_record(
            stream=stream,
            stream_seq=first_seq + i,
            subject=e.type,
            data=e.model_dump_json().encode(),
            headers=e.headers(),
            received_at=e.occurred_at,
            policy=RedactionPolicy(),
        )
        for i, e in enumerate(events)
    ]


async def append_now(env: Env, records: Sequence[AuditRecord], batch: int = 50) -> None:
    """repo.append as the writer's login, in batches (one transaction each, scoped to its
    records' tenants as the pipeline scopes a batch)."""
    conn = await asyncpg.connect(env.login("audit"))
    try:
        for i in range(0, len(records), batch):
            chunk = records[i : i + batch]
            async with conn.transaction():
                await scope_tenants(conn, {r.tenant_id for r in chunk})
                await repo.Partitions().ensure(conn)
                await repo.append(conn, chunk)
    finally:
        await conn.close()


async def append_at(env: Env, records: Sequence[AuditRecord], at: datetime) -> None:
    """Chain records as if they had been recorded at ``at`` (an old month): the writer's
    own steps with the clock replaced; the owner creates that month's partition."""
    conn = await asyncpg.connect(env.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT audit.ensure_partitions($1, 0)", at)
            tenants = sorted({r.tenant_id for r in records})
            heads = {
                row["tenant_id"]: repo.Head(row["position"], row["hash"])
                for row in await conn.fetch(
                    "SELECT * FROM audit.chain_heads WHERE tenant_id = ANY($1)", tenants
                )
            }
            await repo.copy_rows(conn, repo.chain_rows(records, heads, at))
            await conn.executemany(
                """INSERT INTO audit.chain_heads VALUES ($1, $2, $3, $4)
                   ON CONFLICT (tenant_id) DO UPDATE SET position = $2, hash = $3,
                       recorded_at = $4""",
                [(t, h.position, h.hash, at) for t, h in heads.items()],
            )
    finally:
        await conn.close()


async def tamper(db: asyncpg.Connection, sql: str, *args: Any) -> str:
    """What a superuser can do: switch the append-only trigger off, change rows, switch it
    back on. Only verify can tell afterwards."""
    await db.execute("ALTER TABLE audit.events DISABLE TRIGGER events_append_only")
    try:
        return str(await db.execute(sql, *args))
    finally:
        await db.execute("ALTER TABLE audit.events ENABLE ALWAYS TRIGGER events_append_only")
