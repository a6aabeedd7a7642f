"""Running the `engram` command as a user does, from async tests: a real process, its
exit code and its output (without blocking the event loop a worker in the test runs on)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Env

ENGRAM = str(Path(sys.executable).parent / "engram")


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> object:
        return json.loads(self.stdout)


def urls(env: Env) -> dict[str, str]:
    """The admin's NATS_URL and the superuser's DATABASE_URL: an operator's."""
    return {"NATS_URL": env.nats_url, "DATABASE_URL": env.database_url}


def without_urls() -> dict[str, str]:
    """The test's environment less NATS_URL and DATABASE_URL: what a command finds of
    the servers is what the test gives it."""
    return {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}


async def engram(*args: str, env: dict[str, str], timeout: float = 60.0) -> Ran:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        ENGRAM,
        *args,
        env={**without_urls(), **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)
