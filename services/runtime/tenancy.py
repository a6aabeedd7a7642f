"""Least privilege in PostgreSQL, applied by ``engram migrate`` after each service's files.

The walls are the same for every schema, so the runtime keeps them rather than each
service's SQL (docs/security.md):

- the schema and everything in it belongs to ``engram_<svc>_owner`` (NOLOGIN); the worker
  logs in as ``engram_<svc>``, which owns nothing and can only SET ROLE to its reader and
  to its cross-tenant role (memberships without INHERIT);
- every table with a ``tenant_id`` column has row-level security enabled **and forced**,
  with exactly the policies below, all failing closed when no tenant is set:

  ============================  =====================================================
  ``engram_worker`` (worker)    the tenants listed in ``engram.tenant_id`` (a batch's)
  ``engram_reader`` (reader,    exactly the one tenant in ``engram.tenant_id``; reads
  owner)                        only (the owner: its SECURITY DEFINER functions)
  ``engram_all_tenants``        every row: the cross-tenant jobs, by an explicit
                                ``SET LOCAL ROLE``
  ============================  =====================================================

- the runtime's ``inbox`` is keyed by (event id, tenant) but holds no content: it has no
  row-level security, so the claim sees the rows from before migration runtime/004 (tenant
  ``*``, valid for every tenant) and the prune spans tenants;
- partitions get no privileges: they are reached only through their parent, whose policy
  applies.

Policies of tenant tables that a migration file created under other names are dropped:
these are the only ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.runtime.db import Roles, quote_ident

ROLES_SQL = """
DO $$ BEGIN
    CREATE ROLE {owner} NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE ROLE {reader} NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE ROLE {all_tenants} NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE ROLE {worker} LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER ROLE {worker} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
ALTER ROLE {owner} NOLOGIN NOBYPASSRLS;
GRANT {reader} TO {worker} WITH INHERIT FALSE, SET TRUE;
GRANT {all_tenants} TO {worker} WITH INHERIT FALSE, SET TRUE;
"""

# Relations of the schema: tables (plain and partitioned), views, free-standing sequences
# (one owned by a column follows its table).
RELATIONS = """
SELECT c.oid::regclass::text AS name, c.relkind::text AS kind, c.relispartition AS partition,
       pg_get_userbyid(c.relowner) AS owner,
       c.relname <> 'inbox' AND EXISTS (
           SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AS tenant_scoped,
       c.relname = 'schema_migrations' AS bookkeeping
  FROM pg_class c
 WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND NOT (c.relkind = 'S' AND EXISTS (
       SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype IN ('a', 'i')))
 ORDER BY c.relname
"""
ROUTINES = """
SELECT p.oid::regprocedure::text AS name FROM pg_proc p
 WHERE p.pronamespace = $1::regnamespace AND p.proowner <> to_regrole($2)
"""
TYPES = """
SELECT t.oid::regtype::text AS name FROM pg_type t
  LEFT JOIN pg_class c ON c.oid = t.typrelid
 WHERE t.typnamespace = $1::regnamespace AND t.typowner <> to_regrole($2)
   AND t.typtype IN ('e', 'd', 'c', 'r') AND (c.oid IS NULL OR c.relkind = 'c')
"""
POLICIES = "SELECT polname FROM pg_policy WHERE polrelid = $1::regclass"

# The list a batch writer sets; evaluated once per statement (an InitPlan), not per row.
BATCH_TENANTS = "(SELECT string_to_array(current_setting('engram.tenant_id', true), ','))::text[]"
ONE_TENANT = "current_setting('engram.tenant_id', true)"


@dataclass(frozen=True)
class Policy:
    name: str
    statement: str  # CREATE POLICY with {table} and the role names to fill in


STANDARD_POLICIES = (
    Policy(
        "engram_worker",
        "CREATE POLICY engram_worker ON {table} TO {worker} "
        f"USING (tenant_id = ANY ({BATCH_TENANTS})) "
        f"WITH CHECK (tenant_id = ANY ({BATCH_TENANTS}))",
    ),
    Policy(
        "engram_reader",
        "CREATE POLICY engram_reader ON {table} FOR SELECT TO {reader}, {owner} "
        f"USING (tenant_id = {ONE_TENANT})",
    ),
    Policy(
        "engram_all_tenants",
        "CREATE POLICY engram_all_tenants ON {table} TO {all_tenants} "
        "USING (true) WITH CHECK (true)",
    ),
)


def _names(roles: Roles) -> dict[str, str]:
    return {
        "owner": quote_ident(roles.owner),
        "worker": quote_ident(roles.worker),
        "reader": quote_ident(roles.reader),
        "all_tenants": quote_ident(roles.all_tenants),
    }


async def create_roles(conn: asyncpg.Connection, roles: Roles) -> None:
    await conn.execute(ROLES_SQL.format(**_names(roles)))


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> None:
    # ALTER ROLE takes no parameters: format() quotes the literal on the server.
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password
    )
    await conn.execute(statement)


async def secure_schema(
    conn: asyncpg.Connection, schema: str, roles: Roles, privileges: str
) -> None:
    """Ownership, privileges and row-level security of everything in ``schema``; run in
    one transaction after its migrations (idempotent: a second run changes nothing)."""
    names = _names(roles)
    owner, worker, reader, cross = (names[k] for k in ("owner", "worker", "reader", "all_tenants"))
    quoted = quote_ident(schema)
    await conn.execute(f"""
        ALTER SCHEMA {quoted} OWNER TO {owner};
        REVOKE ALL ON SCHEMA {quoted} FROM PUBLIC;
        GRANT USAGE ON SCHEMA {quoted} TO {worker}, {reader}, {cross};
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted} TO {worker}, {cross};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {quoted} TO {worker}, {reader}, {cross};
    """)
    for row in await conn.fetch(ROUTINES, schema, roles.owner):
        await conn.execute(f"ALTER ROUTINE {row['name']} OWNER TO {owner}")
    for row in await conn.fetch(TYPES, schema, roles.owner):
        await conn.execute(f"ALTER TYPE {row['name']} OWNER TO {owner}")
    for rel in await conn.fetch(RELATIONS, schema):
        table = rel["name"]
        if rel["owner"] != roles.owner:
            await conn.execute(f"ALTER TABLE {table} OWNER TO {owner}")
        if rel["partition"]:
            await conn.execute(f"REVOKE ALL ON {table} FROM {worker}, {reader}, {cross}")
            continue
        if rel["kind"] == "v":
            # A view reads with its owner's rights, and the owner is walled in to one
            # tenant: the caller's walls apply instead (PostgreSQL 15+).
            await conn.execute(f"ALTER VIEW {table} SET (security_invoker = true)")
        if rel["bookkeeping"]:
            await conn.execute(f"GRANT SELECT ON {table} TO {worker}, {reader}")
        elif rel["kind"] != "S":
            await conn.execute(f"GRANT {privileges} ON {table} TO {worker}, {cross}")
            await conn.execute(f"GRANT SELECT ON {table} TO {reader}")
        if rel["tenant_scoped"] and rel["kind"] in ("r", "p"):
            await _isolate_tenants(conn, table, names)
        elif rel["kind"] in ("r", "p"):
            await _open(conn, table)


async def _open(conn: asyncpg.Connection, table: str) -> None:
    # A table that is not (or no longer) tenant-scoped: no policy from an earlier run or a
    # migration file keeps rows hidden.
    await conn.execute(
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY; "
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"
    )
    for row in await conn.fetch(POLICIES, table):
        await conn.execute(f"DROP POLICY {quote_ident(row['polname'])} ON {table}")


async def _isolate_tenants(conn: asyncpg.Connection, table: str, names: dict[str, str]) -> None:
    await conn.execute(
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; "
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"
    )
    present = {row["polname"] for row in await conn.fetch(POLICIES, table)}
    wanted = {p.name for p in STANDARD_POLICIES}
    for stale in sorted(present - wanted):
        await conn.execute(f"DROP POLICY {quote_ident(stale)} ON {table}")
    for policy in STANDARD_POLICIES:
        if policy.name not in present:
            await conn.execute(policy.statement.format(table=table, **names))
