"""`engram trigger consolidate`, as a scheduler runs it: a real process against a real
memory worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.service import Worker
from tests.conftest import Env
from tests.connected.memory_fixtures import T0, write
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.memory_fixtures"]
ENGRAM = str(Path(sys.executable).parent / "engram")


async def engram(env: Env, *args: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    proc = await asyncio.create_subprocess_exec(
        ENGRAM,
        *args,
        env={**base, "NATS_URL": env.nats_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_trigger_consolidate_waits_for_the_summary(
    env: Env,
    run_memory: Callable[..., AbstractAsyncContextManager[Worker]],
    nc: NatsClient,
    db: asyncpg.Connection,
) -> None:
    async with run_memory():
        await publish(
            nc, write("a fact", importance=0.5, decay_rate=0.1, at=T0 - timedelta(days=3))
        )
        await eventually(lambda: db.fetchval("SELECT count(*) FROM memory.memories"))
        code, out, err = await engram(
            env,
            "trigger",
            "consolidate",
            "--tenant",
            "acme",
            "--agent",
            "travel-bot",
            "--steps",
            "decay",
            "--wait",
            "30",
        )
    assert code == 0, err
    assert "queued" in err
    summary = json.loads(out)
    assert [s["step"] for s in summary["steps"]] == ["decay"]
    assert summary["steps"][0]["changed"] == 1 and summary["active_after"] == 1
    assert await db.fetchval("SELECT importance FROM memory.memories") < 0.5


async def test_trigger_consolidate_says_what_to_fix(env: Env) -> None:
    code, _, err = await engram(
        env, "trigger", "consolidate", "--tenant", "acme", "--steps", "merge,nap"
    )
    assert code == 2 and "unknown step 'nap'" in err and "expire" in err
