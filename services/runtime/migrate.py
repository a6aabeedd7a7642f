"""Forward-only migrations: ``sql/<schema>/NNN_name.sql``, one schema and one role per service.

Safe to run from many pods at once: one session-level advisory lock serializes runners,
each file commits with its bookkeeping row in one transaction, and a changed file that
was already applied stops the run (add a new file instead).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.runtime.db import Connection, Roles, quote_ident
from services.runtime.tenancy import create_roles, secure_schema, set_password

SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"
SHARED_DIR = "runtime"  # applied inside every service schema (the inbox)
LOCK_KEY = 0x656E6772616D  # "engram"
FILE_NAME = re.compile(r"^\d{3}_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class ServiceSchema:
    service: str
    schema: str
    privileges: str = "SELECT, INSERT, UPDATE, DELETE"

    @property
    def roles(self) -> Roles:
        return Roles(self.service)

    @property
    def role(self) -> str:
        return self.roles.worker


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    name: str  # e.g. "ingest/001_init.sql"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(target: ServiceSchema, root: Path = SQL_ROOT) -> list[Migration]:
    found: list[Migration] = []
    for folder in (SHARED_DIR, target.schema):
        for path in sorted((root / folder).glob("*.sql")):
            if not FILE_NAME.match(path.name):
                raise MigrationError(f"{path}: migration files are named NNN_name.sql")
            found.append(Migration(f"{folder}/{path.name}", path.read_text()))
    return found


Progress = Callable[[str, str, str], None]  # (service, migration name, "applied" | "ok")


async def migrate(
    dsn: str,
    targets: Sequence[ServiceSchema],
    *,
    root: Path = SQL_ROOT,
    progress: Progress | None = None,
    passwords: Mapping[str, str] | None = None,
) -> list[str]:
    """Apply what is missing in each target's schema; returns the names applied now.
    ``passwords``: by service, the password its worker's login role is given."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            for target in targets:
                applied_now += await _migrate_one(conn, target, root, progress)
                if password := (passwords or {}).get(target.service):
                    await set_password(conn, target.role, password)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
    return applied_now


async def pending(conn: Connection, target: ServiceSchema, root: Path = SQL_ROOT) -> list[str]:
    """The migrations of ``target`` not applied yet (all of them when its schema has none);
    needs only SELECT on its ``schema_migrations``, which its worker's role has."""
    table = f"{quote_ident(target.schema)}.schema_migrations"
    if not await conn.fetchval("SELECT to_regclass($1)", table):
        return [migration.name for migration in discover(target, root)]
    done = {row["name"] for row in await conn.fetch(f"SELECT name FROM {table}")}
    return [migration.name for migration in discover(target, root) if migration.name not in done]


async def _migrate_one(
    conn: asyncpg.Connection, target: ServiceSchema, root: Path, progress: Progress | None
) -> list[str]:
    schema = quote_ident(target.schema)
    await create_roles(conn, target.roles)
    await conn.execute(f"""
        CREATE SCHEMA IF NOT EXISTS {schema};
        CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
            name text PRIMARY KEY,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now());
    """)
    done: dict[str, str] = {
        row["name"]: row["checksum"]
        for row in await conn.fetch(f"SELECT name, checksum FROM {schema}.schema_migrations")
    }
    applied: list[str] = []
    for migration in discover(target, root):
        if migration.name in done:
            if done[migration.name] != migration.checksum:
                raise MigrationError(
                    f"{target.schema}: {migration.name} changed after it was applied; "
                    "migrations are forward-only, put the change in a new file"
                )
            if progress:
                progress(target.service, migration.name, "ok")
            continue
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}, public")
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (name, checksum) VALUES ($1, $2)",
                migration.name,
                migration.checksum,
            )
        applied.append(migration.name)
        if progress:
            progress(target.service, migration.name, "applied")
    async with conn.transaction():
        await secure_schema(conn, target.schema, target.roles, target.privileges)
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.event_outbox"):
            # The runtime's outbox drain deletes what it published, whatever the
            # service's own privileges.
            await conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.event_outbox "
                f"TO {quote_ident(target.role)}, {quote_ident(target.roles.all_tenants)}"
            )
    return applied
