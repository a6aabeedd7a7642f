"""The spans of a durable consumer's batches and of each message in them (``pipeline.py``).

A batch's span (``consume <stream>``) is open from its decoding until its last message is
settled; each message's (``process <subject>``) is a child of the producer's span when the
message carries a ``traceparent`` (then linked to the batch's), else of the batch's, and
ends with its outcome (``engram.outcome``). See docs/operations.md, "Tracing".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from services.runtime.tracing import causing, headers_of, parent_of


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
            producer = parent_of(msg.headers)
            # A message with no trace of its own in a batch not sampled would have a span
            # not sampled either: none is made (settle finds none), the cheap common case.
            if producer is not None or span.is_recording():
                self._open[id(msg)] = (self._event_span(msg, event, span, producer), batch)
        return batch

    def _event_span(
        self, msg: Msg, event: Traced | None, batch: Span, producer: Context | None
    ) -> Span:
        span = self._tracer.start_span(
            f"process {msg.subject}",
            context=producer if producer is not None else trace.set_span_in_context(batch),
            kind=SpanKind.CONSUMER,
            links=[Link(batch.get_span_context())] if producer is not None else None,
        )
        if span.is_recording():  # a span not sampled costs no more than this
            span.set_attributes(self._attributes(msg, event))
        return span

    def _attributes(self, msg: Msg, event: Traced | None) -> dict[str, str | int]:
        # What every message of the consumer shares (its durable) is on the batch's span.
        attributes: dict[str, str | int] = {
            "messaging.system": "nats",
            "messaging.destination.name": msg.subject,
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
        return attributes

    def headers(self, msg: Msg) -> dict[str, str]:
        """The ``traceparent`` naming the message's open span (its dead letter carries it);
        none when it has no span."""
        opened = self._open.get(id(msg))
        return {} if opened is None else headers_of(opened[0])

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
        spans: dict[tuple[str, UUID], Span] = {}
        for item in items:  # the first copy of an event in the batch is the one applied
            if (opened := self._open.get(id(item.msg))) is not None:
                spans.setdefault((item.event.tenant_id, item.event.event_id), opened[0])
        with causing(spans):
            yield

    def end(self, batch: BatchTrace) -> None:
        """The batch is over: a message with no outcome yet was returned by a failure."""
        for msg in batch.msgs:
            self.settle(msg, Outcome.returned, "its batch failed")
        for outcome, count in batch.outcomes.items():
            batch.span.set_attribute(f"engram.outcome.{outcome}", count)
        batch.span.end()
