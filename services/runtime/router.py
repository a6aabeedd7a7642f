"""The one query router: every request/reply subject of every service is a ``QueryRoute``.

A service declares its routes in its assembly; the worker answers them all in one queue
group (replicas share the queries) on its own NATS connection (``query_server.py``):
the request validated against its contract (one that breaks it is answered ``invalid``
before reaching the handler), errors mapped to the one ``QueryError`` in
``replies.query_failure``, a reply over the connection's ``max_payload`` answered
``too_large`` with the route's hint, each answer's latency and outcome counted per
subject (``QueryStats``), and a span per request when the worker traces.

FastStream does not serve the routes; ``describe_routes`` declares them on the worker's
documentation broker only, so the AsyncAPI document shows each subject with its request
schema (docs/architecture.md, "One query transport").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream.nats import NatsBroker
from pydantic import BaseModel

from contracts.errors import ErrorCode, QueryError
from services.runtime.telemetry import Histogram, seconds_histogram

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


def describe_routes(broker: NatsBroker, routes: Sequence[QueryRoute], *, queue: str) -> None:
    """Declares ``routes`` on ``broker``, a documentation broker that is never started: the
    AsyncAPI document's view of them (subject, queue, description, request schema)."""
    for route in routes:

        async def handler(request: Any) -> Any:
            raise AssertionError("documentation only: query_server.py answers the route")

        handler.__annotations__["request"] = route.request
        broker.subscriber(
            route.subject,
            queue=queue,
            title=route.subject,
            description=route.description,
            max_workers=route.max_workers,
        )(handler)


def query_attributes(subject: str) -> dict[str, str]:
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": subject,
    }
