"""Query spans (``runtime/query_server.py``), against a real nats-server: each request its
requester sampled is a span, a child of the request's ``traceparent``, that carries its
outcome and error code, and the reply names it as its parent; one its requester did not
sample has no span, and the reply names the requester's span, so what follows is not
sampled either; a worker that does not trace answers as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, Field

from contracts.errors import ErrorCode
from services.runtime.replies import QueryFailed
from services.runtime.router import QueryRoute
from services.runtime.tracing import Tracing
from tests.queries import answering, request

pytestmark = pytest.mark.connected

SUBJECT = "query.probe.echo"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class EchoRequest(BaseModel):
    tenant_id: str = Field(description="Whose data.", examples=["acme"])
    text: str = Field(description="What to echo; 'missing' and 'boom' fail.", examples=["hi"])


class EchoReply(BaseModel):
    status: str = "ok"
    text: str


async def echo(request: EchoRequest, limit: int) -> EchoReply:
    if request.text == "missing":
        raise QueryFailed(ErrorCode.not_found, "no such text")
    if request.text == "boom":
        raise RuntimeError("a bug")
    return EchoReply(text=request.text)


ROUTE = QueryRoute(SUBJECT, EchoRequest, echo, "Echoes.", "Ask for less.")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
async def traced(nc: NatsClient, exporter: InMemorySpanExporter) -> AsyncIterator[NatsClient]:
    tracing = Tracing.exporting("probe", exporter, batch=False)
    async with answering(nc, [ROUTE], tracing=tracing):
        yield nc
    tracing.shutdown()


async def ask(
    nc: NatsClient, body: dict[str, str] | bytes, traceparent: str | None = TRACEPARENT
) -> tuple[dict[str, object], dict[str, str]]:
    headers = {"traceparent": traceparent} if traceparent else None
    data, reply_headers = await request(nc, SUBJECT, body, headers=headers, timeout=5)
    return json.loads(data), reply_headers


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


async def test_a_query_is_a_child_of_the_requests_traceparent(
    traced: NatsClient, exporter: InMemorySpanExporter
) -> None:
    reply, headers = await ask(traced, {"tenant_id": "acme", "text": "hi"})
    assert reply == {"status": "ok", "text": "hi"}
    span = only_span(exporter)
    assert span.name == f"query {SUBJECT}"
    assert span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == SUBJECT
    assert span.attributes["engram.outcome"] == "ok"
    assert span.attributes["engram.tenant_id"] == "acme"
    assert "engram.error_code" not in span.attributes
    assert span.resource.attributes["service.name"] == "probe"
    # The reply names the query's span as its parent, in the same trace.
    assert headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"


async def test_error_replies_carry_their_code_and_only_faults_are_errors(
    traced: NatsClient, exporter: InMemorySpanExporter
) -> None:
    answers = [
        await ask(traced, {"tenant_id": "acme", "text": "missing"}),
        await ask(traced, {"tenant_id": "acme", "text": "boom"}),
        await ask(traced, b'{"tenant_id": 1}'),  # breaks the contract: refused before the handler
    ]
    assert [reply["code"] for reply, _ in answers] == ["not_found", "internal", "invalid"]
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    for span, (_, headers) in zip(spans, answers, strict=True):
        assert span.attributes is not None and span.attributes["engram.outcome"] == "error"
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert headers["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    codes = [s.attributes["engram.error_code"] for s in spans if s.attributes]
    assert codes == ["not_found", "internal", "invalid"]
    assert [s.status.status_code for s in spans] == [
        StatusCode.UNSET,  # the client's problem, answered
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]


async def test_without_a_traceparent_the_query_starts_a_trace(
    traced: NatsClient, exporter: InMemorySpanExporter
) -> None:
    _, headers = await ask(traced, {"tenant_id": "acme", "text": "hi"}, traceparent=None)
    span = only_span(exporter)
    assert span.parent is None
    assert headers["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


async def test_a_worker_that_does_not_trace_adds_no_header(nc: NatsClient) -> None:
    async with answering(nc, [ROUTE]):
        reply, headers = await ask(nc, {"tenant_id": "acme", "text": "hi"})
    assert reply == {"status": "ok", "text": "hi"}
    assert "traceparent" not in headers


async def test_a_request_its_requester_did_not_sample_gets_no_span_but_keeps_its_trace(
    traced: NatsClient, exporter: InMemorySpanExporter
) -> None:
    declined = f"00-{TRACE_ID}-{PARENT_ID}-00"
    answers = [
        await ask(traced, {"tenant_id": "acme", "text": "hi"}, traceparent=declined),
        await ask(traced, {"tenant_id": "acme", "text": "boom"}, traceparent=declined),
        await ask(traced, b'{"tenant_id": 1}', traceparent=declined),  # refused before the handler
    ]
    assert [reply.get("code") for reply, _ in answers] == [None, "internal", "invalid"]
    assert exporter.get_finished_spans() == ()
    # The reply names the requester's span: whatever follows stays out of the sample too.
    assert [headers["traceparent"] for _, headers in answers] == [declined] * 3
