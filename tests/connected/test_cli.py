"""The `engram` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
from nats.aio.client import Client as NatsClient

from tests import factories as f
from tests.conftest import Env
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
ENGRAM = str(Path(sys.executable).parent / "engram")


def engram(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    return subprocess.Popen(
        [ENGRAM, *args],
        env={**base, **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def servers_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmdline and proc.info["name"] in ("nats-server", "postgres"):
            found.append(proc)
    return found


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 60) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
def test_dev_starts_its_own_servers_shows_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "dev.log"
    for start in (1, 2):  # the second start reuses the data
        proc = engram("dev", "--demo", "--data-dir", str(data), "-s", "ingest", log=log)
        try:
            deadline = time.monotonic() + 90
            # Not a terminal: `engram dev` prints a line when a worker's counters move.
            while "ingest: applied 13," not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            env_file = (data / "engram.env").read_text()
            assert "NATS_URL=nats://engram_admin:" in env_file  # the admin, for tools
            assert "DATABASE_URL=postgresql://" in env_file
        finally:
            code = stop(proc)
        assert code == 0, log.read_text()
        assert servers_under(data) == [], "servers left running after Ctrl-C"
        assert not (data / "engram.env").exists()
        output = log.read_text()
        if start == 2:
            assert "applied" not in output.split("started ingest")[0]  # migrations kept


@pytest.mark.slow
async def test_run_drains_on_sigterm(
    env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = f.conversation(__import__("uuid").uuid4())
    events = [cid] + [f.message(cid.payload.conversation_id, content=f"m{i}") for i in range(2000)]
    await publish(nc, *events)
    log = tmp_path / "run.log"
    proc = engram(
        "run",
        "ingest",
        log=log,
        env={
            "NATS_URL": env.nats_login("ingest"),
            "DATABASE_URL": env.login("ingest"),
            "INGEST_BATCH_SIZE": "100",
        },
    )
    try:
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM ingest.messages"), lambda n: n > 0, timeout=30
        )
    finally:
        code = stop(proc, signal.SIGTERM)
    assert code == 0, log.read_text()
    stored = await db.fetchval("SELECT count(*) FROM ingest.messages")
    info = await nc.jetstream().consumer_info("CHAT", "ingest")
    # Whatever was committed was acked: nothing is left waiting for an ack timeout.
    assert info.num_ack_pending == 0, log.read_text()
    assert info.delivered.stream_seq - info.num_ack_pending >= stored
    inbox = await db.fetchval("SELECT count(*) FROM ingest.inbox")
    assert inbox == stored + 1  # the conversation, and each stored message once


def test_status_and_errors_speak_plainly(env: Env, tmp_path: Path) -> None:
    urls = {"NATS_URL": env.nats_url, "DATABASE_URL": env.database_url}
    out = subprocess.run(
        [ENGRAM, "status", "--exact"],
        env={**os.environ, **urls},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ingest.messages" in out.stdout
    bad = subprocess.run(
        [ENGRAM, "run", "nope"],
        env={**os.environ, **urls},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "unknown service 'nope'" in bad.stderr
    lost = subprocess.run(
        [ENGRAM, "status", "--data-dir", str(tmp_path)],
        env={k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lost.returncode == 2
    assert "set NATS_URL and DATABASE_URL, or start `engram dev`" in lost.stderr
