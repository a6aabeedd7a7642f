"""Retention drops old months; the chains stay verifiable from their retention records.
Also the `engram audit` commands themselves (typer's CliRunner, in a thread: each command
runs its own event loop, as on the command line)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from services.audit.cli import audit_cli
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import append_at, append_now, records_for, tamper, verify

pytestmark = pytest.mark.connected


def month_start(now: datetime, months_back: int) -> datetime:
    index = now.year * 12 + now.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def engram_audit(env: Env, *args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, audit_cli, list(args), env={"DATABASE_URL": env.database_url}
    )


@pytest.fixture
async def old_trail(env: Env) -> None:
    """acme: 10 rows five months ago, 10 four months ago, 5 now; globex: 5 four months ago."""
    now = datetime.now(UTC)
    cid = uuid4()
    acme = [f.message(cid, content=f"m{i}") for i in range(25)]
    globex = [f.message(uuid4(), tenant="globex") for _ in range(5)]
    await append_at(env, records_for(acme[:10]), month_start(now, 5) + timedelta(days=3))
    await append_at(
        env,
        records_for(acme[10:20], first_seq=11) + records_for(globex, first_seq=21),
        month_start(now, 4) + timedelta(days=3),
    )
    await append_now(env, records_for(acme[20:], first_seq=26))
    assert (await verify(env)).ok


async def test_retain_drops_old_months_and_chains_stay_verifiable(
    old_trail: None, env: Env, db: asyncpg.Connection, tmp_path: Path
) -> None:
    dry = await engram_audit(env, "retain", "--months", "2", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would drop") == 2
    assert await db.fetchval("SELECT count(*) FROM audit.events") == 30

    done = await engram_audit(env, "retain", "--months", "2", "--yes")
    assert done.exit_code == 0, done.output
    assert "10 rows of 1 chain(s)" in done.output and "15 rows of 2 chain(s)" in done.output

    ranges = await db.fetch(
        "SELECT tenant_id, first_position, last_position, rows FROM audit.retained_ranges "
        "ORDER BY tenant_id, last_position"
    )
    assert [tuple(r) for r in ranges] == [
        ("acme", 1, 10, 10),
        ("acme", 11, 20, 10),
        ("globex", 1, 5, 5),
    ]
    acme = await db.fetch(
        "SELECT position, type FROM audit.events WHERE tenant_id = 'acme' ORDER BY position"
    )
    assert [r["position"] for r in acme] == list(range(21, 28))
    assert [r["type"] for r in acme[-2:]] == ["audit.retained", "audit.retained"]

    result = await verify(env)
    assert result.ok, result.breaks
    assert result.rows == 8 and result.chains == 2  # acme 21..27, globex's record at 6
    cli = await engram_audit(env, "verify")
    assert cli.exit_code == 0 and "OK" in cli.output, cli.output

    # An export starts at the retained position and verifies offline.
    export = tmp_path / "acme.jsonl"
    cli = await engram_audit(env, "export", "--tenant", "acme", "--out", str(export))
    assert cli.exit_code == 0 and "position 27" in cli.output, cli.output
    cli = await engram_audit(env, "verify", "--file", str(export))
    assert cli.exit_code == 0 and "7 rows" in cli.output, cli.output

    # The first row after the retained range is gone: verify starts at 21 and says so.
    await tamper(db, "DELETE FROM audit.events WHERE tenant_id = 'acme' AND position = 21")
    cli = await engram_audit(env, "verify", "--tenant", "acme")
    assert cli.exit_code == 1
    assert "position 21" in cli.output and "missing rows" in cli.output, cli.output


async def test_cli_reports_what_to_fix(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "not-an-export.jsonl"
    bad.write_text('{"hello": 1}\n')
    cli = await engram_audit(env, "verify", "--file", str(bad))
    assert cli.exit_code == 2 and "not an engram-audit-export file" in cli.output
    cli = await engram_audit(env, "verify", "--since", "last tuesday")
    assert cli.exit_code == 2 and "--since 'last tuesday' is not a date" in cli.output
    cli = await engram_audit(env, "retain", "--months", "0")
    assert cli.exit_code == 2
    empty = await engram_audit(env, "verify")
    assert empty.exit_code == 0 and "0 rows" in empty.output
