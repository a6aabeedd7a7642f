"""A worker that can no longer work ends its process with a non-zero code, so that docker
or Kubernetes restarts it, instead of idling forever (DESIGN.md, rule 9).

The connection cases run `engram run ingest` as a real process against a nats-server of
the test's own (the session's server is shared, so it is never the one taken away): once
the server closes the worker's connection for good (its credentials revoked: an
``-ERR 'Authorization Violation'``, which nats-py never reconnects from), once the server
is gone and the worker gives up reconnecting. The pull-loop case supervises a real
PullConsumer whose loop crashes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.bus import CHAT, ConsumerSpec
from services.runtime.bus_setup import setup_bus
from services.runtime.consumer import PullConsumer
from services.runtime.dlq import DeadLetters
from services.runtime.embedded_nats import nats_server_binary
from services.runtime.supervise import EXIT_CANNOT_WORK, Supervisor
from tests import factories as f
from tests.conftest import Env
from tests.helpers import eventually, publish

pytestmark = pytest.mark.connected
ENGRAM = str(Path(sys.executable).parent / "engram")


class OwnNats:
    """A nats-server with JetStream for one test, from a config file it can reload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "nats.conf"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\njetstream {{ store_dir: "{self.root / "js"}" }}\n'
        )
        log = (self.root / "nats.log").open("wb")
        self.proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.conf)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while not self._listening():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server did not start: {self.root / 'nats.log'}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def lock_out(self) -> None:
        """Require credentials the worker does not have, and reload: the server closes its
        connection with an authorization violation."""
        with self.conf.open("a") as conf:
            conf.write('authorization { user: "someone-else", password: "not-yours" }\n')
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ENGRAM, "run", "ingest"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("how", ["server-closes-it", "reconnects-given-up"])
async def test_run_exits_non_zero_once_its_connection_is_closed_for_good(
    env: Env, db: asyncpg.Connection, tmp_path: Path, how: str
) -> None:
    server = OwnNats(tmp_path / "nats")
    server.start()
    await setup_bus(server.url)  # the admin's step: a worker may not create streams
    worker_env = {
        **os.environ,
        "NATS_URL": server.url,
        "DATABASE_URL": env.login("ingest"),
        "INGEST_FETCH_WAIT_S": "0.5",
        "INGEST_DRAIN_TIMEOUT_S": "3",
    }
    if how == "reconnects-given-up":
        worker_env["INGEST_NATS_MAX_RECONNECT_ATTEMPTS"] = "2"
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env, log)
    try:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await eventually(lambda: _has_consumer(js), timeout=30)
            cid = uuid4()
            await publish(nc, f.conversation(cid))
            await eventually(lambda: db.fetchval("SELECT count(*) FROM ingest.conversations"))
        finally:
            await nc.close()
        assert proc.poll() is None  # working
        started = time.monotonic()
        if how == "server-closes-it":
            server.lock_out()
        else:
            server.stop()  # and never started again
        code = await wait_exit(proc, timeout=45)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    output = log.read_text()
    assert code == EXIT_CANNOT_WORK, output
    assert "cannot work any more" in output
    assert "NATS connection was closed for good" in output
    assert took < 45, output


async def _has_consumer(js: Any) -> bool:
    try:
        await js.consumer_info("CHAT", "ingest")
    except Exception:
        return False
    return True


class Exploding:
    """A batch processor with a bug: the pull loop's first batch raises."""

    async def prepare(self, msgs: Any) -> Any:
        raise RuntimeError("a bug in prepare")


class Idle:
    async def prepare(self, msgs: Any) -> Any:
        raise AssertionError("no message is published to this consumer")


def supervised() -> tuple[Supervisor, list[str]]:
    supervisor = Supervisor("engram test", grace_s=1.0)
    stops: list[str] = []
    supervisor.stops(lambda: stops.append("stop"))
    return supervisor, stops


def consumer_for(durable: str, processor: Any) -> PullConsumer:
    spec = ConsumerSpec(CHAT, durable, CHAT.subjects, max_deliver=5, ack_wait_s=5,
                        max_ack_pending=10)  # fmt: skip
    return PullConsumer(spec, processor, batch_size=10, fetch_wait_s=0.5, drain_timeout_s=2)


async def test_a_pull_loop_that_crashes_fails_its_worker(nc: NatsClient) -> None:
    supervisor, stops = supervised()
    consumer = consumer_for("crashloop", Exploding())
    await consumer.start(nc, DeadLetters(nc.jetstream(), "crashloop"), supervisor)
    await publish(nc, f.message(uuid4(), content="the batch that meets the bug"))

    async def failure() -> str | None:
        return supervisor.failure

    reason = await eventually(failure, timeout=10)
    assert reason == (
        "the pull loop consume:CHAT:crashloop crashed: RuntimeError: a bug in prepare"
    )
    assert stops == ["stop"]  # the app is asked to stop, once
    await consumer.stop()  # and its shutdown still goes through


async def test_a_pull_loop_stopped_on_purpose_is_no_failure(nc: NatsClient) -> None:
    supervisor, stops = supervised()
    consumer = consumer_for("quiet", Idle())
    await consumer.start(nc, DeadLetters(nc.jetstream(), "quiet"), supervisor)
    await asyncio.sleep(0.3)
    await consumer.stop()
    await asyncio.sleep(0.1)
    assert supervisor.failure is None
    assert stops == []


WEDGED = """
import time
from services.runtime.supervise import Supervisor
supervisor = Supervisor("engram wedged", grace_s=0.5)
supervisor.hard_exit = True
supervisor.fail("a test of the hard exit")
time.sleep(60)  # a loop that never gets back to its shutdown
"""


def test_a_wedged_process_still_ends_after_the_grace() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", WEDGED], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == EXIT_CANNOT_WORK, done.stderr
    assert time.monotonic() - started < 20
    assert "shutdown did not finish within" in done.stderr
