"""OpenTelemetry traces of a worker, exported by OTLP/HTTP only when configured.

Off by default: ``Tracing.off()`` holds no tracer, and the pipeline, the router and the
outbox check ``enabled`` before they read a header or make a span, so a worker without an
endpoint pays nothing per event. With one (``<PREFIX>OTLP_ENDPOINT``, or the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``), each worker has
its own ``TracerProvider`` (``engram dev`` runs five in one process, each its own
``service.name``) with a ``BatchSpanProcessor``, flushed when the worker stops.

What is traced (docs/operations.md, "Tracing"):

- a span per consumed batch (``tracing_events.py``), and one per message in it: its parent
  is the producer's span when the message carries a W3C ``traceparent`` header (linked to
  the batch span), else the batch span. It ends with the message's outcome;
- the outbox: an event a handler announces while applying an event carries that event's
  span as its ``traceparent`` (found by its ``causation_id``), and the drain's publish span
  is its child and, in turn, the parent it is published with (``publish_span``); an event
  a background job announces later finds its cause's span in the inbox, where the claim
  wrote it (``Outbox.add``);
- each query served, a child of the request's ``traceparent``; the reply carries the
  query span's (``router.py``).

Sampling is parent-based: what a producer decided holds for the whole trace, and only a
trace a worker starts (a batch, a request or a publish with no ``traceparent``) is sampled
at ``<PREFIX>OTLP_SAMPLE_RATIO``. What would not be recorded is not made: a message whose
``traceparent`` says its producer did not sample it gets no span (the flag is read without
the SDK, ``trace_context.py``) and passes that ``traceparent`` on where its span's would
go (dead letter, inbox, announced events, reply), so the next hop does not sample it
either; in a batch not sampled, a message with no ``traceparent`` gets no span. A trace
not sampled then costs a header read per message.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanKind,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.runtime.trace_context import unsampled

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from services.runtime.settings import WorkerSettings

PROPAGATOR = TraceContextTextMapPropagator()
SCOPE = "engram"


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


# While a batch's events are applied: (tenant, event id) -> the trace headers an event it
# causes carries (its span's, or its unsampled producer's own), so that an event a handler
# announces (``outbox.Outgoing.event``) continues its cause's trace. Looked up lazily: a
# batch whose handlers announce nothing pays nothing per event (``tracing_events.Causes``).
_CAUSES: contextvars.ContextVar[Mapping[tuple[str, UUID], Mapping[str, str]] | None] = (
    contextvars.ContextVar("engram_trace_causes", default=None)
)


@contextlib.contextmanager
def causing(causes: Mapping[tuple[str, UUID], Mapping[str, str]]) -> Iterator[None]:
    """While events are applied: their trace headers by (tenant, event id), for
    ``cause_headers``."""
    token = _CAUSES.set(causes)
    try:
        yield
    finally:
        _CAUSES.reset(token)


def applying() -> bool:
    """Whether a batch's events are being applied (in this task): an announcement made
    outside one is a background job's, whose cause's span ended long ago."""
    return _CAUSES.get() is not None


def cause_headers(tenant_id: str, causation_id: UUID | None) -> dict[str, str]:
    """The trace context of the event being applied that caused this one, or nothing."""
    causes = _CAUSES.get()
    if causes is None or causation_id is None:
        return {}
    return dict(causes.get((tenant_id, causation_id), {}))


@contextlib.contextmanager
def publish_span(tracing: Tracing, subject: str, headers: dict[str, str]) -> Iterator[None]:
    """Around one outbox publish: a producer span, a child of the ``traceparent`` the row
    was written with; ``headers`` then name it as the published message's parent. A row
    whose cause was not sampled gets none (it would not be recorded): it is published with
    the cause's ``traceparent``, so the next worker does not sample it either."""
    if tracing.tracer is None or unsampled(headers):
        yield
        return
    with tracing.tracer.start_as_current_span(
        f"publish {subject}", context=parent_of(headers), kind=SpanKind.PRODUCER
    ) as span:
        if span.is_recording():  # a root the ratio did not sample costs no more than this
            span.set_attributes(
                {
                    "messaging.system": "nats",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": subject,
                    "messaging.message.id": headers.get("Nats-Msg-Id", ""),
                }
            )
        headers.update(headers_of(span))
        yield
