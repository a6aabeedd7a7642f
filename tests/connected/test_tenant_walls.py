"""Row-level security as the second wall (docs/security.md), on data the five real workers
wrote for two tenants: every tenant table, as each worker's own login, shows one tenant's
rows or none; and a generated storm of reads and writes on shared pools that alternate
tenants never sees or touches a row of another tenant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from contracts.envelope import Envelope
from services.catalog import SERVICES
from services.runtime.db import Roles
from tests import factories as f
from tests.conftest import Env
from tests.connected import checkpointer_fixtures as cp
from tests.connected import context_fixtures as ctx
from tests.connected import memory_fixtures as mem
from tests.connected.embedder_fixtures import Running
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = [
    "tests.connected.audit_fixtures",
    "tests.connected.checkpointer_fixtures",
    "tests.connected.context_fixtures",
    "tests.connected.embedder_fixtures",
    "tests.connected.memory_fixtures",
]

TENANTS = ("acme", "globex")
SCHEMAS = {spec.name: spec.schema for spec in SERVICES}
TABLES = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND c.relname <> 'inbox'  -- (event id, tenant) keys, no content: no row-level security
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY 1
"""


def events_of(tenant: str) -> list[Envelope]:
    cid, sid = uuid4(), uuid4()
    first = uuid4()
    return [
        f.conversation(cid, tenant=tenant),
        f.session_start(sid, cid, tenant=tenant),
        f.message(cid, first, tenant=tenant, content=f"{tenant} books a hotel by the river"),
        f.message(cid, tenant=tenant, content=f"{tenant} rents a car for the weekend"),
        f.edit(first, f"{tenant} books a hotel by the sea", tenant=tenant),
        f.file(tenant=tenant, extracted_text=f"{tenant} itinerary: Lisbon then Porto"),
        f.session_end(sid, cid, tenant=tenant),
        mem.write(f"{tenant} prefers window seats", tenant=tenant),
        mem.write(f"{tenant} is vegetarian", "episodic", tenant=tenant),
        mem.consolidate(tenant=tenant),
        cp.patch([cp.add("/local/n", 1)], tenant=tenant),
        cp.patch([cp.add("/local/m", 2)], tenant=tenant),
        cp.checkpoint(uuid4(), tenant=tenant),
        cp.patch([cp.add("/local/k", 3)], expected=0, tenant=tenant),  # stale: a conflict
        ctx.template_put("persona", f"You are {tenant}'s {{agent_id}}.", tenant),
    ]


@dataclass(frozen=True)
class World:
    """Per table, how many rows each tenant has (as the superuser sees them)."""

    rows: dict[str, dict[str, int]]


async def counts(db: asyncpg.Connection) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for schema in SCHEMAS.values():
        for (table,) in await db.fetch(TABLES, schema):
            per = await db.fetch(f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1")
            found[table] = {t: n for t, n in per}
    return found


@pytest.fixture
async def world(
    *,
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
    run_ingest: Callable[..., AbstractAsyncContextManager[Any]],
    run_embedder: Callable[..., AbstractAsyncContextManager[Running]],
    run_memory: Callable[..., AbstractAsyncContextManager[Any]],
    run_checkpointer: Callable[..., AbstractAsyncContextManager[Any]],
    run_audit: Callable[..., AbstractAsyncContextManager[Any]],
    run_context: Callable[..., AbstractAsyncContextManager[Any]],
) -> World:
    sent = [e for t in TENANTS for e in events_of(t)]
    async with AsyncExitStack() as stack:
        for run in (run_ingest, run_embedder, run_memory, run_checkpointer, run_audit, run_context):
            await stack.enter_async_context(run())
        await publish(nc, *sent)

        async def settled() -> bool:
            now = await counts(db)
            return (
                sum(now["audit.events"].values()) >= len(sent)
                and all(len(now[t]) == 2 for t in ("ingest.messages", "checkpoint.conflicts"))
                and all(now["memory.jobs"].get(t) for t in TENANTS)
                and all(n >= 2 for n in now["embedder.chunks"].values())
                and len(now["embedder.chunks"]) == 2
                and len(now["context.templates"]) == 2
            )

        await eventually(settled, timeout=90)
        for tenant in TENANTS:  # a snapshot of each tenant, built from its own rows
            build = {
                "tenant_id": tenant,
                "agent_id": "bot",
                "user_id": "u-1",
                "query": "hotel",
                "token_budget": 500,
                "template": "persona",
            }
            await nc.request("query.context.build", json.dumps(build).encode(), timeout=10)
        await asyncio.sleep(1.0)  # the jobs and summaries still under way
    return World(await counts(db))


async def seen(conn: asyncpg.Connection, table: str, role: str | None, scope: str | None) -> int:
    async with conn.transaction():
        if scope is not None:
            await conn.execute("SELECT set_config('engram.tenant_id', $1, true)", scope)
        if role is not None:
            await conn.execute(f"SET LOCAL ROLE {role}")
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_each_table_shows_one_tenant_or_nothing(env: Env, world: World) -> None:
    both = [t for t, per in world.rows.items() if all(per.get(x) for x in TENANTS)]
    # Most tenant tables hold rows of both tenants here; a table without is still checked.
    assert len(both) >= 16, sorted(set(world.rows) - set(both))
    for service, schema in SCHEMAS.items():
        roles = Roles(service)
        conn = await asyncpg.connect(env.login(service))
        try:
            for table, per in world.rows.items():
                if not table.startswith(f"{schema}."):
                    continue
                acme = per.get("acme", 0)
                for role, scope, expected in [
                    (None, None, 0),  # the worker, no tenant set
                    (None, "", 0),
                    (None, "*", 0),  # the old wildcard
                    (None, "acme", acme),  # the worker, a batch of acme
                    (None, "acme,globex", acme + per.get("globex", 0)),
                    (roles.reader, None, 0),
                    (roles.reader, "acme", acme),
                    (roles.reader, "acme,globex", 0),  # a reader reads one tenant
                    (roles.reader, "*", 0),
                ]:
                    assert await seen(conn, table, role, scope) == expected, (table, role, scope)
        finally:
            await conn.close()


# --- the storm -------------------------------------------------------------------------

# What an INSERT may name: not dropped, not generated (e.g. a tsvector kept from the text).
WRITABLE_COLUMNS = """
SELECT array_agg(quote_ident(attname) ORDER BY attnum) FROM pg_attribute
 WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
"""
READ_KINDS = ("count", "ids", "filtered", "search", "update", "delete", "insert_other")
# The searches the query paths run, on the tables that have them (elsewhere "search" reads
# ids): nearest vectors to one of the tenant's own, and full text. Whatever they rank,
# every row they return must be the tenant's.
NEAREST = (
    "SELECT tenant_id FROM {table} WHERE embedding IS NOT NULL "
    "ORDER BY embedding <=> (SELECT embedding FROM {table} WHERE embedding IS NOT NULL LIMIT 1) "
    "LIMIT 10"
)
SEARCHES = {
    "embedder.chunk_vectors": NEAREST,
    "memory.memories": NEAREST,
    "embedder.chunks": "SELECT tenant_id FROM {table} "
    "WHERE tsv @@ to_tsquery('english', 'hotel | car | itinerary | window') LIMIT 10",
}


@dataclass(frozen=True)
class Op:
    service: str
    table: str
    tenant: str
    as_reader: bool
    kind: str


@pytest.fixture
async def pools(env: Env, world: World) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    made = {
        service: await asyncpg.create_pool(env.login(service), min_size=2, max_size=2)
        for service in SCHEMAS
    }
    yield made
    for pool in made.values():
        await pool.close()


def ops(world: World) -> st.SearchStrategy[list[Op]]:
    tables = sorted(world.rows)
    service_of = {schema: name for name, schema in SCHEMAS.items()}
    one = st.builds(
        lambda table, tenant, reader, kind: Op(
            service_of[table.split(".")[0]], table, tenant, reader, kind
        ),
        st.sampled_from(tables),
        st.sampled_from(TENANTS),
        st.booleans(),
        st.sampled_from(READ_KINDS),
    )
    return st.lists(one, min_size=200, max_size=200)


async def run(pool: asyncpg.Pool, op: Op, world: World) -> None:
    """``attempt``, again when it lost a deadlock: ten operations at a time may update or
    delete the same tenant's rows in different orders, which PostgreSQL resolves by
    failing one of them (as a worker retries a batch that lost one)."""
    for _ in range(4):
        try:
            return await attempt(pool, op, world)
        except asyncpg.DeadlockDetectedError:
            await asyncio.sleep(0.01)
    await attempt(pool, op, world)


async def attempt(pool: asyncpg.Pool, op: Op, world: World) -> None:
    """One read or write, rolled back; fails the test on any row of another tenant."""
    other = next(t for t in TENANTS if t != op.tenant)
    mine = world.rows[op.table].get(op.tenant, 0)
    roles = Roles(op.service)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SELECT set_config('engram.tenant_id', $1, true)", op.tenant)
            if op.as_reader:
                await conn.execute(f"SET LOCAL ROLE {roles.reader}")
            if op.kind == "count":
                assert await conn.fetchval(f"SELECT count(*) FROM {op.table}") == mine
            elif op.kind == "ids" or (op.kind == "search" and op.table not in SEARCHES):
                tenants = await conn.fetch(f"SELECT DISTINCT tenant_id FROM {op.table}")
                assert {r[0] for r in tenants} <= {op.tenant}
            elif op.kind == "search":
                found = await conn.fetch(SEARCHES[op.table].format(table=op.table))
                assert {r[0] for r in found} == ({op.tenant} if mine else set()), op
            elif op.kind == "filtered":  # asking for the other tenant by name
                n = await conn.fetchval(
                    f"SELECT count(*) FROM {op.table} WHERE tenant_id = $1", other
                )
                assert n == 0
            elif op.kind in ("update", "delete") and not op.as_reader:
                verb = (
                    f"UPDATE {op.table} SET tenant_id = tenant_id"
                    if op.kind == "update"
                    else f"DELETE FROM {op.table}"
                )
                try:
                    status = await conn.execute(verb)
                except asyncpg.InsufficientPrivilegeError:
                    return  # audit's role may not change its trail at all
                except asyncpg.IntegrityConstraintViolationError:
                    return  # rows that our other rows reference
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate != "E0A01":  # audit's trail is append-only
                        raise
                    return
                assert int(status.split()[-1]) == mine, (op, status)
            elif op.kind == "insert_other" and not op.as_reader and mine:
                # One of our rows copied under the other tenant's id: refused by the
                # policy's WITH CHECK, which PostgreSQL applies before any constraint.
                columns = await conn.fetchval(WRITABLE_COLUMNS, op.table)
                copied = ["$1" if c == "tenant_id" else c for c in columns]
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level"):
                    await conn.execute(
                        f"INSERT INTO {op.table} ({', '.join(columns)}) OVERRIDING SYSTEM "
                        f"VALUE SELECT {', '.join(copied)} FROM {op.table} LIMIT 1",
                        other,
                    )
        finally:
            await tx.rollback()


@pytest.mark.timeout(900)  # 100,000 operations: minutes, and more on a busy machine
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_storm_of_reads_and_writes_never_crosses_tenants(
    world: World, pools: dict[str, asyncpg.Pool], data: st.DataObject
) -> None:
    """500 x 200 = 100,000 operations, ten at a time over the services' pools of two: a
    connection serves one tenant, then the other."""
    batch = data.draw(ops(world))
    for start in range(0, len(batch), 10):
        await asyncio.gather(
            *(run(pools[op.service], op, world) for op in batch[start : start + 10])
        )
