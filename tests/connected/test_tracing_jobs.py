"""An event a background job announces later, outside any batch (the embedder's
engram.embedding.ready after its model ran, memory's consolidation summary), continues the
trace of the event that caused it: the inbox kept that event's span when it was applied,
and the outbox row of the announcement names it as the parent. The probe service of
test_tracing.py; the job is this test's own task, announcing as a service's job does
(``Outgoing.event`` then ``Outbox.add`` in its transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.envelope import utcnow
from services.runtime.outbox import Outgoing
from services.runtime.tracing import causing
from tests import factories
from tests.conftest import Env
from tests.connected.probe_service import ECHO, OUTBOX, ProbeEcho
from tests.connected.test_tracing import (
    TRACE_ID,
    by_event,
    publish,
    running,
    spans,
    traceparent,
)
from tests.helpers import eventually, stored

pytestmark = pytest.mark.connected


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def later_echo(tenant: str, cause_id: uuid.UUID) -> ProbeEcho:
    return ProbeEcho(
        event_id=uuid.uuid4(),
        occurred_at=utcnow(),
        tenant_id=tenant,
        producer="probe-job",
        causation_id=cause_id,
        payload={"job": "done"},
    )


async def test_a_jobs_announcement_continues_its_causes_trace(
    env: Env, nc: NatsClient, db: asyncpg.Connection, exporter: InMemorySpanExporter
) -> None:
    event = factories.message(uuid.uuid4())
    async with running(env, exporter):
        await publish(nc, event, traceparent=traceparent())
        await eventually(lambda: stored(nc, ECHO), lambda msgs: len(msgs) == 1)
        [applied] = by_event(exporter, event.event_id)
        kept = await db.fetchval(
            "SELECT traceparent FROM probe.inbox WHERE event_id = $1", event.event_id
        )
        assert kept == traceparent(TRACE_ID, f"{applied.context.span_id:016x}")

        # The job, long after the batch: no span of its cause at hand.
        announced = later_echo(event.tenant_id, event.event_id)
        outgoing = Outgoing.event(announced)
        assert outgoing.cause == (event.tenant_id, event.event_id)
        assert "traceparent" not in outgoing.headers
        async with db.transaction():
            await OUTBOX.add(db, [outgoing])
        msgs = await eventually(lambda: stored(nc, ECHO), lambda found: len(found) == 2)
    headers = msgs[1].headers or {}
    publishes = [
        s
        for s in spans(exporter, f"publish {ECHO}")
        if s.parent is not None and s.parent.span_id == applied.context.span_id
    ]
    assert len(publishes) == 2  # the echo made in the batch, and the job's
    job_publish = next(s for s in publishes if headers["traceparent"].split("-")[2] == (
        f"{s.context.span_id:016x}"))  # fmt: skip
    assert f"{job_publish.context.trace_id:032x}" == TRACE_ID


async def test_without_a_trace_kept_the_job_starts_its_own(
    env: Env, nc: NatsClient, db: asyncpg.Connection, exporter: InMemorySpanExporter
) -> None:
    event = factories.message(uuid.uuid4())
    async with running(env, exporter):
        await publish(nc, event)
        await eventually(lambda: stored(nc, ECHO), lambda msgs: len(msgs) == 1)
        unknown = Outgoing.event(later_echo(event.tenant_id, uuid.uuid4()))
        async with db.transaction():
            await OUTBOX.add(db, [unknown])
        msgs = await eventually(lambda: stored(nc, ECHO), lambda found: len(found) == 2)
    assert "traceparent" in (msgs[1].headers or {})  # the drain's publish span: a root
    [root] = [
        s
        for s in spans(exporter, f"publish {ECHO}")
        if (msgs[1].headers or {})["traceparent"].split("-")[2] == f"{s.context.span_id:016x}"
    ]
    assert root.parent is None


def test_an_announcement_made_while_applying_a_batch_is_no_jobs() -> None:
    with causing({}):  # what the pipeline sets around every batch, traced or not
        made = Outgoing.event(later_echo("acme", uuid.uuid4()))
    assert made.cause is None
