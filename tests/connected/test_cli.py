"""The `engram` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests import factories as f
from tests.conftest import Env
from tests.connected.cli_run import without_urls
from tests.connected.dev_process import (
    run_engram,
    servers_under,
    start_engram,
    stop,
    wait_for_output,
)
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected


@pytest.mark.slow
def test_dev_starts_its_own_servers_shows_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "dev.log"
    for start in (1, 2):  # the second start reuses the data
        proc = start_engram("dev", "--demo", "--data-dir", str(data), "-s", "ingest", log=log)
        try:
            # Not a terminal: `engram dev` prints a line when a worker's counters move.
            wait_for_output(proc, log, "ingest: applied 13,")
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
    proc = start_engram(
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
    out = run_engram("status", "--exact", env={**os.environ, **urls})
    assert out.returncode == 0, out.stderr
    assert "ingest.messages" in out.stdout
    bad = run_engram("run", "nope", env={**os.environ, **urls})
    assert bad.returncode == 2
    assert "unknown service 'nope'" in bad.stderr
    lost = run_engram("status", "--data-dir", str(tmp_path), env=without_urls())
    assert lost.returncode == 2
    assert "set NATS_URL and DATABASE_URL, or start `engram dev`" in lost.stderr
