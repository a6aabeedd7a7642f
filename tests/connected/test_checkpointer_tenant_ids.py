"""Checkpoint ids are chosen by producers, so they are per tenant: two tenants checkpoint
under the SAME checkpoint_id and each restores, reads and keeps its own (the real worker,
NATS and PostgreSQL); retention of one tenant's checkpoint leaves the other's alone; and
within one tenant a checkpoint id names one checkpoint. Upgrading across checkpoint/004
keeps what the previous release stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.state_queries import StateGetReply
from services.catalog import migrate
from services.checkpointer.prune import prune
from services.runtime.db import Roles, create_pool
from services.runtime.dlq import HEADER_REASON
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import (  # noqa: F401
    add,
    checkpoint,
    checkpointer_fixture,
    patch,
    request,
    restore,
    run_checkpointer_fixture,
    wait_version,
)
from tests.connected.upgrade_fixtures import key_columns, previous_release
from tests.helpers import dead_letters, dlq_depth, publish

pytestmark = pytest.mark.connected

ACME, GLOBEX = "acme", "globex"


async def local(nc: NatsClient, tenant: str, **at: Any) -> dict[str, Any]:
    reply = await request(nc, "query.state.get", StateGetReply, tenant_id=tenant, **at)
    assert reply.status == "ok", reply
    return dict(reply.state.local)


async def stored(db: asyncpg.Connection, checkpoint_id: UUID) -> dict[str, tuple[int, str]]:
    rows = await db.fetch(
        "SELECT tenant_id, version, retention FROM checkpoint.checkpoints WHERE checkpoint_id = $1",
        checkpoint_id,
    )
    return {r["tenant_id"]: (r["version"], r["retention"]) for r in rows}


async def test_two_tenants_checkpoint_under_one_id_and_each_restores_its_own(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cp = uuid4()
    acme = [
        patch([add("/local/step", 1)], tenant=ACME),  # v1
        checkpoint(cp, tenant=ACME, retention="permanent", label="acme's"),  # of v1
        patch([add("/local/step", 2)], tenant=ACME),  # v2
    ]
    globex = [
        patch([add("/local/colour", "red")], tenant=GLOBEX),  # v1
        patch([add("/local/colour", "blue")], tenant=GLOBEX),  # v2
        checkpoint(cp, tenant=GLOBEX, label="globex's"),  # of v2
        patch([add("/local/colour", "green")], tenant=GLOBEX),  # v3
    ]
    # interleaved: both tenants' checkpoints under cp may be in one batch
    await publish(nc, acme[0], globex[0], globex[1], acme[1], globex[2], acme[2], globex[3])
    await wait_version(db, 2, tenant=ACME)
    await wait_version(db, 3, tenant=GLOBEX)
    assert await stored(db, cp) == {ACME: (1, "permanent"), GLOBEX: (2, "temporary")}

    await publish(
        nc,
        restore(checkpoint_id=cp, tenant=GLOBEX, reason="back to blue"),
        restore(checkpoint_id=cp, tenant=ACME, reason="back to step 1"),
    )
    await wait_version(db, 3, tenant=ACME)
    await wait_version(db, 4, tenant=GLOBEX)
    assert await local(nc, ACME) == {"step": 1}
    assert await local(nc, GLOBEX) == {"colour": "blue"}
    # time travel reads each tenant's own history
    assert await local(nc, ACME, at_version=2) == {"step": 2}
    assert await local(nc, GLOBEX, at_version=3) == {"colour": "green"}
    restored = await db.fetch(
        "SELECT tenant_id, version, restored_from_checkpoint FROM checkpoint.transitions "
        "WHERE kind = 'restore' ORDER BY tenant_id"
    )
    assert [tuple(r) for r in restored] == [(ACME, 3, cp), (GLOBEX, 4, cp)]
    assert await dlq_depth(nc) == 0


async def test_a_tenant_uses_a_checkpoint_id_once_and_never_restores_anothers(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cp = uuid4()
    await publish(
        nc,
        patch([add("/local/step", 1)], tenant=ACME),
        checkpoint(cp, tenant=ACME),
        patch([add("/local/other", 1)], tenant=ACME, agent="other-bot"),
        patch([add("/local/step", 1)], tenant=GLOBEX),
    )
    await wait_version(db, 1, tenant=ACME, agent="other-bot")
    await wait_version(db, 1, tenant=GLOBEX)
    # acme's cp again (another of its states); globex restoring a cp it never took
    await publish(
        nc,
        checkpoint(cp, tenant=ACME, agent="other-bot"),
        restore(checkpoint_id=cp, tenant=GLOBEX),
    )
    dead = await dead_letters(nc, expect=2)
    reasons = {subject: headers.get(HEADER_REASON, "") for subject, headers, _ in dead}
    assert set(reasons) == {"dlq.checkpointer.state.checkpoint", "dlq.checkpointer.state.restore"}
    taken = reasons["dlq.checkpointer.state.checkpoint"]
    assert f"checkpoint {cp} exists already in tenant 'acme'" in taken
    missing = reasons["dlq.checkpointer.state.restore"]
    assert f"checkpoint {cp} does not exist for this state" in missing
    assert await stored(db, cp) == {ACME: (1, "temporary")}
    assert await local(nc, GLOBEX) == {"step": 1}


async def test_retention_of_one_tenants_checkpoint_keeps_the_others_of_the_same_id(
    checkpointer: Worker, nc: NatsClient, db: asyncpg.Connection, env: Env
) -> None:
    cp, expired = uuid4(), datetime.now(UTC) - timedelta(days=1)
    await publish(
        nc,
        patch([add("/local/step", 1)], tenant=ACME),
        checkpoint(cp, tenant=ACME, expires_at=expired),  # temporary and expired: pruned
        patch([add("/local/step", 7)], tenant=GLOBEX),
        checkpoint(cp, tenant=GLOBEX, retention="permanent"),
        patch([add("/local/step", 8)], tenant=GLOBEX),
    )
    await wait_version(db, 2, tenant=GLOBEX)
    await wait_version(db, 1, tenant=ACME)
    assert await stored(db, cp) == {ACME: (1, "temporary"), GLOBEX: (1, "permanent")}
    roles = Roles("checkpointer")
    pool = await create_pool(env.database_url, role=roles.all_tenants)
    try:
        report = await prune(pool, 30, roles=roles)
    finally:
        await pool.close()
    assert report.checkpoints == 1
    assert await stored(db, cp) == {GLOBEX: (1, "permanent")}
    await publish(nc, restore(checkpoint_id=cp, tenant=GLOBEX))
    await wait_version(db, 3, tenant=GLOBEX)
    assert await local(nc, GLOBEX) == {"step": 7}


async def test_checkpoints_and_conflicts_are_kept_across_the_upgrade(
    env: Env, tmp_path: Path
) -> None:
    cp, conflict = uuid4(), uuid4()
    async with previous_release(env, tmp_path, "checkpointer", "checkpoint", "004") as url:
        conn = await asyncpg.connect(url)
        try:
            assert await key_columns(conn, "checkpoint.checkpoints") == [["checkpoint_id"]]
            acme = await state_row(conn, ACME)
            await checkpoint_row(conn, ACME, acme, cp)
            await conn.execute(
                """INSERT INTO checkpoint.conflicts (conflict_id, state_id, tenant_id, event_id,
                       event_type, expected_version, current_version, payload)
                   VALUES ($1, $2, 'acme', gen_random_uuid(), 'state.patch', 0, 1, '{}')""",
                conflict,
                acme,
            )

            assert "checkpoint/004_ids_per_tenant.sql" in await migrate(url, ["checkpointer"])

            assert await key_columns(conn, "checkpoint.checkpoints") == [
                ["tenant_id", "checkpoint_id"]
            ]
            assert await key_columns(conn, "checkpoint.conflicts") == [["tenant_id", "conflict_id"]]
            await checkpoint_row(conn, GLOBEX, await state_row(conn, GLOBEX), cp)
            rows = await conn.fetch(
                "SELECT tenant_id, state_id FROM checkpoint.checkpoints WHERE checkpoint_id = $1 "
                "ORDER BY tenant_id",
                cp,
            )
            assert [r["tenant_id"] for r in rows] == [ACME, GLOBEX] and rows[0]["state_id"] == acme
            assert await conn.fetchval("SELECT conflict_id FROM checkpoint.conflicts") == conflict
            with pytest.raises(asyncpg.UniqueViolationError):  # one id, one checkpoint a tenant
                await checkpoint_row(conn, ACME, acme, cp)
        finally:
            await conn.close()


async def state_row(conn: asyncpg.Connection, tenant: str) -> int:
    state_id: int = await conn.fetchval(
        """INSERT INTO checkpoint.agent_states (tenant_id, user_id, agent_id, version,
               state_hash, size_bytes)
           VALUES ($1, 'u-1', 'bot', 1, $2, 2) RETURNING state_id""",
        tenant,
        bytes(32),
    )
    return state_id


async def checkpoint_row(
    conn: asyncpg.Connection, tenant: str, state_id: int, checkpoint_id: UUID
) -> None:
    await conn.execute(
        """INSERT INTO checkpoint.checkpoints (checkpoint_id, state_id, tenant_id, version,
               checkpoint_type, retention, compression, size_bytes, snapshot, state_hash)
           VALUES ($1, $2, $3, 1, 'manual', 'permanent', 'none', 2, '{}', $4)""",
        checkpoint_id,
        state_id,
        tenant,
        bytes(32),
    )
