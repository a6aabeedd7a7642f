"""A database outage longer than the whole retry budget loses nothing (issue 13, first
part): while PostgreSQL is unreachable the worker holds its batch and pulls nothing,
instead of spending deliveries until valid events are dead-lettered as "exhausted"."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.runtime.service import Worker
from tests import factories
from tests.conftest import Env
from tests.helpers import dlq_depth, eventually, publish

pytestmark = pytest.mark.connected


class PostgresCut:
    """A TCP proxy in front of PostgreSQL that the test can cut (every connection closed,
    new ones refused) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._open = True
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._links |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
        self._links.discard(writer)

    def cut(self) -> None:
        self._open = False
        for writer in list(self._links):
            writer.close()

    def restore(self) -> None:
        self._open = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def cut(env: Env) -> AsyncIterator[tuple[PostgresCut, str]]:
    url = urlsplit(env.login("ingest"))
    proxy = PostgresCut(url.hostname or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    netloc = url.netloc.rsplit(":", 1)[0] + f":{port}"
    yield proxy, urlunsplit(url._replace(netloc=netloc))
    await proxy.stop()


async def test_an_outage_longer_than_the_retry_budget_loses_nothing(
    env: Env,
    nc: NatsClient,
    db: asyncpg.Connection,
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
    cut: tuple[PostgresCut, str],
) -> None:
    proxy, through_proxy = cut
    cid = uuid.uuid4()
    before = [factories.conversation(cid)] + [factories.message(cid) for _ in range(20)]
    during = [factories.message(cid) for _ in range(30)]

    async def stored() -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM ingest.messages WHERE conversation_id = $1", cid
        )
        return count

    # 4 deliveries 0.05 s .. 0.2 s apart: the whole retry budget is under a second.
    async with run_ingest(database_url=through_proxy) as worker:
        await publish(nc, *before)
        await eventually(stored, lambda n: n == 20)
        proxy.cut()
        await publish(nc, *during)
        await asyncio.sleep(4.0)  # four times the retry budget
        health_during = [h.ok for h in worker.health() if h.name == "database"]
        proxy.restore()
        await eventually(stored, lambda n: n == 50, timeout=30)
        assert await dlq_depth(nc) == 0  # nothing "exhausted"
        assert worker.stats.dead == 0
        assert health_during == [False]  # health said so while it lasted
        assert worker.stats.database_outages >= 1
        assert [h.ok for h in worker.health() if h.name == "database"] == [True]
