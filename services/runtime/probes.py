"""The worker's HTTP port: Prometheus metrics and the two health probes.

A tiny HTTP/1.1 server on asyncio's streams (no web framework): one request per
connection, answered and closed. ``GET /metrics`` is the text exposition
(``metrics.py``); ``GET /health/live`` and ``GET /health/ready`` answer
``{"ok": bool, "checks": [{"name", "ok", "detail"}]}`` with 200 or 503; any other path is
404, another method 405, a request that cannot be parsed 400. Reading a request and
answering it are each bounded by a timeout, and nothing a client sends can end the
worker: a failing handler is a 500 and a log line.

Liveness is what a restart would heal: the event loop answers (it just did), the worker
has not failed (``Supervisor``), its NATS connection is not closed for good, and every pull
loop is alive. A database outage is *not* a liveness failure: the worker waits for the
database on purpose, and restarting it would not bring the database back. Readiness is
whether it can work now: started, NATS connected, PostgreSQL answers ``SELECT 1``, the
service's migrations are at head, and every part's own health is ok (the database, each
pull loop, each component, e.g. the embedder's model loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import orjson

from services.runtime.component import Health
from services.runtime.errors import describe
from services.runtime.metrics import exposition, measure_worker
from services.runtime.migrate import ServiceSchema, pending

if TYPE_CHECKING:
    from services.runtime.worker import Worker

log = logging.getLogger("engram.probes")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_TYPE = "application/json"
MAX_HEAD = 8192  # bytes of request line and headers
READ_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 8.0
DATABASE_TIMEOUT_S = 2.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE

    def encode(self) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("ascii") + self.body


Route = Callable[[], Awaitable[Response]]


class BadRequest(ValueError):
    pass


def parse_request(head: bytes) -> tuple[str, str]:
    """(method, path without its query) of a request's head (the request line and the
    headers, up to the blank line)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadRequest("not ASCII") from exc
    line = text.split("\r\n", 1)[0]
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(f"malformed request line {line[:80]!r}")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version[:20]!r}")
    if not method.isalpha() or not method.isupper():
        raise BadRequest(f"malformed method {method[:20]!r}")
    if not target.startswith("/"):
        raise BadRequest("the target must be a path")
    return method, target.split("?", 1)[0].split("#", 1)[0]


def health_response(checks: Sequence[Health]) -> Response:
    ok = all(check.ok for check in checks)
    body = {
        "ok": ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }
    return Response(200 if ok else 503, orjson.dumps(body))


class ProbeServer:
    """Serves ``routes`` (GET only) on ``host:port``; port 0 picks a free one."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str,
        port: int,
        read_timeout_s: float = READ_TIMEOUT_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self._routes = dict(routes)
        self._host = host
        self._port = port
        self._read_timeout_s = read_timeout_s
        self._answer_timeout_s = answer_timeout_s
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_HEAD
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics and health probes on http://%s:%d", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            response = await self._answer(reader)
            if response is not None:
                writer.write(response.encode())
                await asyncio.wait_for(writer.drain(), self._read_timeout_s)
        except Exception as exc:  # a client gone, a slow reader: never the worker's problem
            log.debug("probe connection: %s", describe(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._clients.discard(task)

    async def _answer(self, reader: asyncio.StreamReader) -> Response | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout_s)
        except asyncio.LimitOverrunError:
            return Response(400, b'{"error": "request head too large"}')
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None  # nothing (complete) was asked
        try:
            method, path = parse_request(head)
        except BadRequest as exc:
            return Response(400, orjson.dumps({"error": str(exc)}))
        return await self._dispatch(method, path)

    async def _dispatch(self, method: str, path: str) -> Response:
        route = self._routes.get(path)
        if route is None:
            return Response(404, orjson.dumps({"error": f"no {path}", "paths": [*self._routes]}))
        if method != "GET":
            return Response(405, b'{"error": "GET only"}')
        try:
            return await asyncio.wait_for(route(), self._answer_timeout_s)
        except TimeoutError:
            return Response(503, orjson.dumps({"error": f"no answer in {self._answer_timeout_s}s"}))
        except Exception as exc:
            log.exception("probe %s failed", path)
            return Response(500, orjson.dumps({"error": describe(exc)}))


def live_checks(worker: Worker) -> list[Health]:
    supervisor = worker.supervisor
    checks = [
        Health("event-loop", True, "answering"),
        Health(
            "worker",
            supervisor.failure is None,
            "working" if supervisor.failure is None else supervisor.failure,
        ),
    ]
    nc = supervisor.nc
    closed = nc is not None and nc.is_closed and not supervisor.stopping
    checks.append(
        Health(
            "nats",
            not closed,
            "closed for good" if closed else ("not connected yet" if nc is None else "open"),
        )
    )
    for consumer in worker.consumers:
        name = f"pull-loop:{consumer.spec.stream.name}:{consumer.spec.durable}"
        checks.append(Health(name, consumer.alive, "alive" if consumer.alive else "ended"))
    return checks


class Readiness:
    """The ready checks of one worker; the migrations, once at head, are not read again
    (files cannot change under a running process)."""

    def __init__(self, worker: Worker, pool: asyncpg.Pool, store: ServiceSchema) -> None:
        self._worker = worker
        self._pool = pool
        self._store = store
        self._at_head = False

    async def checks(self) -> list[Health]:
        worker = self._worker
        supervisor = worker.supervisor
        started = worker.started and not supervisor.stopping
        checks = [
            Health(
                "started",
                started,
                "started" if started else ("stopping" if supervisor.stopping else "starting"),
            )
        ]
        nc = supervisor.nc
        connected = nc is not None and nc.is_connected
        checks.append(Health("nats", connected, "connected" if connected else "not connected"))
        checks += await self._database()
        # The worker's own account of each part (database, pull loops, components).
        checks += [Health(f"health:{h.name}", h.ok, h.detail) for h in worker.health()]
        return checks

    async def _database(self) -> list[Health]:
        try:
            missing = await asyncio.wait_for(self._ask_database(), DATABASE_TIMEOUT_S)
        except TimeoutError:
            return [Health("postgres", False, f"no answer to SELECT 1 in {DATABASE_TIMEOUT_S}s")]
        except Exception as exc:
            return [Health("postgres", False, describe(exc))]
        at_head = Health(
            "migrations",
            not missing,
            "at head" if not missing else f"not applied: {', '.join(missing)}",
        )
        return [Health("postgres", True, "answers SELECT 1"), at_head]

    async def _ask_database(self) -> list[str]:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            if self._at_head:
                return []
            missing = await pending(conn, self._store)
        self._at_head = not missing
        return missing


def worker_routes(worker: Worker, pool: asyncpg.Pool, store: ServiceSchema) -> dict[str, Route]:
    readiness = Readiness(worker, pool, store)

    async def metrics() -> Response:
        return Response(200, exposition(await measure_worker(worker)), METRICS_TYPE)

    async def live() -> Response:
        return health_response(live_checks(worker))

    async def ready() -> Response:
        return health_response(await readiness.checks())

    return {"/metrics": metrics, "/health/live": live, "/health/ready": ready}
