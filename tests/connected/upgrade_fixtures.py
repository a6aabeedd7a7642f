"""A database migrated to a previous release's files of a service, to upgrade in a test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from services.catalog import migrate
from services.runtime.migrate import SQL_ROOT
from tests.conftest import Env


@asynccontextmanager
async def previous_release(
    env: Env, tmp_path: Path, service: str, folder: str, before: str
) -> AsyncIterator[str]:
    """The URL of a new database with ``service``'s files of ``sql/<folder>`` older than
    ``before`` applied (and every runtime file: an upgrade applies those first); dropped
    afterwards. ``migrate(url, [service])`` then upgrades it to this release."""
    old = tmp_path / "sql"
    for name, keep in (("runtime", lambda _: True), (folder, lambda n: n < before)):
        (old / name).mkdir(parents=True)
        for path in sorted((SQL_ROOT / name).glob("*.sql")):
            if keep(path.name):
                shutil.copy(path, old / name / path.name)
    database = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(env.servers.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {database}")
        url = env.servers.database_url(database)
        await migrate(url, [service], root=old)
        yield url
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.close()


async def key_columns(conn: asyncpg.Connection, table: str, kind: str = "p") -> list[list[str]]:
    """The columns of each constraint of ``kind`` (p: primary key, f: foreign key)."""
    rows = await conn.fetch(
        """SELECT array_agg(a.attname::text ORDER BY k.ord) AS columns
             FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
            WHERE c.conrelid = $1::regclass AND c.contype::text = $2
            GROUP BY c.oid ORDER BY c.conname""",
        table,
        kind,
    )
    return [list(r["columns"]) for r in rows]
