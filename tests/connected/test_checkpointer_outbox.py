"""What the checkpointer announces goes through the runtime's outbox (event_outbox): a
conflict is published once, after its commit, even when a drain had published it and died
before deleting its row; and rows left in the old checkpoint.outbox move over at upgrade."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import orjson
from nats.aio.client import Client as NatsClient

from contracts.state import StateConflict
from services.catalog import migrate
from services.checkpointer.rows import derived_id
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.writer import Delivered, StateWriter
from services.runtime.db import Roles, create_pool
from services.runtime.migrate import SQL_ROOT
from services.runtime.outbox import Outbox, OutboxDrain
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    TENANT,
    add,
    patch,
    run_checkpointer_fixture,
)
from tests.helpers import eventually, stored

ROLES = Roles("checkpointer")  # the writer's rows of every tenant, as a test sets them up

CONFLICT = "engram.state.conflict"


async def commit_a_conflict(env: Env) -> uuid.UUID:
    """A stale patch applied by the real writer: the event id of the conflict it left."""
    pool = await create_pool(env.database_url, role=ROLES.all_tenants)
    writer = StateWriter(CheckpointerSettings(), Outbox("checkpoint"))
    stale = patch([add("/local/a", 2)], expected=0)
    try:
        for seq, event in enumerate((patch([add("/local/a", 1)]), stale), 1):
            async with pool.acquire() as conn, conn.transaction():
                await writer.apply_state(conn, [Delivered(event, seq)])
    finally:
        await pool.close()
    return derived_id("conflict", TENANT, stale.event_id)


async def with_msg_id(nc: NatsClient, msg_id: str) -> list[bytes]:
    """The data of every message on ENGRAM's conflict subject with that Nats-Msg-Id."""
    return [
        m.data for m in await stored(nc, CONFLICT) if (m.headers or {}).get("Nats-Msg-Id") == msg_id
    ]


async def test_a_conflict_is_published_once_when_a_drain_died_before_deleting_it(
    run_checkpointer: Callable[..., AbstractAsyncContextManager[Worker]],
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    conflict_id = await commit_a_conflict(env)
    msg_id = f"{TENANT}:{conflict_id}"  # the tenant's, as every envelope's
    row = await db.fetchrow("SELECT subject, msg_id, data FROM checkpoint.event_outbox")
    assert row is not None and (row["subject"], row["msg_id"]) == (CONFLICT, msg_id)
    # The state a crash leaves: the row committed and published, never deleted.
    await nc.jetstream().publish(
        CONFLICT, bytes(row["data"]), stream="ENGRAM", headers={"Nats-Msg-Id": row["msg_id"]}
    )
    async with run_checkpointer() as worker:
        await worker.component(OutboxDrain).drain()
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM checkpoint.event_outbox"), lambda n: n == 0
        )
    published = await with_msg_id(nc, msg_id)
    assert len(published) == 1
    event = StateConflict.model_validate_json(published[0])
    assert event.event_id == conflict_id and event.payload.expected_version == 0


async def test_rows_left_in_the_old_outbox_move_to_the_runtime_outbox(
    env: Env, tmp_path: Path
) -> None:
    # A database with the checkpointer's files of the previous release (its own outbox)
    # and the runtime's (with the runtime outbox, which an upgrade applies first and the
    # migration runner expects in every schema).
    old = tmp_path / "sql"
    for folder, names in (
        ("runtime", ("001_inbox.sql", "002_inbox_brin.sql", "003_outbox.sql")),
        ("checkpoint", ("001_init.sql", "002_read_version.sql")),
    ):
        (old / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(SQL_ROOT / folder / name, old / folder / name)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(env.servers.admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        dsn = env.servers.database_url(name)
        await migrate(dsn, ["checkpointer"], root=old)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                """INSERT INTO checkpoint.outbox (subject, msg_id, headers, data)
                   VALUES ('engram.state.conflict', 'c-1', '{}', 'one'),
                          ('dlq.checkpointer.state.patch', 'checkpointer:STATE:7',
                           '{"Engram-Dlq-Kind": "poison"}', 'two')"""
            )
            applied = await migrate(dsn, ["checkpointer"])
            # 003 and every file after it (and the runtime's files newer than this test)
            assert [a for a in applied if a.startswith("checkpoint/")] == sorted(
                f"checkpoint/{p.name}"
                for p in (SQL_ROOT / "checkpoint").glob("*.sql")
                if p.name >= "003"
            )
            rows = await conn.fetch("""SELECT subject, msg_id, headers::text, data, failed
                                         FROM checkpoint.event_outbox ORDER BY id""")
            assert [(r[0], r[1], orjson.loads(r[2]), bytes(r[3]), r[4]) for r in rows] == [
                ("engram.state.conflict", "c-1", {}, b"one", None),
                (
                    "dlq.checkpointer.state.patch",
                    "checkpointer:STATE:7",
                    {"Engram-Dlq-Kind": "poison"},
                    b"two",
                    None,
                ),
            ]
            assert await conn.fetchval("SELECT to_regclass('checkpoint.outbox')") is None
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
