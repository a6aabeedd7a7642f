"""A trace that is not sampled costs no span (docs/operations.md, "Tracing", "Sampling"):
the spans of a batch's messages and of outbox publishes are made only when they are
recorded, and the parent-based decision still travels on: a message whose producer
sampled its trace is recorded whatever its batch, and one whose producer did not passes
that decision on (dead letter, inbox, the events it causes).

What the worker asks of the SDK is seen through a sampler that counts its calls (every
span the SDK makes, recorded or not, asks it first) and the in-memory exporter."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from nats.aio.msg import Msg
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from contracts.chat import MessageCreated
from services.runtime.trace_context import sampled
from services.runtime.tracing import Tracing, cause_headers, publish_span
from services.runtime.tracing_events import EventSpans
from tests import factories

SAMPLED = f"00-{'a' * 32}-{'1' * 16}-01"
UNSAMPLED = f"00-{'b' * 32}-{'2' * 16}-00"


class Counting(Sampler):
    """The worker's sampler (``Tracing.exporting``), counting what it is asked."""

    def __init__(self, ratio: float) -> None:
        self.inner = ParentBased(TraceIdRatioBased(ratio))
        self.asked: list[tuple[str, Attributes]] = []

    def should_sample(  # noqa: PLR0917 (the SDK's signature)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.asked.append((name, attributes))
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "Counting(ParentBased(TraceIdRatioBased))"


def tracing(ratio: float) -> tuple[Tracing, Counting, InMemorySpanExporter]:
    sampler, exporter = Counting(ratio), InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("engram"), provider), sampler, exporter


class Consumed:
    def __init__(self, msg: Msg, event: MessageCreated) -> None:
        self.msg, self.event = msg, event


def consumed(traceparent: str | None, **more: str) -> Consumed:
    event = factories.message(uuid.uuid4())
    headers = event.headers() | ({"traceparent": traceparent} if traceparent else {}) | more
    msg = Msg(
        _client=None,  # type: ignore[arg-type]
        subject=event.type,
        reply="$JS.ACK.CHAT.probe.1.7.7.1765000000000000000.0",
        headers=headers,
    )
    return Consumed(msg, event)


def key(item: Consumed) -> tuple[str, uuid.UUID]:
    return (item.event.tenant_id, item.event.event_id)


def ack_all(spans: EventSpans, items: Sequence[Consumed]) -> None:
    new = {key(i) for i in items}
    for item in items:
        spans.acked(item, new)


def test_a_batch_not_sampled_makes_no_span_and_builds_no_attributes() -> None:
    traced, sampler, exporter = tracing(0.0)
    assert traced.tracer is not None
    spans = EventSpans(traced.tracer, "CHAT", "probe")
    items = [consumed(None), consumed(UNSAMPLED), consumed("garbage"), consumed(UNSAMPLED)]
    batch = spans.start(items, [(consumed(None).msg, "broken")])
    # One decision, the batch's, and without the attributes it would have had.
    assert sampler.asked == [("consume CHAT", None)]
    assert not spans.recording
    ack_all(spans, items)
    spans.end(batch)
    assert exporter.get_finished_spans() == ()
    assert sampler.asked == [("consume CHAT", None)]


def test_in_a_batch_not_sampled_only_the_producer_sampled_message_is_recorded() -> None:
    traced, sampler, exporter = tracing(0.0)
    assert traced.tracer is not None
    spans = EventSpans(traced.tracer, "CHAT", "probe")
    chosen = consumed(SAMPLED)
    items = [consumed(None), consumed(UNSAMPLED), chosen, consumed(UNSAMPLED)]
    batch = spans.start(items, [])
    assert [name for name, _ in sampler.asked] == ["consume CHAT", "process chat.message.created"]
    assert spans.recording
    ack_all(spans, items)
    spans.end(batch)
    [span] = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == "a" * 32
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "1" * 16
    [link] = span.links
    assert link.context.trace_id == batch.span.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["engram.event_id"] == str(chosen.event.event_id)
    assert span.attributes["engram.outcome"] == "applied"


def test_a_sampled_batch_records_every_message_but_the_ones_their_producer_did_not() -> None:
    traced, _, exporter = tracing(1.0)
    assert traced.tracer is not None
    spans = EventSpans(traced.tracer, "CHAT", "probe")
    items = [consumed(None), consumed(UNSAMPLED), consumed(SAMPLED)]
    batch = spans.start(items, [])
    ack_all(spans, items)
    spans.end(batch)
    finished = exporter.get_finished_spans()
    recorded = {
        s.attributes["engram.event_id"]
        for s in finished
        if s.attributes and s.name != "consume CHAT"
    }
    assert recorded == {str(items[0].event.event_id), str(items[2].event.event_id)}
    consume = next(s for s in finished if s.name == "consume CHAT")
    assert consume.attributes is not None
    assert consume.attributes["messaging.batch.message_count"] == 3
    assert consume.attributes["engram.outcome.applied"] == 2


def trace_id_of(headers: Mapping[str, str]) -> str:
    return headers["traceparent"].split("-")[1]


def test_a_message_not_sampled_passes_its_trace_context_on() -> None:
    traced, _, _ = tracing(0.0)
    assert traced.tracer is not None
    spans = EventSpans(traced.tracer, "CHAT", "probe")
    declined = consumed(UNSAMPLED, tracestate="vendor=x")
    bare, chosen = consumed(None), consumed(SAMPLED)
    items = [declined, bare, chosen]
    batch = spans.start(items, [])
    batch_trace = f"{batch.span.get_span_context().trace_id:032x}"
    # The dead letter: its producer's own context; a message with none, its batch's,
    # unsampled like it; a recorded one, its span's.
    assert spans.headers(declined.msg) == {"traceparent": UNSAMPLED, "tracestate": "vendor=x"}
    assert trace_id_of(spans.headers(bare.msg)) == batch_trace
    assert sampled(spans.headers(bare.msg)) is False
    assert trace_id_of(spans.headers(chosen.msg)) == "a" * 32
    assert sampled(spans.headers(chosen.msg)) is True
    # The inbox: the span of a recorded event, for a job that announces a result later.
    assert spans.recording
    assert spans.traceparent(declined.msg) is None
    assert spans.traceparent(bare.msg) is None
    chosen_tp = spans.traceparent(chosen.msg)
    assert chosen_tp is not None and trace_id_of({"traceparent": chosen_tp}) == "a" * 32
    # The events a handler announces while applying them.
    with spans.causes(items):
        assert cause_headers(*key(declined)) == {
            "traceparent": UNSAMPLED,
            "tracestate": "vendor=x",
        }
        assert trace_id_of(cause_headers(*key(bare))) == batch_trace
        assert trace_id_of(cause_headers(*key(chosen))) == "a" * 32
        assert cause_headers("acme", uuid.uuid4()) == {}
    ack_all(spans, items)
    spans.end(batch)


def test_a_batch_with_no_span_keeps_nothing_in_the_inbox() -> None:
    traced, _, _ = tracing(0.0)
    assert traced.tracer is not None
    spans = EventSpans(traced.tracer, "CHAT", "probe")
    items = [consumed(None), consumed(UNSAMPLED)]
    batch = spans.start(items, [])
    assert not spans.recording  # the pipeline then writes no traceparent column
    assert [spans.traceparent(item.msg) for item in items] == [None, None]
    spans.end(batch)


def test_an_outbox_row_whose_cause_was_not_sampled_is_published_without_a_span() -> None:
    traced, sampler, exporter = tracing(1.0)
    headers = {"traceparent": UNSAMPLED, "Nats-Msg-Id": "acme:1"}
    with publish_span(traced, "chat.echo", headers):
        pass
    assert sampler.asked == [] and exporter.get_finished_spans() == ()
    assert headers == {"traceparent": UNSAMPLED, "Nats-Msg-Id": "acme:1"}
    # A sampled cause's row: a recorded publish span, the parent it is published with.
    headers = {"traceparent": SAMPLED, "Nats-Msg-Id": "acme:2"}
    with publish_span(traced, "chat.echo", headers):
        pass
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["messaging.message.id"] == "acme:2"
    assert headers["traceparent"] == f"00-{'a' * 32}-{span.context.span_id:016x}-01"


def test_a_root_publish_the_ratio_does_not_sample_builds_no_attributes() -> None:
    traced, sampler, exporter = tracing(0.0)
    headers = {"Nats-Msg-Id": "acme:3"}
    with publish_span(traced, "chat.echo", headers):
        pass
    assert sampler.asked == [("publish chat.echo", None)]
    assert exporter.get_finished_spans() == ()
    assert sampled(headers) is False  # the next hop follows the decision
