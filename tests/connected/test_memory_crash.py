"""A consolidation job whose worker is killed (``kill -9``) in the middle of a step, then
run again by another worker, ends exactly like a clean run of the same job.

The memory worker runs as a real process (`engram run memory`). To kill it at a known
point, the test holds a lock on ``memory.consolidations`` so the merge step blocks inside
its transaction after writing its new memories; the worker is killed there, the lock is
released, PostgreSQL rolls the dead session's transaction back (and frees its per-agent
advisory lock), and a second worker takes the job over once its lease expires.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests.conftest import Env
from tests.connected.embedder_fixtures import Running
from tests.connected.memory_fixtures import T0, consolidate, job_done, with_vectors
from tests.connected.test_memory_consolidation import planted
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures", "tests.connected.memory_fixtures"]
ENGRAM = Path(sys.executable).parent / "engram"
CLOCK = T0 + timedelta(days=30)  # both jobs decay to the same moment
WORKER_ENV = {
    "MEMORY_JOB_LEASE_S": "3",
    "MEMORY_JOB_POLL_S": "0.2",
    "MEMORY_FETCH_WAIT_S": "0.5",
    "MEMORY_DRAIN_TIMEOUT_S": "5",
}


def start_worker(env: Env, log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    return subprocess.Popen(
        [str(ENGRAM), "run", "memory"],
        env={
            **base,
            **WORKER_ENV,
            "NATS_URL": env.nats_login("memory"),
            "DATABASE_URL": env.login("memory"),
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def outcome(db: asyncpg.Connection, tenant: str) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        """SELECT text, memory_type, status, origin, importance, access_count,
                  superseded_by IS NOT NULL
             FROM memory.memories WHERE tenant_id = $1 ORDER BY text, origin""",
        tenant,
    )
    return [tuple(r) for r in rows]


async def test_a_job_killed_midway_and_run_again_ends_like_a_clean_run(
    embedder: Running, env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    clean, killed = planted("clean"), planted("killed")
    log = tmp_path / "memory.log"
    worker = start_worker(env, log)
    try:
        await publish(nc, *clean, *killed)
        await with_vectors(db, len(clean) + len(killed))
        first = consolidate(tenant="clean", at=CLOCK)
        await publish(nc, first)
        await job_done(db, first.payload.job_id)

        blocker = await asyncpg.connect(env.database_url)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE memory.consolidations IN EXCLUSIVE MODE")
        job = consolidate(tenant="killed", at=CLOCK)
        await publish(nc, job)
        # the merge step has written its memories and waits for the lock
        await eventually(
            lambda: db.fetchval(
                """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                AND query LIKE '%INSERT INTO memory.consolidations%'"""
            ),
            lambda n: n == 1,
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        await tx.rollback()
        await blocker.close()
        assert (
            await db.fetchval(
                "SELECT count(*) FROM memory.memories WHERE tenant_id = 'killed' "
                "AND origin <> 'write'"
            )
            == 0
        )  # the half step was rolled back

        worker = start_worker(env, log)
        await job_done(db, job.payload.job_id, within=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    row = await db.fetchrow(
        "SELECT attempts, steps_done FROM memory.jobs WHERE tenant_id = 'killed'"
    )
    assert row["attempts"] == 2
    assert row["steps_done"] == ["expire", "merge", "abstract", "summarize", "decay"]
    assert await outcome(db, "killed") == await outcome(db, "clean")
    links = await db.fetch(
        "SELECT tenant_id, relation, count(*) FROM memory.memory_links GROUP BY 1, 2 ORDER BY 2, 1"
    )
    assert [(r[1], r[2]) for r in links if r[0] == "clean"] == [
        (r[1], r[2]) for r in links if r[0] == "killed"
    ]
