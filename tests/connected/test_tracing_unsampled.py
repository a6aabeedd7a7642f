"""A trace that is not sampled (docs/operations.md, "Tracing", "Sampling"): the worker
records none of its spans, and the decision travels on with the events it causes and its
dead letters, so the next worker does not sample them either; a producer's sampled trace
is recorded in the same batch. The probe service of test_tracing.py, tracing at ratio 0
(it samples none of the traces it starts), read from the SDK's in-memory exporter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime.trace_context import sampled, traceparent
from services.runtime.tracing import Tracing
from services.runtime.worker import Worker
from tests import factories
from tests.conftest import Env
from tests.connected import probe_service as probe
from tests.connected.probe_service import ECHO
from tests.connected.test_tracing import by_event, publish
from tests.helpers import dead_letters, eventually, stored

pytestmark = pytest.mark.connected

DECLINED_TRACE, CHOSEN_TRACE = "5" * 32, "6" * 32
DECLINED = f"00-{DECLINED_TRACE}-{'7' * 16}-00"
CHOSEN = f"00-{CHOSEN_TRACE}-{'8' * 16}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@asynccontextmanager
async def sampling_none(env: Env, exporter: InMemorySpanExporter) -> AsyncIterator[Worker]:
    await probe.install(env)
    tracing = Tracing.exporting("probe", exporter, batch=False, sample_ratio=0.0)
    async with probe.running(env, tracing, later_content="later") as worker:
        yield worker


def trace_id(headers: dict[str, str] | None) -> str:
    parent = traceparent(headers)
    assert parent is not None, headers
    return f"{parent.trace_id:032x}"


async def test_only_the_producers_sampled_trace_is_recorded_and_decisions_travel_on(
    env: Env, nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    cid = uuid.uuid4()
    declined, bare, chosen = (factories.message(cid, content=c) for c in ("a", "b", "c"))
    async with sampling_none(env, exporter):
        await publish(nc, declined, traceparent=DECLINED, tracestate="vendor=x")
        await publish(nc, bare)
        await publish(nc, chosen, traceparent=CHOSEN)
        echoes = await eventually(lambda: stored(nc, ECHO), lambda msgs: len(msgs) == 3)
    # Recorded: the event its producer sampled, and the publish of its echo; nothing else.
    [span] = by_event(exporter, chosen.event_id)
    assert f"{span.context.trace_id:032x}" == CHOSEN_TRACE
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["process chat.message.created", f"publish {ECHO}"]
    # Each echo in its cause's trace, with its cause's decision.
    by_trace = {trace_id(m.headers): m.headers or {} for m in echoes}
    assert set(by_trace) >= {DECLINED_TRACE, CHOSEN_TRACE}
    assert sampled(by_trace.pop(DECLINED_TRACE)) is False
    assert sampled(by_trace.pop(CHOSEN_TRACE)) is True
    [bare_echo] = by_trace.values()  # the batch's trace, which the worker did not sample
    assert sampled(bare_echo) is False


async def test_a_dead_letter_of_a_trace_not_sampled_keeps_the_producers_context(
    env: Env, nc: NatsClient, exporter: InMemorySpanExporter
) -> None:
    later = factories.message(uuid.uuid4(), content="later")  # never applicable: exhausted
    async with sampling_none(env, exporter):
        await publish(nc, later, traceparent=DECLINED, tracestate="vendor=x")
        [(_, headers, _)] = await dead_letters(nc, "dlq.probe.>", expect=1, timeout=30)
    assert headers["Engram-Dlq-Kind"] == "exhausted"
    assert {k: headers[k] for k in ("traceparent", "tracestate")} == {
        "traceparent": DECLINED,
        "tracestate": "vendor=x",
    }
    assert exporter.get_finished_spans() == ()
