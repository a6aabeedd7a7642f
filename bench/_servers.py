"""The servers a bench runs on: the embedded nats-server and PostgreSQL (DevStack), its
databases and streams made anew, and the workers as processes of their own.
``services`` is imported inside functions only (see bench/_code.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from rich.console import Console

from bench._code import ROOT, SNAPSHOT_ENV, SNAPSHOT_PREFIX


def admin_url(database_url: str) -> str:
    """The superuser's URL of the embedded PostgreSQL's ``postgres`` database."""
    return database_url.rsplit("/", 1)[0] + "/postgres"


async def fresh_database(admin: str, name: str, template: str | None = None) -> str:
    """Database ``name`` made anew on the server of ``admin`` (dropped first, by force;
    a copy of ``template`` if given); its URL."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        copy = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{copy}")
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + f"/{name}"


class Postgres:
    """Databases of the embedded PostgreSQL, through the superuser's ``admin_url``."""

    admin_url: str

    def url(self, db: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{db}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def exists(self, db: str) -> bool:
        conn = await asyncpg.connect(self.admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db))
        finally:
            await conn.close()

    async def migrated_template(self, name: str, services: Sequence[str]) -> str:
        """A database ``name`` (made again) migrated for ``services``, to ``clone``."""
        from services.catalog import migrate

        await self.drop(name)
        await self.admin(f"CREATE DATABASE {name}")
        await migrate(self.url(name), list(services))
        return self.url(name)

    async def clone(self, name: str, template: str) -> str:
        """A fresh database ``name``, a copy of ``template`` (as tests/conftest.py does)."""
        await self.drop(name)
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def checkpoint(self) -> None:
        # Start each timed phase with no dirty buffers left over from the one before.
        await self.admin("CHECKPOINT")


async def fresh_streams(js: JetStreamContext) -> None:
    """Every engram stream deleted and created again, empty, and the dead-letter body
    bucket: the bus setup, which only the admin may do (``js`` must be the admin's)."""
    from services.runtime.bus import STREAMS, ensure_streams
    from services.runtime.dlq import ensure_body_store

    await ensure_body_store(js)
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream.name)
    for attempt in range(5):
        try:
            await ensure_streams(js)
            break
        except APIError:
            # Re-creating a just-deleted stream can race the server's cleanup of its
            # storage (10049/10077), as in tests/conftest.py: wait and try again.
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)


def worker_login(database_url: str, service: str) -> str:
    """The DATABASE_URL a worker of ``service`` logs in with: its own role
    ``engram_<service>`` (no superuser, no BYPASSRLS: a worker refuses those). The
    embedded PostgreSQL trusts loopback logins, so no password."""
    from services.runtime.db import Roles, login_url

    return login_url(database_url, Roles(service).worker)


def engram_cmd(service: str = "ingest") -> list[str]:
    """``engram run <service>``: a worker as in production, in its own process."""
    return [str(Path(sys.executable).parent / "engram"), "run", service]


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``args`` in a session of its own (a ^C to the bench does not reach it) with
    ``env`` over ours, its output appended to ``log_path``."""
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    finally:
        log.close()


async def consumer_info(js: JetStreamContext, durable: str, stream: str = "CHAT") -> Any:
    """The durable's info, or None while it does not exist."""
    try:
        return await js.consumer_info(stream, durable)
    except NotFoundError:
        return None


async def wait_consumer(
    js: JetStreamContext, durable: str, proc: subprocess.Popen[bytes], limit_s: float = 60.0
) -> None:
    """Until the worker ``proc`` has created its durable on CHAT: it is ready to pull."""
    deadline = time.perf_counter() + limit_s
    while await consumer_info(js, durable) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"{durable} process exited with {proc.returncode}; see its log")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"consumer {durable} did not appear in {limit_s}s")
        await asyncio.sleep(0.005)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Servers:
    """The embedded nats-server and PostgreSQL of one bench run."""

    urls: dict[str, str]  # NATS_URL: the NATS admin's; DATABASE_URL: the superuser's
    logs: Path  # <data dir>/bench-logs: the workers' logs
    pids: dict[str, int]  # postgres (the postmaster), nats
    # NATS URL of each user: every service of the catalog (its worker's own user),
    # "admin" (sets the bus up: the benches' own clients) and "producer"
    nats_users: dict[str, str] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        return admin_url(self.urls["DATABASE_URL"])


@contextlib.contextmanager
def embedded_servers(data_dir: Path | None, prefix: str, console: Console) -> Iterator[Servers]:
    """Starts the embedded nats-server and PostgreSQL (DevStack) in ``data_dir``, or in a
    temporary folder (``prefix``) removed after; stops them after, and removes the code
    snapshot the bench ran on (if any)."""
    from services.catalog import SERVICES
    from services.runtime.embedded import DevStack

    temp = None
    if data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(temp, 0o755)  # the embedded PostgreSQL runs as its own user under root
    data_dir = data_dir or temp
    assert data_dir is not None
    logs = data_dir / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.log(f"starting embedded nats-server + PostgreSQL in {data_dir}")
    # With the catalog, each service has its own NATS user, as under `engram dev`.
    stack = DevStack(data_dir, SERVICES)
    snapshot = os.environ.get(SNAPSHOT_ENV)
    try:
        urls = stack.start()
        console.log(
            f"NATS {urls['NATS_URL']}  PostgreSQL {urls['DATABASE_URL']}; worker logs in {logs}"
        )
        pidfile = stack.postgres.pgdata / "postmaster.pid"
        assert stack.nats.process is not None
        pids = {"postgres": int(pidfile.read_text().split()[0]), "nats": stack.nats.process.pid}
        users = {user: stack.nats_url(user) for user in stack.passwords}
        yield Servers(urls, logs, pids, users)
    finally:
        stack.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        if snapshot and Path(snapshot).name.startswith(SNAPSHOT_PREFIX):
            shutil.rmtree(snapshot, ignore_errors=True)
