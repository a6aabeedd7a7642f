"""Least privilege in PostgreSQL (docs/security.md), tried from each worker's own login."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.catalog import SERVICES
from services.runtime.db import PrivilegedLogin, Roles, create_pool
from tests.conftest import Env

SCHEMAS = {spec.name: spec.schema for spec in SERVICES}
TENANT_TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.relrowsecurity AS enabled,
       c.relforcerowsecurity AS forced, c.relispartition AS partition,
       pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY 1, 2
"""


async def test_every_tenant_table_forces_row_level_security(db: asyncpg.Connection) -> None:
    tables = await db.fetch(TENANT_TABLES, list(SCHEMAS.values()))
    assert {t["schema"] for t in tables} == set(SCHEMAS.values())
    owners = {schema: Roles(name).owner for name, schema in SCHEMAS.items()}
    for t in tables:
        where = f"{t['schema']}.{t['name']}"
        assert t["owner"] == owners[t["schema"]], where
        if t["partition"]:  # reached only through its parent: no role may name it
            for service in SCHEMAS:
                for role in (Roles(service).worker, Roles(service).reader):
                    assert not await db.fetchval(
                        "SELECT has_table_privilege($1, $2, 'SELECT')", role, where
                    ), (role, where)
            continue
        if t["name"] == "inbox":  # (event id, tenant) keys and no content (docs/security.md)
            assert not t["enabled"], where
            continue
        assert t["enabled"] and t["forced"], where
        policies = await db.fetch(
            "SELECT polname FROM pg_policy WHERE polrelid = $1::regclass ORDER BY 1", where
        )
        assert [p[0] for p in policies] == [
            "engram_all_tenants",
            "engram_reader",
            "engram_worker",
        ], where


async def test_no_object_of_a_schema_belongs_to_a_login(db: asyncpg.Connection) -> None:
    owned = await db.fetch(
        """SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) AS owner
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'S', 'm')
              AND pg_get_userbyid(c.relowner) NOT LIKE 'engram\\_%\\_owner'""",
        list(SCHEMAS.values()),
    )
    assert [tuple(r) for r in owned] == []
    functions = await db.fetch(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
            WHERE p.pronamespace::regnamespace::text = ANY($1::text[])
              AND pg_get_userbyid(p.proowner) NOT LIKE 'engram\\_%\\_owner'""",
        list(SCHEMAS.values()),
    )
    assert functions == []


@pytest.fixture
async def worker_conns(env: Env) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    conns = {name: await asyncpg.connect(env.login(name)) for name in SCHEMAS}
    yield conns
    for conn in conns.values():
        await conn.close()


@pytest.mark.parametrize("service", sorted(SCHEMAS))
async def test_a_worker_login_has_no_way_out(
    worker_conns: dict[str, asyncpg.Connection], service: str
) -> None:
    conn = worker_conns[service]
    await conn.execute("RESET ROLE")  # back to the login, which is the worker's role
    assert await conn.fetchval("SELECT current_user") == Roles(service).worker
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("SET ROLE postgres")
    for other, schema in SCHEMAS.items():
        if other == service:
            continue
        assert not await conn.fetchval("SELECT has_schema_privilege($1, 'USAGE')", schema), (
            f"{service} reaches {schema}"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"SET ROLE {Roles(other).all_tenants}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(f"CREATE TABLE {SCHEMAS[service]}.intruder (x int)")


@pytest.mark.parametrize("service", sorted(SCHEMAS))
async def test_reads_fail_closed(
    worker_conns: dict[str, asyncpg.Connection], db: asyncpg.Connection, service: str
) -> None:
    """Rows of two tenants in every tenant table; a worker session with no tenant, the
    old wildcard, or a tenant list as a reader sees none of them."""
    schema = SCHEMAS[service]
    tables = [t["name"] for t in await db.fetch(TENANT_TABLES, [schema]) if not t["partition"]]
    conn = worker_conns[service]
    roles = Roles(service)
    for table in tables:
        name = f"{schema}.{table}"
        async with conn.transaction():
            assert await conn.fetchval(f"SELECT count(*) FROM {name}") == 0
        for setting in ("*", "", "acme,*"):
            async with conn.transaction():
                await conn.execute("SELECT set_config('engram.tenant_id', $1, true)", setting)
                await conn.execute(f"SET LOCAL ROLE {roles.reader}")
                assert (
                    await conn.fetchval(
                        f"SELECT count(*) FROM {name} WHERE tenant_id <> $1", "acme"
                    )
                    == 0
                ), (name, setting)


async def test_a_write_outside_the_batch_tenants_is_refused(
    env: Env, db: asyncpg.Connection
) -> None:
    conn = await asyncpg.connect(env.login("memory"))
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('engram.tenant_id', 'acme,globex', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute(
                    """INSERT INTO memory.session_notes
                       (tenant_id, message_id, conversation_id, role, text, occurred_at)
                       VALUES ('initech', gen_random_uuid(), gen_random_uuid(), 'user', 'x',
                               now())"""
                )
    finally:
        await conn.close()


async def test_a_worker_refuses_a_superuser_login(env: Env) -> None:
    with pytest.raises(PrivilegedLogin, match="own login role"):
        await create_pool(env.database_url, worker=True)
