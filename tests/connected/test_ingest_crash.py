"""Crash test of the ingest worker: ``kill -9`` it four times while it consumes 10,000
CHAT events, restart it each time, and check that nothing was lost or stored twice.

The worker runs as a real process (`engram run ingest`), exactly as in production,
talking to NATS through a small TCP proxy of the test. Two kills are blind: they land
anywhere (mid-transaction, which PostgreSQL rolls back, or between batches). Two land
exactly after a COMMIT whose acks the proxy held back, so JetStream delivers that whole
committed batch again and only the inbox stands between it and duplicate rows. A killed
worker's messages come back only after the ack wait, later than the restart takes, so the
new worker sees the stream reordered (an edit before the message it edits, a session's
end before its last messages) and must absorb that too.

What is checked, against what the published events say must be stored: messages,
message_versions (the original plus exactly one row per edit, matched by event id),
versions and deleted flags per message, conversations, sessions with their exact
message_count / total_tokens / status, one inbox row per event, and an empty DLQ.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from tests.conftest import Env
from tests.connected.chat_workload import assert_stored, chat_workload, publish_all
from tests.connected.worker_process import WorkerProcess, unacked, wait_for

pytestmark = pytest.mark.connected

N_EVENTS = 10_000
# When to kill: the fraction of the expected messages stored, and where. "anywhere" is a
# blind kill -9 (mid-transaction, between batches...); "after-commit" lands right after a
# COMMIT whose acks never reached JetStream, so its whole batch is delivered again. 0.46
# comes with the first commit after the restart that follows the 0.45 kill: that kill hits
# a worker still recovering.
KILLS = ((0.20, "anywhere"), (0.45, "after-commit"), (0.46, "anywhere"), (0.70, "after-commit"))
SEED = 20261101
ACK_WAIT_S = 2.0
WORKER_ENV = {
    "INGEST_BATCH_SIZE": "200",  # small batches, so a kill lands mid-stream
    # A killed worker's messages come back after 2 s: soon, but later than a restart
    # takes (about 1 s), so the new worker first gets newer events.
    "INGEST_ACK_WAIT_S": str(ACK_WAIT_S),
    "INGEST_RETRY_BASE_S": "0.2",  # an edit that arrives before its message: nak 0.2 s...
    "INGEST_RETRY_MAX_S": "2",
    "INGEST_MAX_DELIVER": "20",  # ...and plenty of deliveries before the DLQ
    "INGEST_FETCH_WAIT_S": "0.5",
    "INGEST_DRAIN_TIMEOUT_S": "5",
}


class NatsProxy:
    """A TCP proxy between the worker and nats-server, to kill at one exact point.

    ``hold()`` stops forwarding what the worker sends (acks, pull requests) while what the
    server sends still flows: the batch in hand is processed and committed, but its acks
    never reach JetStream. ``drop()`` then cuts the worker's connections, throwing the
    held bytes away, the way a crash between COMMIT and the acks would. ``release()``
    without a drop only delays the bytes, so the protocol stream stays intact.
    """

    def __init__(self, upstream_url: str) -> None:
        host, port = upstream_url.removeprefix("nats://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def drop(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w, held=True)),
            asyncio.create_task(self._pump(server_r, client_w, held=False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.close()
            self._links.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        while data := await reader.read(65_536):
            if held:
                await self._flowing.wait()
            writer.write(data)
            await writer.drain()


async def kill_after_commit(
    worker: WorkerProcess, proxy: NatsProxy, stored: Callable[[], Awaitable[int]]
) -> int:
    """Hold the worker's outgoing NATS traffic, wait for its next COMMIT, then kill -9 it
    and cut its connection: that batch is committed, and none of its acks arrived."""
    for _ in range(20):
        proxy.hold()
        before = await stored()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            worker.check_alive()
            now = await stored()
            if now > before:
                worker.kill()
                await proxy.drop()
                proxy.release()
                return now
            await asyncio.sleep(0.005)
        # It was between batches and its next pull request is held: let it through, retry.
        proxy.release()
        await asyncio.sleep(0.05)
    raise AssertionError("the worker committed nothing while its acks were held")


async def kill_and_restart(
    worker: WorkerProcess, proxy: NatsProxy, stored: Callable[[], Awaitable[int]], n_messages: int
) -> list[tuple[str, int]]:
    """Start the worker, then kill -9 and restart it at each of ``KILLS``."""
    kills: list[tuple[str, int]] = []
    jitter = random.Random()  # where a blind kill lands varies from run to run
    worker.start()
    for fraction, where in KILLS:
        # At least one commit by the restarted worker, so that each kill hits a live one.
        threshold = max(int(n_messages * fraction), kills[-1][1] + 1 if kills else 0)
        seen = await wait_for(
            stored,
            threshold.__le__,
            worker=worker,
            within_s=40,
            what=f"{threshold} messages before kill {len(kills) + 1}",
        )
        if where == "after-commit":
            seen = await kill_after_commit(worker, proxy, stored)
        else:
            await asyncio.sleep(jitter.uniform(0, 0.05))
            worker.kill()
        kills.append((where, seen))
        worker.start()
    return kills


# --- the test ------------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_while_consuming_loses_and_duplicates_nothing(
    env: Env, nc: NatsClient, db: asyncpg.Connection, tmp_path: Path
) -> None:
    started = time.monotonic()
    w = chat_workload(N_EVENTS, SEED)
    n_messages = len(w.created_events)
    assert len(w.events) == N_EVENTS
    assert n_messages > 8_000 and len(w.edit_events) > 300 and len(w.deleted) > 100
    assert sum(s.ended for s in w.sessions.values()) > 50

    js = nc.jetstream(publish_async_max_pending=2_000)
    await publish_all(js, w.events)
    published_s = time.monotonic() - started

    async def stored() -> int:
        return int(await db.fetchval("SELECT count(*) FROM ingest.messages"))

    proxy = NatsProxy(env.servers.stack.nats.url)  # host and port only
    await proxy.start()
    # Through the proxy, as the ingest's own NATS user.
    through = proxy.url.replace("nats://", env.nats_login("ingest").split("@")[0] + "@")
    logins = {"NATS_URL": through, "DATABASE_URL": env.login("ingest")}
    worker = WorkerProcess("ingest", logins | WORKER_ENV, tmp_path / "ingest-worker.log")
    try:
        kills = await kill_and_restart(worker, proxy, stored, n_messages)
        await wait_for(
            lambda: unacked(js, "ingest"),
            (0, 0).__eq__,
            worker=worker,
            within_s=60,
            what="no pending and no ack-pending messages",
            interval_s=0.1,
        )
        consumed_s = time.monotonic() - started

        info = await js.consumer_info("CHAT", "ingest")
        assert info.config.ack_wait == pytest.approx(ACK_WAIT_S)
        redelivered = info.delivered.consumer_seq - N_EVENTS
        assert redelivered > 0, "no redelivery at all: the kills hit no in-flight work"

        # Every message is acked (after COMMIT) or dead-lettered: compare with the events.
        dlq = (await js.stream_info("DLQ")).state.messages
        assert dlq == 0, f"{dlq} events dead-lettered"
        await assert_stored(db, w)

        # Quiet: nothing more is applied later (no late duplicate), and the worker lives.
        versions = await db.fetchval("SELECT count(*) FROM ingest.message_versions")
        await asyncio.sleep(0.5)
        assert await stored() == n_messages
        assert await db.fetchval("SELECT count(*) FROM ingest.message_versions") == versions
        worker.check_alive()
        print(
            f"\npublished {N_EVENTS} events ({n_messages} messages, {len(w.edit_events)} "
            f"edits, {len(w.deleted)} deletes, {len(w.sessions)} sessions, "
            f"{len(w.conversations)} conversations) in {published_s:.1f}s; killed at "
            f"{kills} stored messages; {redelivered} redeliveries; all applied exactly "
            f"once after {consumed_s:.1f}s"
        )
    except BaseException:
        print(f"\n--- worker output ({worker.log_path}) ---\n{worker.log_tail()}")
        raise
    finally:
        worker.kill()
        await proxy.close()
