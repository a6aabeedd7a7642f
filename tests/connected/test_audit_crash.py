"""`kill -9` the audit writer (a real `engram run audit` process) three times while it
records a backlog on every stream; after each restart the redelivered messages must be
recognized, so that in the end each message is recorded exactly once and every chain
verifies."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from services.runtime.bus import STREAMS
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import recorded, verify

pytestmark = pytest.mark.connected

N_EVENTS = 4_000
KILL_AT = (0.2, 0.45, 0.7)
ENGRAM = Path(sys.executable).parent / "engram"
WORKER_ENV = {
    "AUDIT_BATCH_SIZE": "100",  # small batches, so a kill lands mid-stream
    "AUDIT_ACK_WAIT_S": "2",  # a killed worker's messages come back soon
    "AUDIT_FETCH_WAIT_S": "0.5",
    "AUDIT_DRAIN_TIMEOUT_S": "5",
}


class Writer:
    def __init__(self, env: Env, log: Path) -> None:
        self.env = {
            **os.environ,
            "NATS_URL": env.nats_login("audit"),
            "DATABASE_URL": env.login("audit"),
            **WORKER_ENV,
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(ENGRAM), "run", "audit"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-5000:]


async def publish_backlog(nc: NatsClient) -> int:
    """Messages on all five streams, some malformed; returns how many were published."""
    js = nc.jetstream(publish_async_max_pending=2000)
    rng = random.Random(7)
    cid = uuid4()
    count = 0
    for i in range(N_EVENTS):
        tenant = rng.choice(("acme", "globex", "initech"))
        roll = rng.random()
        if roll < 0.6:
            event = f.message(cid, tenant=tenant, content=f"m{i}")
            subject, data = event.type, event.model_dump_json().encode()
        elif roll < 0.97:
            subject = rng.choice(
                (
                    "memory.write",
                    "state.patch",
                    "engram.embedding.ready",
                    "dlq.ingest.chat.message.created",
                )
            )
            data = json.dumps(
                {
                    "event_id": str(uuid4()),
                    "type": subject,
                    "tenant_id": tenant,
                    "producer": "tests",
                    "payload": {"i": i},
                }
            ).encode()
        else:
            subject, data = "chat.message.created", f"garbage {i}".encode()
        await js.publish_async(subject, data)
        count += 1
    await js.publish_async_completed()
    return count


async def test_kill_9_records_each_message_exactly_once(
    env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    total = await publish_backlog(nc)
    js = nc.jetstream()
    writer = Writer(env, tmp_path / "audit.log")
    try:
        writer.start()
        for fraction in KILL_AT:
            deadline = time.monotonic() + 60
            while await recorded(db) < total * fraction:
                writer.alive()
                assert time.monotonic() < deadline, "writer too slow"
                await asyncio.sleep(0.01)
            await asyncio.sleep(random.uniform(0, 0.05))
            writer.kill()
            writer.start()

        async def settled() -> bool:
            for stream in STREAMS:
                try:
                    info = await js.consumer_info(stream.name, "audit")
                except NotFoundError:
                    return False
                if info.num_pending or info.num_ack_pending:
                    return False
            return True

        deadline = time.monotonic() + 60
        while not await settled():
            writer.alive()
            assert time.monotonic() < deadline, "backlog not consumed"
            await asyncio.sleep(0.1)
        deliveries = sum(
            [(await js.consumer_info(s.name, "audit")).delivered.consumer_seq for s in STREAMS]
        )
        redelivered = deliveries - total
        assert redelivered > 0, "no redelivery at all: the kills hit no in-flight work"

        rows = await db.fetchval("SELECT count(*) FROM audit.events")
        distinct = await db.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT stream, stream_seq FROM audit.events) s"
        )
        stored = sum([(await js.stream_info(s.name)).state.messages for s in STREAMS])
        assert rows == distinct == stored == total, (rows, distinct, stored, total)
        result = await verify(env)
        assert result.ok, result.breaks
        writer.alive()
        print(f"\n{total} messages; 3 kills; {redelivered} redelivered; recorded once each")
    except BaseException:
        print(writer.log.read_text()[-20_000:] if writer.log.exists() else "<no log>")
        raise
    finally:
        writer.kill()
