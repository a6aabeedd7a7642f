"""The probes' HTTP server: what it parses, what it answers, and that a bad client never
hurts it (real sockets on the loopback; no worker)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from services.runtime.component import Health
from services.runtime.probes import (
    BadRequest,
    ProbeServer,
    Response,
    health_response,
    live_checks,
    parse_request,
)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/metrics")),
        (b"GET /health/ready?verbose=1 HTTP/1.0\r\n\r\n", ("GET", "/health/ready")),
        (b"POST /health/live HTTP/1.1\r\n\r\n", ("POST", "/health/live")),
    ],
)
def test_parse_request(head: bytes, expected: tuple[str, str]) -> None:
    assert parse_request(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/2\r\n\r\n",
        b"GET http://x/metrics HTTP/1.1\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET /m\xe9trics HTTP/1.1\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
    ],
)
def test_parse_request_refuses_what_is_not_a_request(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(head)


def test_health_response_is_503_when_any_check_fails() -> None:
    ok = health_response([Health("a", True, "fine")])
    assert ok.status == 200
    assert json.loads(ok.body) == {
        "ok": True,
        "checks": [{"name": "a", "ok": True, "detail": "fine"}],
    }
    bad = health_response([Health("a", True), Health("b", False, "down")])
    assert bad.status == 503 and json.loads(bad.body)["ok"] is False


async def ask(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


async def test_the_server_answers_routes_and_survives_bad_clients() -> None:
    async def fine() -> Response:
        return Response(200, b"hello", "text/plain")

    async def broken() -> Response:
        raise RuntimeError("a bug")

    async def slow() -> Response:
        await asyncio.sleep(10)
        return Response(200, b"")

    server = ProbeServer(
        {"/fine": fine, "/broken": broken, "/slow": slow},
        host="127.0.0.1",
        port=0,
        read_timeout_s=0.5,
        answer_timeout_s=0.3,
    )
    port = await server.start()
    try:
        status, headers, body = await ask(port, b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"hello")
        assert headers["Content-Type"] == "text/plain"
        assert headers["Content-Length"] == "5"
        assert headers["Connection"] == "close"
        assert (await ask(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await ask(port, b"DELETE /fine HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await ask(port, b"garbage\r\n\r\n"))[0] == 400
        assert (await ask(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"))[0] == 400
        assert (await ask(port, b"GET /broken HTTP/1.1\r\n\r\n"))[0] == 500
        assert (await ask(port, b"GET /slow HTTP/1.1\r\n\r\n"))[0] == 503
        # A client that sends half a request and waits is dropped after the read timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /fine HTTP/1.1\r\n")
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        # A client that hangs up at once changes nothing.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        assert (await ask(port, b"GET /fine HTTP/1.1\r\n\r\n"))[0] == 200
    finally:
        await server.stop()


class Loop:
    def __init__(self, alive: bool) -> None:
        self.alive = alive
        self.spec = SimpleNamespace(stream=SimpleNamespace(name="CHAT"), durable="ingest")


def worker(
    *, failure: str | None = None, closed: bool = False, alive: bool = True, stopping: bool = False
) -> Any:
    nc = SimpleNamespace(is_closed=closed, is_connected=not closed)
    supervisor = SimpleNamespace(failure=failure, nc=nc, stopping=stopping)
    return SimpleNamespace(supervisor=supervisor, consumers=[Loop(alive)])


def failed(checks: list[Health]) -> list[str]:
    return [check.name for check in checks if not check.ok]


def test_liveness_fails_only_for_what_a_restart_heals() -> None:
    assert failed(live_checks(worker())) == []
    assert failed(live_checks(worker(failure="the pull loop crashed"))) == ["worker"]
    assert failed(live_checks(worker(closed=True))) == ["nats"]
    assert failed(live_checks(worker(closed=True, stopping=True))) == []  # asked to stop
    assert failed(live_checks(worker(alive=False))) == ["pull-loop:CHAT:ingest"]
    starting: Any = SimpleNamespace(
        supervisor=SimpleNamespace(failure=None, nc=None, stopping=False), consumers=[]
    )
    assert failed(live_checks(starting)) == []  # still connecting: alive
