"""The test session starts the real embedded servers once (nats-server with JetStream and
PostgreSQL 18 with pgvector, from PyPI packages); each connected test gets a fresh
database cloned from a migrated template and freshly created streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

warnings.filterwarnings("ignore", module="platformdirs")

from services.catalog import SERVICES, migrate  # noqa: E402
from services.runtime.bus import STREAMS, ensure_streams  # noqa: E402
from services.runtime.bus_setup import connect  # noqa: E402
from services.runtime.db import Roles, login_url  # noqa: E402
from services.runtime.dlq import ensure_body_store  # noqa: E402
from services.runtime.embedded import DevStack  # noqa: E402

pytest_plugins = ["tests.hang_dump"]

TEMPLATE_DB = "engram_template"


@dataclass(frozen=True)
class Servers:
    nats_url: str  # NATS's admin user's: the harness sets the bus up and looks at everything
    admin_url: str  # the postgres database, for CREATE DATABASE
    stack: DevStack

    def database_url(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"


@dataclass(frozen=True)
class Env:
    """One test's world: its own database and empty streams on the shared servers."""

    nats_url: str  # NATS's admin user's, as database_url is the superuser's
    database_url: str  # the superuser's: tests look at every schema and tenant with it
    servers: Servers

    def login(self, service: str) -> str:
        """The database URL a worker of ``service`` logs in with: its own role."""
        return login_url(self.database_url, Roles(service).worker)

    def nats_login(self, user: str) -> str:
        """The NATS URL a worker of ``user`` connects with: its own NATS user (also
        ``producer``, the upstream chat services' user)."""
        return self.servers.stack.nats_url(user)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not under pytest's basetemp: another pytest session on the machine prunes old
    # basetemp folders and re-locks their parent, pulling the data folder from under this
    # session's running PostgreSQL.
    given = os.environ.get("ENGRAM_TEST_DATA_DIR")
    root = Path(given) if given else Path(tempfile.mkdtemp(prefix="engram-test-"))
    stack = DevStack(root, SERVICES)
    urls = stack.start()
    admin = urls["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    servers = Servers(urls["NATS_URL"], admin, stack)

    async def template() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        await migrate(servers.database_url(TEMPLATE_DB))

    asyncio.run(template())
    try:
        yield servers
    finally:
        stack.stop()
        if not given:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def env(servers: Servers) -> AsyncIterator[Env]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await conn.close()
    nc = await connect(servers.nats_url)
    try:
        js = nc.jetstream()
        await ensure_body_store(js)  # the bus setup's, as the admin (workers may not)
        for stream in STREAMS:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream.name)
        for attempt in range(5):
            try:
                await ensure_streams(js)
                break
            except nats.js.errors.APIError:
                # Re-creating a just-deleted stream can race the server's cleanup of its
                # storage directory (10049/10077): wait and try again.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()
    yield Env(servers.nats_url, servers.database_url(name), servers)
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def nc(env: Env) -> AsyncIterator[NatsClient]:
    client = await connect(env.nats_url)
    yield client
    await client.drain()


@pytest.fixture
async def db(env: Env) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(env.database_url)
    yield conn
    await conn.close()
