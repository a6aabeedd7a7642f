"""`engram state prune` (the typer app the runtime's CLI mounts as `state`)."""

from __future__ import annotations

import asyncio

import asyncpg
from typer.testing import CliRunner

from services.checkpointer.cli import state_cli
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.writer import Delivered, StateWriter
from services.runtime.db import Roles, create_pool
from services.runtime.outbox import Outbox
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import add, patch

ROLES = Roles("checkpointer")  # the writer's rows of every tenant, as a test sets them up


def test_prune_command_reports_progress_and_removes_history(env: Env) -> None:
    async def fill() -> None:
        pool = await create_pool(env.database_url, role=ROLES.all_tenants)
        writer = StateWriter(CheckpointerSettings(snapshot_every=3), Outbox("checkpoint"))
        events = [patch([add("/local/n", i)]) for i in range(7)]
        async with pool.acquire() as conn, conn.transaction():
            await writer.apply_state(conn, [Delivered(e, i) for i, e in enumerate(events)])
        await pool.close()

    async def count() -> tuple[int, int, int]:
        conn = await asyncpg.connect(env.database_url)
        try:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM checkpoint.transitions),
                          (SELECT count(*) FROM checkpoint.checkpoints),
                          (SELECT history_floor_version FROM checkpoint.agent_states)"""
            )
            return row[0], row[1], row[2]
        finally:
            await conn.close()

    asyncio.run(fill())
    result = CliRunner().invoke(
        state_cli, ["prune", "--keep-days", "0"], env={"DATABASE_URL": env.database_url}
    )
    assert result.exit_code == 0, result.output
    assert "pruned 1 states: 7 transitions and 2 checkpoints removed" in result.output
    assert asyncio.run(count()) == (0, 0, 7)
