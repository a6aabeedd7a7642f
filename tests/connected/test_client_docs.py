"""docs/clients.md's quick start, run verbatim (its only ```python block) as its own
process against the real stack and the real checkpointer; and the blocking client."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest

from contracts.state import StatePatch
from engram_client import NotFound, SyncEngramClient
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import checkpointer_fixture, run_checkpointer_fixture

pytestmark = pytest.mark.connected
__all__ = ["checkpointer_fixture", "run_checkpointer_fixture"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def quick_start() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/clients.md should hold exactly one python block"
    return str(blocks[0])


async def test_the_quick_start_runs_verbatim(checkpointer: Worker, env: Env) -> None:
    code = quick_start()
    assert len([line for line in code.splitlines() if line.strip()]) <= 17
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "NATS_URL": env.nats_login("producer")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(run.communicate(), timeout=60)
    assert run.returncode == 0, err.decode()
    assert out.decode().strip() == "1 {'city': 'Lisbon'}"


def blocking_round_trip(url: str) -> tuple[int, bool]:
    """Plain blocking code, as in a script: publish, wait until applied, read back."""
    with SyncEngramClient.connect(url, tenant_id="acme") as engram:
        patch = engram.events.state_patch("u-9", "bot", merge_patch={"local": {"step": 1}})
        assert isinstance(patch, StatePatch)
        engram.publish(patch)
        for _ in range(200):
            try:
                reply = engram.state_get(user_id="u-9", agent_id="bot")
                return reply.state.version, engram.publish(patch).duplicate
            except NotFound:
                time.sleep(0.05)
        raise AssertionError("never applied")


async def test_the_blocking_client(checkpointer: Worker, env: Env) -> None:
    # In a thread: the worker under test runs on this test's event loop.
    version, duplicate = await asyncio.to_thread(blocking_round_trip, env.nats_login("producer"))
    assert version == 1 and duplicate
