"""A real PostgreSQL restart and a postmaster ``kill -9`` under load lose nothing and
apply nothing twice (docs/reliability.md, issue 13's failure matrix).

The session's PostgreSQL is shared with other tests, so this module starts a private
embedded PostgreSQL (migrated: the workers' roles exist) next to the session's
nats-server. The real `engram run ingest` and `engram run audit` processes, each logged in
as its own role and NATS user, consume a steady load of 3,000 realistic chat events
(conversations, sessions with token counts, messages, edits, deletes). A third of the way
in, while the load goes on, PostgreSQL either restarts (`pg_ctl restart -m fast`: every
connection terminated, a shutdown checkpoint, a new postmaster on the same port) or its
postmaster is killed with SIGKILL and, once its orphaned children have exited, started
again (crash recovery from the WAL).

Checked against what was published: every message, version, edit, delete, conversation
and session counter (message_count, total_tokens, status) once; one inbox row per event;
one audit row per event, every chain verifying; an empty DLQ. Printed: how long the
database was down, how long after it was back the ingest worker acked again and both
workers had caught up with everything published until then, and the redeliveries.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.envelope import Envelope
from services.audit.verify import verify_database
from services.catalog import migrate
from services.runtime.db import Roles, login_url
from services.runtime.embedded_pg import EmbeddedPostgres
from tests.conftest import Env
from tests.connected.chat_workload import assert_stored, chat_workload
from tests.connected.worker_process import spawn
from tests.helpers import dlq_depth, drained, eventually

pytestmark = pytest.mark.connected

N_EVENTS = 3_000
RATE = 200.0  # events/s: 15 s of steady load
DISRUPT_AT = 1_000  # events published when PostgreSQL goes down
SEED = 20261206
SERVICES = ("ingest", "audit")
TEMPLATE = "restart_template"
# Production retry and ack-wait defaults (the time to resume depends on them); only a
# quicker idle pull and shutdown, to keep the test short.
WORKER_ENV = {"FETCH_WAIT_S": "0.5", "DRAIN_TIMEOUT_S": "5"}


def _database(server: EmbeddedPostgres, name: str) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{name}"


async def _admin(server: EmbeddedPostgres, sql: str) -> None:
    conn = await asyncpg.connect(_database(server, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _new_root() -> Path:
    # Not under pytest's basetemp: see conftest (another session may prune it).
    root = Path(tempfile.mkdtemp(prefix="engram-pg-restart-"))
    root.chmod(0o755)  # under root, PostgreSQL runs as its own user
    return root


@pytest.fixture(scope="module")
async def private_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """This module's own PostgreSQL (restarting the session's would break other tests),
    with a migrated template database."""
    server = EmbeddedPostgres(_new_root())
    try:
        await asyncio.to_thread(server.start)
        await _admin(server, f"CREATE DATABASE {TEMPLATE}")
        await migrate(_database(server, TEMPLATE), list(SERVICES))
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.root, ignore_errors=True)


@dataclass(frozen=True)
class PrivateDatabase:
    server: EmbeddedPostgres
    url: str  # the superuser's


@pytest.fixture
async def private_database(private_postgres: EmbeddedPostgres) -> PrivateDatabase:
    name = f"r_{uuid.uuid4().hex[:12]}"
    await _admin(private_postgres, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return PrivateDatabase(private_postgres, _database(private_postgres, name))


# --- the two ways PostgreSQL goes down (run in a thread: each blocks until it is back) ---


def fast_restart(server: EmbeddedPostgres) -> None:
    server.restart()


def kill_postmaster_and_start(server: EmbeddedPostgres) -> None:
    postmaster = psutil.Process(int((server.pgdata / "postmaster.pid").read_text().split()[0]))
    family = [postmaster, *postmaster.children()]
    postmaster.kill()
    # Its children exit once they notice (a backend after its statement). A new postmaster
    # refuses to start while one still holds the shared memory, and pg_ctl takes a dead
    # postmaster not yet reaped (a zombie) for a live one: wait until they are all gone.
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"still there 30 s after the postmaster was killed: {alive}"
    server.restart()


# --- the workers ---------------------------------------------------------------------------


class Workers:
    """`engram run <service>` for each of SERVICES, as its own database role and NATS user."""

    def __init__(self, env: Env, database_url: str, logs: Path) -> None:
        self.env, self.database_url, self.logs = env, database_url, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for service in SERVICES:
            settings = {f"{service.upper()}_{k}": v for k, v in WORKER_ENV.items()}
            env = {
                **os.environ,
                "NATS_URL": self.env.nats_login(service),
                "DATABASE_URL": login_url(self.database_url, Roles(service).worker),
                **settings,
            }
            with (self.logs / f"{service}.log").open("ab") as log:
                self.procs[service] = spawn(service, env, log)

    def check_alive(self) -> None:
        for service, proc in self.procs.items():
            assert proc.poll() is None, f"{service} exited by itself ({proc.returncode})"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def lines(self, service: str, text: str) -> int:
        return (self.logs / f"{service}.log").read_text(errors="replace").count(text)

    def tails(self) -> str:
        return "".join(
            f"\n--- {s} ---\n{(self.logs / f'{s}.log').read_text(errors='replace')[-6000:]}"
            for s in SERVICES
        )


# --- load and measurement ------------------------------------------------------------------


async def publish_steadily(
    js: JetStreamContext, events: list[Envelope], half: asyncio.Event
) -> None:
    """At RATE events/s, each acknowledged by JetStream; ``half`` set at DISRUPT_AT."""
    start = time.monotonic()
    for i, event in enumerate(events):
        if (due := start + i / RATE - time.monotonic()) > 0:
            await asyncio.sleep(due)
        data = event.model_dump_json().encode()
        ack = await js.publish(event.type, data, headers=event.headers(), timeout=10)
        assert not ack.duplicate
        if i + 1 == DISRUPT_AT:
            half.set()


async def ack_floors(js: JetStreamContext) -> dict[str, int]:
    infos = [await js.consumer_info("CHAT", service) for service in SERVICES]
    return {s: i.ack_floor.stream_seq for s, i in zip(SERVICES, infos, strict=True)}


@dataclass
class Recovery:
    down_s: float  # from the restart (or the kill) until PostgreSQL accepted connections
    behind_at_back: dict[str, int]  # CHAT events published but not yet acked, per worker
    resumed_s: float  # from back until the ingest worker acked again
    caught_up_s: float  # from back until both had acked everything published until back


async def go_down_and_recover(
    js: JetStreamContext,
    half: asyncio.Event,
    how: Callable[[EmbeddedPostgres], None],
    server: EmbeddedPostgres,
    workers: Workers,
) -> Recovery:
    await half.wait()
    down_at = time.monotonic()
    await asyncio.to_thread(how, server)
    back_at = time.monotonic()
    back_seq = (await js.stream_info("CHAT")).state.last_seq
    at_back = await ack_floors(js)
    resumed_s = None
    while True:
        workers.check_alive()
        floors, since_back = await ack_floors(js), time.monotonic() - back_at
        if resumed_s is None and floors["ingest"] > at_back["ingest"]:
            resumed_s = since_back
        if all(floor >= back_seq for floor in floors.values()):
            return Recovery(
                down_s=back_at - down_at,
                behind_at_back={s: back_seq - floor for s, floor in at_back.items()},
                resumed_s=since_back if resumed_s is None else resumed_s,
                caught_up_s=since_back,
            )
        assert since_back < 60, f"not caught up 60 s after PostgreSQL was back: {floors}"
        await asyncio.sleep(0.05)


# --- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(fast_restart, id="pg_ctl-restart-fast"),
        pytest.param(kill_postmaster_and_start, id="postmaster-kill-9"),
    ],
)
async def test_postgres_down_under_load_loses_and_duplicates_nothing(
    how: Callable[[EmbeddedPostgres], None],
    env: Env,
    nc: NatsClient,
    private_database: PrivateDatabase,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    w = chat_workload(N_EVENTS, SEED)
    js = nc.jetstream()
    workers = Workers(env, private_database.url, tmp_path)
    try:
        workers.start()

        async def consumers_exist() -> bool:
            try:
                await ack_floors(js)
            except NotFoundError:
                return False
            return True

        await eventually(consumers_exist, timeout=60, interval=0.2)
        half = asyncio.Event()
        load = asyncio.create_task(publish_steadily(js, w.events, half))
        recovery = await go_down_and_recover(js, half, how, private_database.server, workers)
        await load

        async def all_drained() -> bool:
            return all([await drained(nc, "CHAT", service) for service in SERVICES])

        await eventually(all_drained, timeout=60, interval=0.1)
        workers.check_alive()

        assert await dlq_depth(nc) == 0
        db = await asyncpg.connect(private_database.url)
        try:
            await assert_stored(db, w)
            audit = await db.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT (stream, stream_seq)) AS seqs "
                "FROM audit.events"
            )
            assert audit is not None and (audit["n"], audit["seqs"]) == (N_EVENTS, N_EVENTS)
            chains = await verify_database(db)
            assert chains.ok, chains.breaks
        finally:
            await db.close()

        # The outage reached the worker mid-work: it held a batch and applied it once back.
        assert workers.lines("ingest", "the database is unreachable") >= 1
        assert workers.lines("ingest", "the database is back after") >= 1
        redelivered = {
            s: (await js.consumer_info("CHAT", s)).delivered.consumer_seq - N_EVENTS
            for s in SERVICES
        }
        held = {s: workers.lines(s, "holding the batch") for s in SERVICES}
        print(
            f"\n{how.__name__}: {N_EVENTS} events at {RATE:.0f}/s ({len(w.created_events)} "
            f"messages, {len(w.edit_events)} edits, {len(w.deleted)} deletes, "
            f"{len(w.sessions)} sessions); down after {DISRUPT_AT} for "
            f"{recovery.down_s:.2f}s; behind when back {recovery.behind_at_back}; ingest "
            f"acked again {recovery.resumed_s:.2f}s and both caught up "
            f"{recovery.caught_up_s:.2f}s after it was back; 0 lost, 0 duplicated (rows, "
            f"versions, counters, audit rows), 0 dead letters; batches held {held}; "
            f"redelivered {redelivered}; {time.monotonic() - started:.1f}s in all"
        )
    except BaseException:
        print(workers.tails())
        raise
    finally:
        workers.stop()
