"""Spans of a direct route (``runtime/direct.py``, answered on the worker's NATS
connection), against a real nats-server: a request its requester sampled is a span, a
child of its ``traceparent``, that the reply names; one its requester did not sample has
no span, and the reply names the requester's span, so what follows is not sampled either."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime.component import WorkerContext
from services.runtime.direct import DirectQueries
from services.runtime.router import QueryStats
from services.runtime.tracing import Tracing
from tests.broker.test_query_tracing import ROUTE, SUBJECT, TRACE_ID, TRACEPARENT

pytestmark = pytest.mark.connected

DECLINED = TRACEPARENT.removesuffix("-01") + "-00"


@pytest.fixture
async def exporter(nc: NatsClient) -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting("probe", exporter, batch=False)
    route = dataclasses.replace(ROUTE, direct=True)
    queries = DirectQueries([route], queue="probe", stats=QueryStats(), tracing=tracing)
    await queries.start(cast(WorkerContext, SimpleNamespace(nc=nc)))  # it reads only nc
    yield exporter
    await queries.stop()
    tracing.shutdown()


async def ask(nc: NatsClient, traceparent: str, text: str = "hi") -> tuple[str, dict[str, str]]:
    body = json.dumps({"tenant_id": "acme", "text": text}).encode()
    reply = await nc.request(SUBJECT, body, timeout=5, headers={"traceparent": traceparent})
    return json.loads(reply.data).get("code", "ok"), dict(reply.headers or {})


async def test_only_a_sampled_request_is_a_span_and_every_reply_keeps_its_trace(
    nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    assert await ask(nc, DECLINED) == ("ok", {"traceparent": DECLINED})
    assert await ask(nc, DECLINED, "boom") == ("internal", {"traceparent": DECLINED})
    assert exporter.get_finished_spans() == ()
    outcome, headers = await ask(nc, TRACEPARENT)
    [span] = exporter.get_finished_spans()
    assert outcome == "ok"
    assert span.name == f"query {SUBJECT}"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == SUBJECT
    assert span.attributes["engram.outcome"] == "ok"
    assert headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
