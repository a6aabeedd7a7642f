from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.catalog import migrate
from services.runtime.migrate import SQL_ROOT, MigrationError
from tests.conftest import Servers

pytestmark = pytest.mark.connected


@pytest.fixture
async def empty_db(servers: Servers) -> str:
    name = f"m_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return servers.database_url(name)


async def test_concurrent_runs_apply_each_file_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db, ["ingest"]) for _ in range(4)))
    applied = [name for run in results for name in run]
    expected = sorted(
        f"{folder}/{p.name}"
        for folder in ("runtime", "ingest")
        for p in (SQL_ROOT / folder).glob("*.sql")
    )
    assert sorted(applied) == expected
    conn = await asyncpg.connect(empty_db)
    try:
        rows = await conn.fetch("SELECT name FROM ingest.schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == expected
        # the worker role may write its own schema and nothing else
        await conn.execute("SET ROLE engram_ingest")
        await conn.execute(
            "INSERT INTO ingest.inbox (event_id, tenant_id, subject) "
            "VALUES (gen_random_uuid(), 'acme', 'x')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.intruder (id int)")
    finally:
        await conn.close()
    assert await migrate(empty_db, ["ingest"]) == []  # nothing left to do


async def test_a_changed_applied_file_stops_the_run(empty_db: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(SQL_ROOT, root)
    await migrate(empty_db, ["ingest"], root=root)
    edited = root / "ingest" / "001_init.sql"
    edited.write_text(edited.read_text() + "\n-- changed\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_db, ["ingest"], root=root)


async def test_unknown_service_is_a_clear_error(empty_db: str) -> None:
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        await migrate(empty_db, ["nope"])
