"""A single nats-server killed with SIGKILL loses nothing it acknowledged and applies
nothing twice (docs/reliability.md, issue 13's failure matrix).

A private nats-server (file storage, like the embedded one) so that it can be killed: the
session's is shared. Two parts, one workload of realistic chat events (conversations,
sessions with token counts, messages, edits, deletes):

1. **Stored, unconsumed.** The first third is published while no worker runs; the server
   is killed and started again on the same store; then `engram run ingest` and
   `engram run audit` start and must find every event of it in the recovered stream.
2. **60 s outage under load.** With both workers running, the rest is published at a
   steady rate; halfway the server is killed and stays down 60 s (longer than the workers'
   ack wait and fetch timeouts). The producer retries each publish until it is
   acknowledged, with the same ``Nats-Msg-Id``, as an upstream service does; the workers
   reconnect by themselves (they reconnect forever by default) and must not exit.

Checked against what was published: one inbox row per event, every message, version,
edit, delete, conversation and session counter once; one audit row per event and every
chain verifying; the DLQ empty. Printed: the resume and catch-up times and the retries.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts.envelope import Envelope
from services.runtime.bus_setup import setup_bus
from tests.conftest import Env
from tests.connected.audit_fixtures import verify
from tests.connected.chat_workload import Workload, assert_stored, chat_workload
from tests.connected.test_worker_exit import ENGRAM, OwnNats
from tests.helpers import eventually

pytestmark = pytest.mark.connected

N_EVENTS = 1800
STORED = 600  # published before any worker runs: in the stream, unconsumed, at the kill
RATE = 40.0  # events/s of the rest
OUTAGE_S = 60.0
SEED = 20261206
SERVICES = ("ingest", "audit")
WORKER_ENV = {"FETCH_WAIT_S": "0.5", "DRAIN_TIMEOUT_S": "3"}


class KillableNats(OwnNats):
    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def start_workers(server: OwnNats, env: Env, logs: Path) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    for service in SERVICES:
        settings = {f"{service.upper()}_{k}": v for k, v in WORKER_ENV.items()}
        with (logs / f"{service}.log").open("ab") as log:
            procs[service] = subprocess.Popen(
                [ENGRAM, "run", service],
                env={
                    **os.environ,
                    "NATS_URL": server.url,
                    "DATABASE_URL": env.login(service),
                    **settings,
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    return procs


async def connect(url: str) -> NatsClient:
    return await nats.connect(
        url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, allow_reconnect=True
    )


@dataclass
class Producer:
    js: JetStreamContext
    retries: int = 0

    async def publish(self, event: Envelope) -> None:
        """Until JetStream acknowledges it, with the same Nats-Msg-Id every time."""
        data = event.model_dump_json().encode()
        while True:
            try:
                await self.js.publish(event.type, data, headers=event.headers(), timeout=2)
                return
            except (nats.errors.Error, TimeoutError):
                self.retries += 1
                await asyncio.sleep(0.5)


class Outage:
    """Kills the server, keeps it down OUTAGE_S, starts it again, in the background."""

    def __init__(self, server: KillableNats, js: JetStreamContext) -> None:
        self.server, self.js = server, js
        self.task: asyncio.Task[tuple[float, dict[str, int]]] | None = None

    def begin(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> tuple[float, dict[str, int]]:
        self.server.kill9()
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(self.server.start)
        return time.monotonic(), await floors(self.js)

    async def ended(self) -> tuple[float, dict[str, int]]:
        """When the server was back, and the workers' ack floors then."""
        assert self.task is not None
        return await self.task


async def floors(js: JetStreamContext) -> dict[str, int]:
    """The workers' ack floors, once the test's own client (reconnecting after a restart,
    or before the workers made their consumers) gets an answer."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return {s: (await js.consumer_info("CHAT", s)).ack_floor.stream_seq for s in SERVICES}
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def caught_up(js: JetStreamContext, seq: int) -> bool:
    return all(floor >= seq for floor in (await floors(js)).values())


async def assert_applied_once(env: Env, db: asyncpg.Connection, w: Workload) -> None:
    await assert_stored(db, w)
    rows = await db.fetchval("SELECT count(*) FROM audit.events")
    distinct = await db.fetchval("SELECT count(DISTINCT (stream, stream_seq)) FROM audit.events")
    assert rows == distinct == N_EVENTS, (rows, distinct)
    result = await verify(env)
    assert result.ok, result.breaks


async def test_nats_server_kill_9_and_a_60s_outage_lose_and_duplicate_nothing(
    env: Env, db: asyncpg.Connection, tmp_path: Path
) -> None:
    w = chat_workload(N_EVENTS, SEED)
    server = KillableNats(tmp_path / "nats")
    server.start()
    await setup_bus(server.url)
    nc = await connect(server.url)
    producer = Producer(nc.jetstream())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # 1. Stored and unconsumed when the server dies.
        for event in w.events[:STORED]:
            await producer.publish(event)
        server.kill9()
        server.start()
        procs = start_workers(server, env, tmp_path)
        js = nc.jetstream()
        await eventually(lambda: caught_up(js, STORED), timeout=60, interval=0.2)
        assert (await js.stream_info("CHAT")).state.messages == STORED

        # 2. A 60 s outage while the rest is published steadily: the producer keeps
        # trying (each event until acknowledged) while the server is down.
        rest = w.events[STORED:]
        outage = Outage(server, js)
        started = time.monotonic()
        for i, event in enumerate(rest):
            if (due := started + i / RATE - time.monotonic()) > 0:
                await asyncio.sleep(due)
            if i == len(rest) // 2:
                outage.begin()
            await producer.publish(event)
        back_at, at_back = await outage.ended()
        resumed_s = None
        while not await caught_up(js, N_EVENTS):
            now = await floors(js)
            if resumed_s is None and all(now[s] > at_back[s] for s in SERVICES):
                resumed_s = time.monotonic() - back_at
            for service, proc in procs.items():
                assert proc.poll() is None, f"{service} exited ({proc.returncode})"
            assert time.monotonic() - back_at < 120, f"not caught up: {now}"
            await asyncio.sleep(0.1)
        caught_up_s = time.monotonic() - back_at
        info = await js.stream_info("CHAT")
        dlq = (await js.stream_info("DLQ")).state.messages
        redelivered = {
            s: (await js.consumer_info("CHAT", s)).delivered.consumer_seq - N_EVENTS
            for s in SERVICES
        }
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await nc.close()
        server.stop()

    logs = {s: (tmp_path / f"{s}.log").read_text(errors="replace") for s in SERVICES}
    assert info.state.messages == N_EVENTS, "every acknowledged event is in the stream once"
    assert dlq == 0, logs
    await assert_applied_once(env, db, w)
    print(
        f"\n{N_EVENTS} events ({len(w.created_events)} messages, {len(w.edit_events)} edits, "
        f"{len(w.deleted)} deletes, {len(w.sessions)} sessions); {STORED} stored and "
        f"unconsumed at a kill -9, all applied after the restart; then down {OUTAGE_S:.0f}s "
        f"under load at {RATE:.0f}/s: both workers acked again {resumed_s or 0:.1f}s and "
        f"caught up {caught_up_s:.1f}s after it was back; producer retries "
        f"{producer.retries}; redelivered {redelivered}; 0 lost, 0 duplicated, 0 dead letters"
    )
