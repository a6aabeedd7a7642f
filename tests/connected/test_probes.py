"""Every worker observable (issue 14): its HTTP port serves Prometheus metrics and the
two health probes, scraped here as Prometheus and Kubernetes would, from a worker in this
process and from `engram run` as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.bus_setup import setup_bus
from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.connected.proxy_fixtures import *  # noqa: F403 - the fixtures
from tests.connected.test_worker_exit import OwnNats
from tests.helpers import eventually, publish, publish_raw
from tests.proxy import PostgresCut

pytestmark = pytest.mark.connected
ENGRAM = str(Path(sys.executable).parent / "engram")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of ``GET path``; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, "", b""


async def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, _, body = await asyncio.to_thread(get, port, path)
    return status, (json.loads(body) if status else {})


async def scrape(port: int) -> Samples:
    status, content_type, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def failing(body: dict[str, Any]) -> list[str]:
    return [check["name"] for check in body.get("checks", []) if not check["ok"]]


async def test_metrics_and_probes_follow_the_worker(
    nc: NatsClient,
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
    cut: tuple[PostgresCut, str],
) -> None:
    proxy, through_proxy = cut
    cid = uuid.uuid4()
    async with run_ingest(http_port=0, http_host="127.0.0.1", database_url=through_proxy) as w:
        port = w.http_port
        assert port
        status, body = await probe(port, "/health/live")
        assert status == 200 and body["ok"] is True, body
        status, body = await eventually(lambda: probe(port, "/health/ready"), lambda r: r[0] == 200)
        names = {check["name"] for check in body["checks"]}
        assert {"started", "nats", "postgres", "migrations"} <= names
        assert body["ok"] is True

        before = await scrape(port)
        assert value(before, "engram_events_applied_total", service="ingest") == 0
        lag = {"service": "ingest", "stream": "CHAT", "consumer": "ingest"}
        for gauge in ("pending", "ack_pending", "redelivered"):
            assert value(before, f"engram_consumer_{gauge}", **lag) is not None, gauge
        assert value(before, "engram_component_up", service="ingest", component="database") == 1
        assert value(before, "engram_database_unreachable", service="ingest") == 0

        await publish(nc, factories.conversation(cid), *(factories.message(cid) for _ in range(5)))

        async def applied() -> float | None:
            return value(await scrape(port), "engram_events_applied_total", service="ingest")

        await eventually(applied, lambda n: n == 6)
        after = await scrape(port)
        assert value(after, "engram_batch_size_count", service="ingest") >= 1  # type: ignore[operator]
        assert value(after, "engram_batch_size_sum", service="ingest") == 6
        assert value(after, "engram_commit_seconds_count", service="ingest") >= 1  # type: ignore[operator]
        assert value(after, "engram_consumer_pending", **lag) == 0

        await publish_raw(nc, "chat.message.created", b"{not an event")

        async def dead() -> float | None:
            return value(await scrape(port), "engram_events_dead_lettered_total", service="ingest")

        await eventually(dead, lambda n: n == 1)

        # PostgreSQL cut: not ready (the worker cannot work), but alive (it waits on purpose).
        proxy.cut()
        status, body = await eventually(
            lambda: probe(port, "/health/ready"), lambda r: r[0] == 503, timeout=10
        )
        assert "postgres" in failing(body), body
        status, body = await probe(port, "/health/live")
        assert status == 200, body
        await publish(nc, factories.message(cid))  # meets the outage
        await eventually(
            lambda: scrape(port),
            lambda s: value(s, "engram_database_unreachable", service="ingest") == 1,
            timeout=10,
        )
        assert (await probe(port, "/health/live"))[0] == 200
        samples = await scrape(port)  # a scrape still answers, NATS parts included
        assert value(samples, "engram_consumer_pending", **lag) is not None

        proxy.restore()
        await eventually(lambda: probe(port, "/health/ready"), lambda r: r[0] == 200, timeout=30)
        await eventually(applied, lambda n: n == 7, timeout=30)
        outages = value(await scrape(port), "engram_database_outages_total", service="ingest")
        assert outages is not None and outages >= 1

        assert (await asyncio.to_thread(get, port, "/nope"))[0] == 404


async def test_no_port_unless_asked(
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
) -> None:
    async with run_ingest() as worker:
        assert worker.http_port is None and worker.probes is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ingest_process(env: Env, port: int, log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    return subprocess.Popen(
        [ENGRAM, "run", "ingest"],
        env={
            **base,
            "NATS_URL": env.nats_login("ingest"),
            "DATABASE_URL": env.login("ingest"),
            "INGEST_HTTP_PORT": str(port),
            "INGEST_HTTP_HOST": "127.0.0.1",
            "INGEST_FETCH_WAIT_S": "0.5",
            "INGEST_DRAIN_TIMEOUT_S": "5",
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def test_engram_run_serves_metrics_probes_and_json_logs(
    env: Env, nc: NatsClient, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "run.log"
    proc = run_ingest_process(env, port, log)
    try:
        await eventually(
            lambda: probe(port, "/health/ready"), lambda r: r[0] == 200, timeout=60, interval=0.3
        )
        assert (await probe(port, "/health/live"))[0] == 200
        cid = uuid.uuid4()
        await publish(nc, factories.conversation(cid), *(factories.message(cid) for _ in range(3)))
        await eventually(
            lambda: scrape(port),
            lambda s: value(s, "engram_events_applied_total", service="ingest") == 4,
            timeout=30,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "\x1b[" not in output  # no ANSI colour codes in a file
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert any(re.search(rf"probes on http://127\.0\.0\.1:{port}", r["message"]) for r in records)


# What each worker measures of its own beyond the runtime's counters.
OWN_MEASURES = {
    "ingest": [],
    "embedder": ["engram_embed_texts_total", "engram_outbox_depth"],
    "memory": ["engram_consolidation_seconds_count", "engram_outbox_depth"],
    "checkpointer": ["engram_outbox_depth"],
    "audit": [],
}


def run_process(
    service: str, env: Env, port: int, log: Path, nats_url: str | None = None
) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    prefix = service.upper()
    return subprocess.Popen(
        [ENGRAM, "run", service],
        env={
            **base,
            "NATS_URL": nats_url or env.nats_login(service),
            "DATABASE_URL": env.login(service),
            f"{prefix}_HTTP_PORT": str(port),
            f"{prefix}_HTTP_HOST": "127.0.0.1",
            f"{prefix}_FETCH_WAIT_S": "0.5",
            f"{prefix}_DRAIN_TIMEOUT_S": "5",
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("service", list(OWN_MEASURES))
async def test_every_worker_run_alone_is_observable(
    env: Env, nc: NatsClient, tmp_path: Path, service: str
) -> None:
    port, log = free_port(), tmp_path / "run.log"
    proc = run_process(service, env, port, log)
    try:
        await eventually(
            lambda: probe(port, "/health/ready"), lambda r: r[0] == 200, timeout=120, interval=0.5
        )
        assert (await probe(port, "/health/live"))[0] == 200
        samples = await scrape(port)
        names = {name for name, _ in samples}
        assert value(samples, "engram_events_applied_total", service=service) == 0
        assert {
            "engram_consumer_pending",
            "engram_component_up",
            "engram_commit_seconds_count",
        } <= (names), sorted(names)
        assert set(OWN_MEASURES[service]) <= names, sorted(names)
        parts = [labels for name, labels in samples if name == "engram_scrape_part_up"]
        assert parts and all(samples[("engram_scrape_part_up", p)] == 1 for p in parts)
        if service == "checkpointer":  # it reads only STATE; it answers queries
            await nc.request("query.state.get", b"{}", timeout=10)  # breaks the contract
            samples = await scrape(port)
            subject = {"service": service, "subject": "query.state.get"}
            assert value(samples, "engram_queries_total", **subject) == 1
            assert value(samples, "engram_query_seconds_count", **subject) == 0  # not timed
            assert value(samples, "engram_query_errors_total", code="invalid", **subject) == 1
        else:
            cid, sid = uuid.uuid4(), uuid.uuid4()
            await publish(
                nc,
                factories.conversation(cid),
                factories.message(cid),
                factories.session_start(sid, cid),
                factories.session_end(sid, cid),
            )
            await eventually(
                lambda: scrape(port),
                lambda s: (value(s, "engram_events_applied_total", service=service) or 0) >= 1,
                timeout=60,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "\x1b[" not in output
    for line in filter(str.strip, output.splitlines()):  # FastStream's access log too
        assert {"ts", "level", "logger", "message"} <= set(json.loads(line)), line


async def test_a_worker_that_loses_nats_says_so_on_its_port(env: Env, tmp_path: Path) -> None:
    """Unreachable at start, `engram run` exits with one line (tests/connected/
    test_cli_errors.py); lost later, the worker waits for NATS and its port says so: ready
    503 naming `nats`, live 200 (restarting it would not bring NATS back)."""
    server = OwnNats(tmp_path / "nats")
    server.start()
    await setup_bus(server.url)
    port, log = free_port(), tmp_path / "run.log"
    proc = run_process("ingest", env, port, log, nats_url=server.url)
    try:
        await eventually(
            lambda: probe(port, "/health/ready"), lambda r: r[0] == 200, timeout=60, interval=0.3
        )
        server.stop()
        _, body = await eventually(
            lambda: probe(port, "/health/ready"), lambda r: r[0] == 503, timeout=30, interval=0.3
        )
        assert "nats" in failing(body), body
        assert (await probe(port, "/health/live"))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        server.stop()


async def test_not_ready_until_the_migrations_are_at_head(
    db: asyncpg.Connection,
    run_ingest: Callable[..., AbstractAsyncContextManager[Worker]],
) -> None:
    last = await db.fetchval("SELECT max(name) FROM ingest.schema_migrations")
    await db.execute("DELETE FROM ingest.schema_migrations WHERE name = $1", last)
    async with run_ingest(http_port=0, http_host="127.0.0.1") as worker:
        assert worker.http_port
        status, body = await probe(worker.http_port, "/health/ready")
        assert status == 503 and failing(body) == ["migrations"], body
        detail = next(c["detail"] for c in body["checks"] if c["name"] == "migrations")
        assert last in detail
        assert (await probe(worker.http_port, "/health/live"))[0] == 200
        await db.execute(
            "INSERT INTO ingest.schema_migrations (name, checksum) VALUES ($1, '')", last
        )
        status, body = await probe(worker.http_port, "/health/ready")
        assert status == 200, body
