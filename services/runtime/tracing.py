"""OpenTelemetry traces of a worker, exported by OTLP/HTTP only when configured.

Off by default: ``Tracing.off()`` holds no tracer, and the pipeline, the router and the
outbox check ``enabled`` before they read a header or make a span, so a worker without an
endpoint pays nothing per event. With one (``<PREFIX>OTLP_ENDPOINT``, or the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``), each worker has
its own ``TracerProvider`` (``engram dev`` runs five in one process, each its own
``service.name``) with a ``BatchSpanProcessor``, flushed when the worker stops.

What is traced (docs/operations.md, "Tracing"):

- a span per consumed batch (``EventSpans.start``), and one per message in it: its parent
  is the producer's span when the message carries a W3C ``traceparent`` header (linked to
  the batch span), else the batch span. It ends with the message's outcome;
- the outbox: an event a handler announces while applying an event carries that event's
  span as its ``traceparent`` (found by its ``causation_id``), and the drain's publish span
  is its child and, in turn, the parent it is published with (``publish_span``);
- each query served, a child of the request's ``traceparent``; the reply carries the
  query span's (``router.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from services.runtime.settings import WorkerSettings

PROPAGATOR = TraceContextTextMapPropagator()
SCOPE = "engram"


class Outcome(StrEnum):
    """What became of a consumed message (the ``engram.outcome`` of its span)."""

    applied = "applied"
    duplicate = "duplicate"  # its event id was in the inbox already: acked, no effect
    dead_lettered = "dead-lettered"
    retried = "retried"  # naked, delivered again later
    returned = "returned"  # its batch failed on a bug; naked


class Traced(Protocol):
    """What an event span reads of a decoded event (``pipeline.Event``)."""

    @property
    def event_id(self) -> UUID: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def type(self) -> str: ...


class Consumed(Protocol):
    """A decoded message of a batch (``pipeline.Item``)."""

    @property
    def msg(self) -> Msg: ...

    @property
    def event(self) -> Traced: ...


def parent_of(headers: Mapping[str, str] | None) -> Context | None:
    """The remote span context of a message's ``traceparent``, or None without a valid one."""
    if not headers or "traceparent" not in headers:
        return None
    context = PROPAGATOR.extract(headers)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def headers_of(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier


def instance_id() -> str:
    # A pod's host name is its name; the pid tells apart workers on one host (compose, dev).
    return f"{socket.gethostname()}:{os.getpid()}"


class Tracing:
    """A worker's tracer, or none (the default)."""

    def __init__(self, tracer: Tracer | None = None, provider: Any = None) -> None:
        self.tracer = tracer
        self._provider = provider

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    @classmethod
    def for_worker(cls, service: str, settings: WorkerSettings) -> Tracing:
        """OTLP/HTTP to the configured endpoint, in batches; off when none is."""
        endpoint = settings.traces_endpoint
        if endpoint is None:
            return cls.off()
        # Imported only here: a worker that does not trace never loads the SDK.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls.exporting(
            service, OTLPSpanExporter(endpoint=endpoint), sample_ratio=settings.otlp_sample_ratio
        )

    @classmethod
    def exporting(
        cls, service: str, exporter: SpanExporter, *, batch: bool = True, sample_ratio: float = 1.0
    ) -> Tracing:
        """Spans of ``service`` sent to ``exporter`` (tests: unbatched, to read at once)."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = Resource.create(
            {
                "service.name": service,
                "service.namespace": "engram",
                "service.instance.id": instance_id(),
            }
        )
        # A sampled (or unsampled) producer decides for the whole trace; a root (a message
        # that arrived with no traceparent) is sampled at the ratio.
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider.get_tracer(SCOPE), provider)

    def shutdown(self) -> None:
        """Export what is left and stop (blocks up to the exporter's timeout)."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None


# While a batch's events are applied: (tenant, event id) -> its span, so that an event a
# handler announces (``outbox.Outgoing.event``) names its cause's span as its parent.
_CAUSES: contextvars.ContextVar[Mapping[tuple[str, UUID], Span] | None] = contextvars.ContextVar(
    "engram_trace_causes", default=None
)


def cause_headers(tenant_id: str, causation_id: UUID | None) -> dict[str, str]:
    """The ``traceparent`` of the event being applied that caused this one, or nothing."""
    causes = _CAUSES.get()
    if causes is None or causation_id is None:
        return {}
    span = causes.get((tenant_id, causation_id))
    return {} if span is None else headers_of(span)


@dataclass
class BatchTrace:
    span: Span
    msgs: Sequence[Msg]
    outcomes: dict[str, int] = field(default_factory=dict)


class EventSpans:
    """The spans of one durable consumer's batches and of their messages. Each message's
    span is open from its decoding until ``settle`` records its outcome."""

    def __init__(self, tracer: Tracer, stream: str, durable: str) -> None:
        self._tracer = tracer
        self._stream = stream
        self._durable = durable
        self._open: dict[int, tuple[Span, BatchTrace]] = {}  # by id(msg)

    def start(self, items: Sequence[Consumed], invalid: Sequence[tuple[Msg, str]]) -> BatchTrace:
        """The batch's span and one per message, decoded or broken (``invalid``)."""
        events = [(item.msg, item.event) for item in items] + [(m, None) for m, _ in invalid]
        span = self._tracer.start_span(
            f"consume {self._stream}",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "receive",
                "messaging.consumer.group.name": self._durable,
                "messaging.batch.message_count": len(events),
                "engram.stream": self._stream,
            },
        )
        batch = BatchTrace(span, [msg for msg, _ in events])
        for msg, event in events:
            self._open[id(msg)] = (self._event_span(msg, event, span), batch)
        return batch

    def _event_span(self, msg: Msg, event: Traced | None, batch: Span) -> Span:
        attributes: dict[str, str | int] = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": msg.subject,
            "messaging.consumer.group.name": self._durable,
            "engram.stream": self._stream,
        }
        with contextlib.suppress(Exception):  # not a JetStream message (tests)
            attributes["engram.stream_sequence"] = msg.metadata.sequence.stream
            attributes["engram.deliveries"] = msg.metadata.num_delivered
        if event is not None:
            attributes["engram.event_id"] = str(event.event_id)
            attributes["engram.tenant_id"] = event.tenant_id
            attributes["engram.event_type"] = event.type
            for name in ("correlation_id", "causation_id"):
                if (value := getattr(event, name, None)) is not None:
                    attributes[f"engram.{name}"] = str(value)
        producer = parent_of(msg.headers)
        return self._tracer.start_span(
            f"process {msg.subject}",
            context=producer if producer is not None else trace.set_span_in_context(batch),
            kind=SpanKind.CONSUMER,
            links=[Link(batch.get_span_context())] if producer is not None else None,
            attributes=attributes,
        )

    def settle(self, msg: Msg, outcome: Outcome, reason: str = "") -> None:
        opened = self._open.pop(id(msg), None)
        if opened is None:
            return
        span, batch = opened
        span.set_attribute("engram.outcome", outcome.value)
        if reason:
            span.set_attribute("engram.reason", reason)
        if outcome in (Outcome.dead_lettered, Outcome.returned):
            span.set_status(Status(StatusCode.ERROR, reason or outcome.value))
        span.end()
        batch.outcomes[outcome.value] = batch.outcomes.get(outcome.value, 0) + 1

    def acked(self, item: Consumed, new: set[tuple[str, UUID]]) -> None:
        """Acked after the commit: applied if its key is ``new`` (the inbox had not seen
        it; the first of a key in the batch takes it), else a duplicate."""
        key = (item.event.tenant_id, item.event.event_id)
        self.settle(item.msg, Outcome.applied if key in new else Outcome.duplicate)
        new.discard(key)

    @contextlib.contextmanager
    def causes(self, items: Sequence[Consumed]) -> Iterator[None]:
        """While the batch's events are applied: what ``cause_headers`` finds."""
        spans = {
            (item.event.tenant_id, item.event.event_id): opened[0]
            for item in items
            if (opened := self._open.get(id(item.msg))) is not None
        }
        token = _CAUSES.set(spans)
        try:
            yield
        finally:
            _CAUSES.reset(token)

    def end(self, batch: BatchTrace) -> None:
        """The batch is over: a message with no outcome yet was returned by a failure."""
        for msg in batch.msgs:
            self.settle(msg, Outcome.returned, "its batch failed")
        for outcome, count in batch.outcomes.items():
            batch.span.set_attribute(f"engram.outcome.{outcome}", count)
        batch.span.end()


@contextlib.contextmanager
def publish_span(tracing: Tracing, subject: str, headers: dict[str, str]) -> Iterator[None]:
    """Around one outbox publish: a producer span, a child of the ``traceparent`` the row
    was written with; ``headers`` then name it as the published message's parent."""
    if tracing.tracer is None:
        yield
        return
    with tracing.tracer.start_as_current_span(
        f"publish {subject}",
        context=parent_of(headers),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": headers.get("Nats-Msg-Id", ""),
        },
    ) as span:
        headers.update(headers_of(span))
        yield
