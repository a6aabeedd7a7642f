"""Dead letters carry the trace (docs/operations.md, "Tracing"): a letter's ``traceparent``
names the span of the delivery that failed, and a replay of it is processed as a child of
that span, in the producer's trace. The probe service of test_tracing.py, read from the
SDK's in-memory exporter."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime import dlq_tool
from services.runtime.dlq import DeadKind
from services.runtime.tracing import parent_of
from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.connected.test_tracing import (
    TRACE_ID,
    by_event,
    publish,
    running,
    spans,
    traceparent,
)
from tests.helpers import dead_letters, eventually

pytestmark = pytest.mark.connected


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


async def test_a_dead_letter_names_the_failed_span_and_its_replay_continues_the_trace(
    env: Env, nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    later = factories.message(uuid.uuid4(), content="later")  # never applicable: exhausted
    js = nc.jetstream()
    async with running(env, exporter):
        # Under a message id of its own: a replay (as <tenant>:<event id>) within the
        # stream's duplicate window is then not dropped as a repeat of this publish.
        await publish(nc, later, traceparent=traceparent(), **{"Nats-Msg-Id": "first-try"})
        await nc.jetstream().publish(
            "chat.message.created",
            b'{"not": "an event"}',
            headers={"traceparent": traceparent(span_id="1111111111111111")},
        )
        letters = await dead_letters(nc, "dlq.probe.>", expect=2, timeout=30)
        by_kind = {h["Engram-Dlq-Kind"]: h for _, h, _ in letters}
        # The exhausted letter: the span of its last delivery, which failed (it ends once
        # the letter is stored and the message terminated).

        async def tried() -> int:
            return len(by_event(exporter, later.event_id))

        await eventually(tried, (4).__eq__)
        tries = by_event(exporter, later.event_id)
        assert tries[-1].attributes is not None
        assert tries[-1].attributes["engram.outcome"] == "dead-lettered"
        last = f"{tries[-1].context.span_id:016x}"
        exhausted = by_kind["exhausted"]["traceparent"]
        assert exhausted == traceparent(TRACE_ID, last)
        # The invalid one: its own span, a child of its producer's.
        [broken] = [
            s
            for s in spans(exporter, "process chat.message.created")
            if "engram.event_id" not in (s.attributes or {})
        ]
        invalid = by_kind["invalid"]["traceparent"]
        assert invalid == traceparent(TRACE_ID, f"{broken.context.span_id:016x}")

        # Replayed (as `engram dlq replay` does): the message carries the letter's trace
        # context, and the worker's span of it is a child of the failed delivery's span.
        selection = dlq_tool.Filters(kind=DeadKind.exhausted)
        [letter] = [x async for x in dlq_tool.scan(js, selection)]
        done = await dlq_tool.replay(js, letter)
        assert done.outcome is dlq_tool.Outcome.replayed, done.detail
        sequence = int(done.detail.rsplit(" ", 1)[-1])
        replayed = await js.get_msg("CHAT", sequence)
        assert (replayed.headers or {})["traceparent"] == exhausted
        assert parent_of(replayed.headers) is not None

        def replay_spans() -> list[object]:
            return [
                s
                for s in by_event(exporter, later.event_id)
                if s.parent is not None and f"{s.parent.span_id:016x}" == last
            ]

        async def count() -> int:
            return len(replay_spans())

        await eventually(count, (0).__lt__, timeout=30)
    first = by_event(exporter, later.event_id)[4]
    assert f"{first.context.trace_id:032x}" == TRACE_ID
    assert first.parent is not None and f"{first.parent.span_id:016x}" == last


async def test_a_letter_of_an_untraced_worker_keeps_the_producers_trace_context(
    env: Env, nc: NatsClient, run_ingest: Callable[..., AbstractAsyncContextManager[Worker]]
) -> None:
    context = {"traceparent": traceparent(span_id="3333333333333333"), "tracestate": "vendor=x"}
    async with run_ingest():  # ingest without an OTLP endpoint: no spans of its own
        await nc.jetstream().publish("chat.message.created", b"{not json", headers=context)
        [(_, headers, _)] = await dead_letters(nc, "dlq.ingest.>", expect=1)
    assert {k: headers[k] for k in context} == context
