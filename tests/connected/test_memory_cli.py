"""`engram trigger consolidate`, as a scheduler runs it: a real process against a real
memory worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.cli_run import engram
from tests.connected.memory_fixtures import a_fading_fact, trigger_decay

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.memory_fixtures"]


async def test_trigger_consolidate_waits_for_the_summary(
    env: Env,
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    async with run_memory():
        await a_fading_fact(nc, db)
        ran = await engram(*trigger_decay("--wait", "30"), env={"NATS_URL": env.nats_url})
    assert ran.code == 0, ran.stderr
    assert "queued" in ran.stderr
    summary = json.loads(ran.stdout)
    assert [s["step"] for s in summary["steps"]] == ["decay"]
    assert summary["steps"][0]["changed"] == 1 and summary["active_after"] == 1
    assert await db.fetchval("SELECT importance FROM memory.memories") < 0.5


async def test_trigger_consolidate_says_what_to_fix(env: Env) -> None:
    ran = await engram(
        "trigger",
        "consolidate",
        "--tenant",
        "acme",
        "--steps",
        "merge,nap",
        env={"NATS_URL": env.nats_url},
    )
    assert ran.code == 2 and "unknown step 'nap'" in ran.stderr and "expire" in ran.stderr
