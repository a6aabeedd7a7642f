"""A worker's query routes answered on the test session's real nats-server by the runtime's
``QueryServer``, as `engram run` answers them, without the rest of the worker: a test
starts the components the routes read (pools, model) itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import asyncpg
from nats.aio.client import Client as NatsClient

from services.runtime.component import Component, WorkerContext
from services.runtime.query_server import QueryServer
from services.runtime.router import QueryRoute, QueryStats
from services.runtime.supervise import Supervisor
from services.runtime.tracing import Tracing
from services.runtime.worker import Worker

C = TypeVar("C", bound=Component)


@asynccontextmanager
async def answering(
    nc: NatsClient, routes: Sequence[QueryRoute], *, tracing: Tracing | None = None
) -> AsyncIterator[QueryServer]:
    server = QueryServer(
        routes, queue="tests", stats=QueryStats(), tracing=tracing or Tracing.off()
    )
    await server.start(cast(WorkerContext, SimpleNamespace(nc=nc)))  # it reads only nc
    try:
        yield server
    finally:
        await server.stop()


async def request(
    nc: NatsClient,
    subject: str,
    body: dict[str, Any] | bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[bytes, dict[str, str]]:
    """The reply's bytes and headers."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, data, timeout=timeout, headers=headers)
    return reply.data, dict(reply.headers or {})


async def ask_json(nc: NatsClient, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """The reply, decoded."""
    data, _ = await request(nc, subject, body)
    decoded: dict[str, Any] = json.loads(data)
    return decoded


async def start_component(worker: Worker, pool: asyncpg.Pool, component: C) -> C:
    """``component`` of ``worker`` started as the worker starts it once connected (on
    ``pool``; the NATS client handed to it is never connected: the routes' own is)."""
    ctx = WorkerContext(
        worker.settings, pool, NatsClient(), worker.outbox, Supervisor("tests", grace_s=1)
    )
    await component.start(ctx)
    return component
