"""The inbox keyed by (tenant, event id) over rows of the id-only inbox it replaced
(sql/runtime/004_inbox_per_tenant.sql): such a row has the tenant '*' and holds its event
id for every tenant until it is pruned; the migration keeps every existing row so."""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.catalog import migrate
from services.runtime.inbox import ANY_TENANT, Inbox, InboxKey
from services.runtime.migrate import SQL_ROOT
from tests.conftest import Env

pytestmark = pytest.mark.connected


async def test_a_row_from_before_the_tenant_key_holds_its_event_id_for_every_tenant(
    db: asyncpg.Connection,
) -> None:
    """Rows migrated from the id-only inbox have the tenant '*': a redelivery of such an
    event, under any tenant and any header, is still a duplicate until the row is pruned."""
    inbox = Inbox("ingest")
    old, new = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        "INSERT INTO ingest.inbox (event_id, tenant_id, subject) VALUES ($1, $2, 'x')",
        old,
        ANY_TENANT,
    )
    keys = [InboxKey("acme", old), InboxKey("acme", new), InboxKey("globex", new)]
    async with db.transaction():
        fresh = await inbox.claim(db, keys, ["x"] * 3)
    assert fresh == {InboxKey("acme", new), InboxKey("globex", new)}
    async with db.transaction():
        assert await inbox.claim(db, keys, ["x"] * 3) == set()  # all three are duplicates now
        await inbox.release(db, [InboxKey("globex", new)])  # given back: that tenant's only
    rows = await db.fetch("SELECT tenant_id, event_id FROM ingest.inbox ORDER BY tenant_id")
    assert [tuple(r) for r in rows] == [(ANY_TENANT, old), ("acme", new)]
    assert await inbox.prune(db, older_than=timedelta(0)) == 2  # '*' rows go like any other


async def test_the_migration_keeps_each_existing_row_under_the_any_tenant(
    env: Env, tmp_path: Path
) -> None:
    """A database of the id-only inbox, with rows in it, migrated: each row is kept with
    the tenant '*', and the key and the claim are per tenant from then on."""
    old = tmp_path / "sql"
    shutil.copytree(SQL_ROOT, old)
    for newer in sorted((old / "runtime").glob("*.sql"))[3:]:  # after 003_outbox.sql
        newer.unlink()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(env.servers.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        dsn = env.servers.database_url(name)
        await migrate(dsn, ["ingest"], root=old)
        conn = await asyncpg.connect(dsn)
        try:
            before = [uuid.uuid4() for _ in range(3)]
            await conn.execute(
                "INSERT INTO ingest.inbox (event_id, subject) SELECT unnest($1::uuid[]), 'x'",
                before,
            )
            assert "runtime/004_inbox_per_tenant.sql" in await migrate(dsn, ["ingest"])
            rows = await conn.fetch("SELECT tenant_id, event_id FROM ingest.inbox")
            assert sorted((r[0], r[1]) for r in rows) == sorted((ANY_TENANT, e) for e in before)
            key = await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'ingest.inbox'::regclass AND contype = 'p'"
            )
            assert key == "PRIMARY KEY (event_id, tenant_id)"
            with pytest.raises(asyncpg.NotNullViolationError):  # no tenant, no row
                await conn.execute(
                    "INSERT INTO ingest.inbox (event_id, subject) VALUES ($1, 'x')", uuid.uuid4()
                )
            # An event applied before the upgrade stays applied, under any tenant.
            keys = [InboxKey("acme", before[0]), InboxKey("acme", uuid.uuid4())]
            async with conn.transaction():
                assert await Inbox("ingest").claim(conn, keys, ["x"] * 2) == {keys[1]}
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
