"""The one query router: every request/reply subject of every service is a ``QueryRoute``.

A service declares its routes in its assembly; the worker app subscribes them all in one
queue group (replicas share the queries) through ``serve_routes``. The request is the
handler's typed parameter, so FastStream validates it and the AsyncAPI document shows its
schema; a request that breaks it is answered ``invalid`` by the router's exception
middleware instead of reaching the handler. Errors map to the one ``QueryError`` in
``replies.query_failure``; a reply over the connection's ``max_payload`` is answered
``too_large`` with the route's hint; each answer's latency and outcome are counted per
subject (``QueryStats``). When the worker traces, each request served is a span (a child of
the request's ``traceparent``), and the reply names it as its parent; a request whose
requester did not sample its trace gets none, and the reply names the requester's span.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream import BaseMiddleware, ExceptionMiddleware, StreamMessage
from faststream.nats import NatsBroker, NatsResponse, NatsRouter
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from pydantic import BaseModel

from contracts.errors import ErrorCode, QueryError
from services.runtime.replies import fit, query_failure, reply_limit
from services.runtime.telemetry import Histogram, seconds_histogram
from services.runtime.tracing import Tracing, headers_of, parent_of, unsampled_parent

# Codes that are the server's fault: their spans are errors (the others answer the client).
SERVER_FAULTS = frozenset({ErrorCode.internal, ErrorCode.unavailable})


@dataclass(frozen=True)
class QueryRoute:
    """One request/reply subject: its request contract, its handler and how it answers."""

    subject: str
    request: type[BaseModel]
    handle: Callable[[Any, int], Awaitable[BaseModel]]  # (request, reply bytes) -> result
    description: str
    hint: str  # what to ask instead when the answer does not fit in one message
    unavailable: tuple[type[BaseException], ...] = ()  # failures that mean "try later"
    max_workers: int = 1  # requests of this subject answered at once by one replica
    # Answered on the NATS connection itself, not through FastStream (runtime/direct.py):
    # for a subject asked at every step of a client's loop, where FastStream's per-message
    # cost would be most of the answer's.
    direct: bool = False


@dataclass
class SubjectStats:
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by error code
    total_ms: float = 0.0
    last_ms: float = 0.0
    seconds: Histogram = field(default_factory=seconds_histogram)  # answer latency


@dataclass
class QueryStats:
    """What a worker answered, per subject (read by `engram dev` and the metrics)."""

    subjects: dict[str, SubjectStats] = field(default_factory=dict)

    def record(self, subject: str, elapsed_s: float | None, error: QueryError | None) -> None:
        """One answer; ``elapsed_s`` None for a request refused before its handler ran
        (it breaks the contract): counted, and its error, but not timed."""
        stats = self.subjects.setdefault(subject, SubjectStats())
        stats.answered += 1
        if elapsed_s is not None:
            stats.last_ms = elapsed_s * 1000
            stats.total_ms += stats.last_ms
            stats.seconds.observe(elapsed_s)
        if error is not None:
            stats.errors[error.code.value] = stats.errors.get(error.code.value, 0) + 1


def serve_routes(
    broker: NatsBroker,
    routes: Sequence[QueryRoute],
    *,
    queue: str,
    stats: QueryStats,
    tracing: Tracing | None = None,
) -> None:
    for route in routes:
        _serve(broker, route, queue, stats, tracing or Tracing.off())


def query_attributes(subject: str) -> dict[str, str]:
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": subject,
    }


def query_spans(tracer: Tracer, subject: str) -> type[BaseMiddleware[Any, Any]]:
    """A middleware that serves each request of ``subject`` inside a span of its own."""

    class QuerySpan(BaseMiddleware[Any, Any]):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            # A request its requester did not sample gets no span of its own: the
            # requester's stands in (unrecorded), so the reply names it.
            if (requester := unsampled_parent(msg.headers)) is not None:
                with trace.use_span(requester):
                    return await call_next(msg)
            with tracer.start_as_current_span(
                f"query {subject}", context=parent_of(msg.headers), kind=SpanKind.SERVER
            ) as span:
                if span.is_recording():
                    span.set_attributes(query_attributes(subject))
                return await call_next(msg)

    return QuerySpan


def _traced(data: bytes, error: QueryError | None, request: Any = None) -> NatsResponse:
    """The reply, naming the current query span as its parent; its outcome on the span."""
    span = trace.get_current_span()
    span.set_attribute("engram.outcome", "ok" if error is None else "error")
    if (tenant := getattr(request, "tenant_id", None)) is not None:
        span.set_attribute("engram.tenant_id", str(tenant))
    if error is not None:
        span.set_attribute("engram.error_code", error.code.value)
        if error.code in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, error.message))
    return NatsResponse(data, headers=headers_of(span))


def _serve(
    broker: NatsBroker, route: QueryRoute, queue: str, stats: QueryStats, tracing: Tracing
) -> None:
    subject = route.subject

    def failed(exc: Exception) -> bytes | NatsResponse:  # the request broke its contract
        error = query_failure(exc, subject)
        stats.record(subject, None, error)
        data = fit(error, reply_limit(broker), subject, route.hint)
        return data if not tracing.enabled else _traced(data, error)

    middlewares: list[Any] = [ExceptionMiddleware(publish_handlers={Exception: failed})]
    if tracing.tracer is not None:  # outermost: the span holds the contract's refusal too
        middlewares.insert(0, query_spans(tracing.tracer, subject))
    router = NatsRouter(middlewares=middlewares)

    async def handler(request: Any) -> bytes | NatsResponse:
        limit = reply_limit(broker)
        started = time.perf_counter()
        error: QueryError | None = None
        reply: BaseModel
        try:
            reply = await route.handle(request, limit)
        except Exception as exc:
            reply = error = query_failure(exc, subject, route.unavailable)
        stats.record(subject, time.perf_counter() - started, error)
        data = fit(reply, limit, subject, route.hint)
        return data if not tracing.enabled else _traced(data, error, request)

    handler.__annotations__["request"] = route.request
    # Not cast: the reply is bytes, or a NatsResponse (its bytes and trace headers).
    handler.__annotations__["return"] = Any
    router.subscriber(
        subject,
        queue=queue,
        title=subject,
        description=route.description,
        max_workers=route.max_workers,
    )(handler)
    broker.include_router(router)
