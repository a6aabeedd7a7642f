"""Traces of a worker's events, against the real servers, read from the SDK's in-memory
exporter: the probe service (probe_service.py), which announces each message it applied
through the outbox and here cannot apply a message whose content is ``later`` yet.

The promises: a message's span is a child of the producer's ``traceparent`` (linked to its
batch's span) and ends with its outcome; the event it causes is published with a
``traceparent`` in the same trace, whose parent is the drain's publish span, itself a
child of the causing event's span.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from uuid import UUID

import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from contracts.chat import ChatEvent
from services.runtime.telemetry import Stats
from services.runtime.tracing import Tracing
from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.connected import probe_service as probe
from tests.connected.probe_service import ECHO
from tests.helpers import eventually, stored

pytestmark = pytest.mark.connected

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "b7ad6b7169203331"


def traceparent(trace_id: str = TRACE_ID, span_id: str = PRODUCER_SPAN) -> str:
    return f"00-{trace_id}-{span_id}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@asynccontextmanager
async def running(env: Env, exporter: InMemorySpanExporter) -> AsyncIterator[Worker]:
    """The probe, tracing into ``exporter``; a message whose content is ``later`` cannot
    be applied yet."""
    await probe.install(env)
    tracing = Tracing.exporting("probe", exporter, batch=False)
    async with probe.running(env, tracing, later_content="later") as worker:
        yield worker


async def publish(nc: NatsClient, event: ChatEvent, **headers: str) -> None:
    data = event.model_dump_json().encode()
    await nc.jetstream().publish(event.type, data, headers={**event.headers(), **headers})


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def by_event(exporter: InMemorySpanExporter, event_id: UUID) -> list[ReadableSpan]:
    return [
        s
        for s in spans(exporter, "process chat.message.created")
        if s.attributes and s.attributes.get("engram.event_id") == str(event_id)
    ]


def outcomes(found: list[ReadableSpan]) -> list[object]:
    return [s.attributes.get("engram.outcome") for s in found if s.attributes]


async def test_an_applied_event_is_a_child_of_its_producer_and_its_echo_follows(
    env: Env, nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    cid, correlation = uuid.uuid4(), uuid.uuid4()
    event = factories.message(cid).model_copy(update={"correlation_id": correlation})
    async with running(env, exporter) as worker:
        await publish(nc, event, traceparent=traceparent())
        echo_msgs = await eventually(lambda: stored(nc, ECHO), lambda msgs: len(msgs) == 1)
        assert worker.tracing.enabled
    [span] = by_event(exporter, event.event_id)
    assert span.kind is SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PRODUCER_SPAN
    attributes = dict(span.attributes or {})
    assert attributes["engram.outcome"] == "applied"
    assert attributes["engram.tenant_id"] == "acme"
    assert attributes["engram.event_type"] == "chat.message.created"
    assert attributes["engram.correlation_id"] == str(correlation)
    assert attributes["messaging.destination.name"] == "chat.message.created"
    assert attributes["engram.stream_sequence"] == 1
    assert attributes["engram.deliveries"] == 1
    # Its batch: linked from the event's span, counting the outcome.
    [batch] = spans(exporter, "consume CHAT")
    assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 1
    assert batch.attributes["messaging.consumer.group.name"] == "probe"
    assert batch.attributes["engram.outcome.applied"] == 1
    # The echo: published by the drain in a span that is a child of the event's span,
    # and carrying that publish span as its parent, in the producer's trace.
    [publish_span] = spans(exporter, f"publish {ECHO}")
    assert publish_span.kind is SpanKind.PRODUCER
    assert publish_span.parent is not None
    assert publish_span.parent.span_id == span.context.span_id
    assert publish_span.context.trace_id == span.context.trace_id
    headers = echo_msgs[0].headers or {}
    assert headers["traceparent"] == traceparent(TRACE_ID, f"{publish_span.context.span_id:016x}")


async def test_duplicates_retries_and_dead_letters_end_with_their_outcome(
    env: Env, nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    cid = uuid.uuid4()
    applied, later = factories.message(cid), factories.message(cid, content="later")
    async with running(env, exporter) as worker:
        await publish(nc, applied)  # no traceparent: its span is a child of its batch's
        await eventually(lambda: stored(nc, ECHO), bool)
        # The same event again under another message id: the inbox drops it.
        await publish(nc, applied, **{"Nats-Msg-Id": "again"})
        await nc.jetstream().publish(
            "chat.message.created",
            b'{"not": "an event"}',
            headers={"traceparent": traceparent(span_id="1111111111111111")},
        )
        await publish(nc, later, traceparent=traceparent(span_id="2222222222222222"))
        await eventually(
            lambda: stats_of(worker), lambda s: s.duplicates == 1 and s.dead == 2, timeout=30
        )
    assert outcomes(by_event(exporter, applied.event_id)) == ["applied", "duplicate"]
    first = by_event(exporter, applied.event_id)[0]
    assert first.parent in [s.context for s in spans(exporter, "consume CHAT")]
    assert not first.links
    # Not applicable yet: retried until max_deliver, then dead-lettered as exhausted.
    tries = by_event(exporter, later.event_id)
    assert outcomes(tries) == ["retried"] * 3 + ["dead-lettered"]
    assert [s.attributes["engram.deliveries"] for s in tries if s.attributes] == [1, 2, 3, 4]
    assert all(f"{s.context.trace_id:032x}" == TRACE_ID for s in tries)
    assert tries[-1].status.status_code is StatusCode.ERROR
    assert "exhausted" in str((tries[-1].attributes or {})["engram.reason"])
    # Broken: no event id to show, but a span with its outcome, in the producer's trace.
    [broken] = [s for s in spans(exporter, "process chat.message.created") if _no_id(s)]
    assert broken.parent is not None and f"{broken.parent.span_id:016x}" == "1111111111111111"
    assert (broken.attributes or {})["engram.outcome"] == "dead-lettered"
    assert "invalid: contract violation" in str((broken.attributes or {})["engram.reason"])


async def stats_of(worker: Worker) -> Stats:
    return worker.stats


def _no_id(span: ReadableSpan) -> bool:
    return "engram.event_id" not in (span.attributes or {})
