"""The spans of a durable consumer's batches and of each message in them (``pipeline.py``).

A batch's span (``consume <stream>``) is open from its decoding until its last message is
settled; each message's (``process <subject>``) is a child of the producer's span when the
message carries a ``traceparent`` (then linked to the batch's), else of the batch's, and
ends with its outcome (``engram.outcome``). Only recorded spans are made: see
``EventSpans`` for what a message of a trace not sampled costs. See docs/operations.md,
"Tracing".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from services.runtime.trace_context import declined, sampled, trace_of, unsampled
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


@dataclass(eq=False)
class BatchTrace:
    span: Span
    items: Sequence[Consumed]
    invalid: Sequence[tuple[Msg, str]]
    traced: list[Msg] = field(default_factory=list)  # given a span of their own
    outcomes: dict[str, int] = field(default_factory=dict)
    _ids: set[int] | None = None

    def holds(self, msg: Msg) -> bool:
        """Whether ``msg`` is one of the batch's (asked only when a header is wanted)."""
        if self._ids is None:
            self._ids = {id(i.msg) for i in self.items} | {id(m) for m, _ in self.invalid}
        return id(msg) in self._ids


class EventSpans:
    """The spans of one durable consumer's batches and of their messages. Each message's
    span is open from its decoding until ``settle`` records its outcome.

    Only spans that are recorded are made (the sampler is parent-based): a message gets one
    when its producer sampled its trace, or when it has no ``traceparent`` and its batch's
    span is sampled. The others (the common case at a low ratio) cost a header read in
    ``start`` and nothing after it. Where their span's trace context would go at once (a
    dead letter, an event a handler announces) they pass on their producer's unsampled
    ``traceparent``, else their batch's, so the next hop does not sample them either; the
    inbox keeps nothing for them (a column per event would cost more than the rest of a
    trace not sampled), so a job's later announcement starts a trace of its own."""

    def __init__(self, tracer: Tracer, stream: str, durable: str) -> None:
        self._tracer = tracer
        self._stream = stream
        self._durable = durable
        self._open: dict[int, tuple[Span, BatchTrace]] = {}  # by id(msg)
        self._batches: list[BatchTrace] = []  # started and not ended (two when pipelined)

    def start(self, items: Sequence[Consumed], invalid: Sequence[tuple[Msg, str]]) -> BatchTrace:
        """The batch's span and one per message that is recorded, decoded or broken
        (``invalid``)."""
        span = self._tracer.start_span(f"consume {self._stream}", kind=SpanKind.CONSUMER)
        recording = span.is_recording()
        if recording:
            span.set_attributes(
                {
                    "messaging.system": "nats",
                    "messaging.operation.type": "receive",
                    "messaging.consumer.group.name": self._durable,
                    "messaging.batch.message_count": len(items) + len(invalid),
                    "engram.stream": self._stream,
                }
            )
        batch = BatchTrace(span, items, invalid)
        self._batches.append(batch)
        for item in items:
            # Inline, not in _begin: in a batch not sampled, this test is all most messages
            # cost, and a call per message would double it.
            if recording:
                self._begin(item.msg, item.event, batch, True)
            elif (
                (headers := item.msg.headers)
                and (value := headers.get("traceparent"))
                and not declined(value)
            ):
                self._begin(item.msg, item.event, batch, False)
        for msg, _ in invalid:
            self._begin(msg, None, batch, recording)
        return batch

    @property
    def recording(self) -> bool:
        """Whether a message (of any batch in hand) has a span open: when none has, the
        pipeline skips ``acked`` and the inbox's ``traceparent`` column."""
        return bool(self._open)

    def _begin(self, msg: Msg, event: Traced | None, batch: BatchTrace, recording: bool) -> None:
        headers = msg.headers
        if not headers or "traceparent" not in headers:  # the usual case: the batch decides
            if recording:
                self._open_span(msg, event, batch, None)
            return
        producer = sampled(headers)
        if producer is None:  # not a valid one: as if it had none
            if recording:
                self._open_span(msg, event, batch, None)
        elif producer:
            self._open_span(msg, event, batch, parent_of(headers))
        # else its producer did not sample the trace: no span, whatever the batch's

    def _open_span(
        self, msg: Msg, event: Traced | None, batch: BatchTrace, producer: Context | None
    ) -> None:
        span = self._tracer.start_span(
            f"process {msg.subject}",
            context=producer if producer is not None else trace.set_span_in_context(batch.span),
            kind=SpanKind.CONSUMER,
            links=[Link(batch.span.get_span_context())] if producer is not None else None,
        )
        if span.is_recording():  # always, under the parent-based sampler; cheap to be sure
            span.set_attributes(self._attributes(msg, event))
        self._open[id(msg)] = (span, batch)
        batch.traced.append(msg)

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
        """The trace context the message's span would pass on (its dead letter carries
        it): its open span's, else its producer's unsampled one, else its batch's
        (unsampled); none for a message of no open batch."""
        opened = self._open.get(id(msg)) if self._open else None
        if opened is not None:
            return headers_of(opened[0])
        if unsampled(msg.headers):
            return trace_of(msg.headers)
        for batch in self._batches:
            if batch.holds(msg):
                return headers_of(batch.span)
        return {}

    def traceparent(self, msg: Msg) -> str | None:
        """What the inbox keeps for the message's event (while ``recording``): its span's
        ``traceparent``, for a job that announces a result of it later; None without one."""
        opened = self._open.get(id(msg))
        return None if opened is None else headers_of(opened[0]).get("traceparent")

    def settle(self, msg: Msg, outcome: Outcome, reason: str = "") -> None:
        opened = self._open.pop(id(msg), None) if self._open else None
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
        if not self._open:  # no span to end: nothing to count either
            return
        key = (item.event.tenant_id, item.event.event_id)
        self.settle(item.msg, Outcome.applied if key in new else Outcome.duplicate)
        new.discard(key)

    @contextlib.contextmanager
    def causes(self, items: Sequence[Consumed]) -> Iterator[None]:
        """While the batch's events are applied: what ``cause_headers`` finds, looked up
        only when a handler announces something."""
        with causing(Causes(self, items)):
            yield

    def end(self, batch: BatchTrace) -> None:
        """The batch is over: a message with no outcome yet was returned by a failure."""
        for msg in batch.traced:
            self.settle(msg, Outcome.returned, "its batch failed")
        if batch in self._batches:
            self._batches.remove(batch)
        if batch.span.is_recording():
            for outcome, count in batch.outcomes.items():
                batch.span.set_attribute(f"engram.outcome.{outcome}", count)
        batch.span.end()


class Causes(Mapping[tuple[str, UUID], Mapping[str, str]]):
    """The trace context each event of a batch passes to the events it causes, by
    (tenant, event id), the first copy's: indexed on the first look-up, so a batch whose
    handlers announce nothing pays nothing per event."""

    def __init__(self, spans: EventSpans, items: Sequence[Consumed]) -> None:
        self._spans, self._items = spans, items
        self._index: dict[tuple[str, UUID], Msg] | None = None

    def _messages(self) -> dict[tuple[str, UUID], Msg]:
        if self._index is None:
            self._index = {}
            for item in self._items:
                self._index.setdefault((item.event.tenant_id, item.event.event_id), item.msg)
        return self._index

    def __getitem__(self, key: tuple[str, UUID]) -> Mapping[str, str]:
        return self._spans.headers(self._messages()[key])

    def __iter__(self) -> Iterator[tuple[str, UUID]]:
        return iter(self._messages())

    def __len__(self) -> int:
        return len(self._messages())
